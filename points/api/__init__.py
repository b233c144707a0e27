"""The REST API v1 under /api/v1: flask-smorest blueprints, one module per resource."""

from __future__ import annotations

import http

from flask import Blueprint as FlaskBlueprint
from flask import Flask, make_response, render_template
from flask_smorest import Api
from flask_smorest.utils import prepare_response

from points.api.body import PREFIX, read_body
from points.api.common import ProblemSchema
from points.api.problems import PROBLEM_JSON, register_problem_handlers
from points.auth import DEFAULTS

API_DESCRIPTION = """\
Points for neighbourhood volunteers: balances, service records, redemptions at kiosks.

Send `Authorization: Bearer <token>`. Roles: `admin` (everything), `office` and `auditor`
(a district node and everything below it; auditors only read), `kiosk` (a node: opens
volunteer sessions by card code and PIN, lists the catalog, redeems, fulfils) and
`volunteer` (their own records). Errors are RFC 9457 `application/problem+json`.
Writes that move points take an `Idempotency-Key` header (kiosks must send one).
"""


class PointsApi(Api):
    """flask-smorest's Api whose documented errors are problem+json.

    points.app answers every error itself (problem+json for all of them), so this Api
    registers no error handler of its own.
    """

    ERROR_SCHEMA = ProblemSchema

    def _register_error_handlers(self):
        """Leave error handling to points.app."""

    def _register_responses(self):
        """Document each error status, and the default error, as problem+json."""
        for status in http.HTTPStatus:
            response = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "An error (problem+json)", "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, PROBLEM_JSON)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, response, lazy=True)


def register_api(app: Flask) -> PointsApi:
    """Attach the API, its OpenAPI document and its docs page to `app`."""
    from points.api import (
        activities,
        audit,
        districts,
        entries,
        exports,
        health,
        honours,
        imports,
        kiosk,
        ledger,
        policy,
        providers,
        rankings,
        redemptions,
        reports,
        service_records,
        settlements,
        staff,
        tokens,
        transfers,
        volunteers,
        webhooks,
    )

    for key, value in DEFAULTS.items():
        app.config.setdefault(key, value)
    # No request of this API needs more; a larger body is a 413 before anything reads it.
    if app.config.get("MAX_CONTENT_LENGTH") is None:
        app.config["MAX_CONTENT_LENGTH"] = 256 * 1024
    app.config.setdefault("API_TITLE", "Steward Points")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", PREFIX)
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    app.config.setdefault(
        "API_SPEC_OPTIONS",
        {
            "info": {"description": API_DESCRIPTION},
            "security": [{"bearer": []}],
        },
    )

    api = PointsApi(app)
    api.spec.components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "description": "An API token."}
    )
    for module in (
        health,
        districts,
        volunteers,
        service_records,
        redemptions,
        providers,
        transfers,
        entries,
        policy,
        ledger,
        kiosk,
        tokens,
        staff,
        audit,
        exports,
        rankings,
        reports,
        honours,
        settlements,
        imports,
        webhooks,
        activities,
    ):
        api.register_blueprint(module.blp)
    app.register_blueprint(_docs_page())
    app.before_request(read_body)
    register_problem_handlers(app)
    app.extensions["points_api"] = api
    return api


def _docs_page() -> FlaskBlueprint:
    """The docs page: Swagger UI vendored in points/static, so no CDN is needed."""
    page = FlaskBlueprint("api_docs_page", __name__, url_prefix=PREFIX)

    @page.get("/docs")
    def docs():
        """Show the API's OpenAPI document in Swagger UI."""
        response = make_response(render_template("api/docs.html"))
        # The page loads nothing from elsewhere: kiosks may sit on a closed network.
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'"
        )
        return response

    return page

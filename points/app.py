"""The application factory: create_app and its register_* steps."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from flask import Flask, current_app, request
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from points import config as defaults
from points.api import register_api
from points.api.problems import http_problem
from points.database import (
    TIMEOUT_SQLSTATES,
    DatabaseStalledError,
    configure_engine,
    engine_options,
)
from points.errors import PointsError, problem, problem_from
from points.extensions import db, migrate
from points.observability import register_observability


def migrations_folder() -> str:
    """Return the Alembic folder: beside the package in a checkout (an editable install),
    else in the working directory (a plain install, run from the checkout)."""
    beside = os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")
    return beside if os.path.isdir(beside) else os.path.join(os.getcwd(), "migrations")


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Create the Flask app: defaults, then POINTS_* environment variables, then test_config."""
    app = Flask("points", instance_relative_config=True)
    app.config.from_object(defaults)
    app.config.from_prefixed_env("POINTS")
    if test_config:
        app.config.update(test_config)
    if not app.config.get("DATABASE_URL"):
        os.makedirs(app.instance_path, exist_ok=True)
        app.config["DATABASE_URL"] = defaults.sqlite_default(app.instance_path)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = defaults.instance_secret(app.instance_path)
    app.config["SQLALCHEMY_DATABASE_URI"] = defaults.database_url(app.config["DATABASE_URL"])
    # No pool pre-ping: it costs a round trip per transaction. A connection found dead is
    # invalidated; a unit of work is then retried (ledger.atomic), a read answers 503.
    # Timeouts bound every wait for the database (points.database.engine_options); given
    # engine options win, their connect_args key by key.
    given = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    options = engine_options(app.config)
    connect_args = {**options.get("connect_args", {}), **given.pop("connect_args", {})}
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {**options, **given}
    if connect_args:
        app.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"] = connect_args
    app.json.ensure_ascii = False

    hops = int(app.config["PROXY_HOPS"])
    if hops > 0:
        # Trust that many proxies' X-Forwarded-For and -Proto, and no more (config.py).
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_commands(app)
    register_observability(app)
    return app


def register_extensions(app: Flask) -> None:
    db.init_app(app)
    migrate.init_app(app, db, directory=migrations_folder(), render_as_batch=True)
    # One plugin manager per app, never a module global: tests build apps side by side.
    from points.plugins import make_plugin_manager

    app.extensions["points.plugins"] = make_plugin_manager(app.config.get("DISABLED_PLUGINS", ""))
    with app.app_context():
        configure_engine(
            db.engine,
            busy_seconds=app.config["SQLITE_BUSY_SECONDS"],
            synchronous=app.config["SQLITE_SYNCHRONOUS"],
            reply_seconds=app.config["DATABASE_REPLY_SECONDS"],
        )
    from points.ledger.units import release_autocommit_connection

    # Teardowns run last-registered first: the session ends here, before Flask-SQLAlchemy's
    # own teardown, which then finds nothing left to do.
    app.teardown_appcontext(end_session)
    app.teardown_appcontext(release_autocommit_connection)


def end_session(_error: BaseException | None = None) -> None:
    """End the app context's session (a teardown). Its ROLLBACK may meet a connection the
    database ended after the response was made (a restart, pg_terminate_backend): the
    connection is discarded and the response stands, instead of an error escaping every
    handler (gunicorn would answer it with an HTML 500)."""
    try:
        db.session.remove()
    except Exception as error:  # nothing may escape a teardown
        lost = isinstance(error, DBAPIError) and error.connection_invalidated
        log = current_app.logger.info if lost else current_app.logger.warning
        log("session cleanup failed, connection discarded: %s", error.__class__.__name__)
        with contextlib.suppress(Exception):
            db.session().invalidate()
        db.session.registry.clear()


def register_blueprints(app: Flask) -> None:
    from points.web import register_web

    register_api(app)
    register_web(app)


def register_errorhandlers(app: Flask) -> None:
    @app.errorhandler(PointsError)
    def points_error(error: PointsError):
        rollback_quietly()
        return problem_from(error)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return http_problem(error)

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeoutError)
    def database_unavailable(error: Exception):
        return unavailable(error)

    @app.errorhandler(DBAPIError)
    def database_error(error: DBAPIError):
        if error.connection_invalidated:
            return unavailable(error)  # lost mid-request (InterfaceError and the like)
        return unexpected(error)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        # The log keeps the trace; the client learns nothing internal.
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        rollback_quietly()
        return problem(500, "Internal server error", "The error was logged.")


def unavailable(error: Exception):
    """503 problem+json with Retry-After, for a database that is down, timed out or lost
    the connection. A write it answers may or may not have been made: the client's retry
    with the same Idempotency-Key replays it if it was, or makes it."""
    orig = getattr(error, "orig", None) or error
    current_app.logger.warning(
        "database unavailable on %s %s: %s",
        request.method,
        request.path,
        orig.__class__.__name__,
    )
    rollback_quietly()
    timed_out = isinstance(error, PoolTimeoutError) or isinstance(orig, DatabaseStalledError)
    timed_out = timed_out or getattr(orig, "sqlstate", None) in TIMEOUT_SQLSTATES
    detail = "The database did not answer in time." if timed_out else "Try again in a moment."
    response = problem(
        503,
        "Database unavailable",
        detail + " Retry a write with the same Idempotency-Key: it is made once.",
    )
    response.headers["Retry-After"] = "1"
    return response


def rollback_quietly() -> None:
    """Roll the session back after an error; a connection that fails even that (lost,
    stalled) is discarded, as the error being answered matters more."""
    try:
        db.session.rollback()
    except Exception:  # an error handler must answer
        db.session().invalidate()


def register_commands(app: Flask) -> None:
    from points.cli import (
        activities_cli,
        cards_cli,
        demo_cli,
        kiosk_cli,
        ledger_cli,
        provider_cli,
        staff_cli,
        token_cli,
        webhooks_cli,
    )

    app.cli.add_command(ledger_cli)
    app.cli.add_command(demo_cli)
    app.cli.add_command(token_cli)
    app.cli.add_command(kiosk_cli)
    app.cli.add_command(provider_cli)
    app.cli.add_command(cards_cli)
    app.cli.add_command(staff_cli)
    from points.imports.cli import import_cli

    app.cli.add_command(import_cli)

    app.cli.add_command(webhooks_cli)
    app.cli.add_command(activities_cli)
    register_plugin_commands(app)


def register_plugin_commands(app: Flask) -> None:
    """Add the plugin and policy commands, then each plugin's own (register_commands)."""
    from points.cli import plugins_cli, policy_cli
    from points.plugins import call_each

    app.cli.add_command(plugins_cli)
    app.cli.add_command(policy_cli)
    call_each(app.extensions["points.plugins"], "register_commands", {"cli": app.cli})

"""GET /health/live, /health/ready and /health: whether the process, and the database
for writes, answer."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from marshmallow import Schema, fields

from points.api.body import Blueprint
from points.database import check_writable
from points.errors import problem
from points.extensions import db

blp = Blueprint("health", __name__, url_prefix="/api/v1", description="Service health.")

# A readiness check waits at most this long for the database (a lock, a reply).
READY_SECONDS = 2.0


class LiveSchema(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})
    database = fields.String(required=True, metadata={"example": "ok"})


def _ready():
    try:
        check_writable(db.engine, READY_SECONDS)
    except Exception as error:
        current_app.logger.warning("readiness check: database cannot write: %s", error)
        response = problem(503, "Database unavailable", "The database cannot write now.")
        response.headers["Retry-After"] = "1"
        return response
    return {"status": "ok", "database": "ok"}


@blp.route("/health/live")
class Liveness(MethodView):
    @blp.doc(security=[])
    @blp.response(200, LiveSchema)
    def get(self):
        """Report that the process answers; touches no database, so it cannot hang on one."""
        return {"status": "ok"}


@blp.route("/health/ready")
class Readiness(MethodView):
    @blp.doc(security=[])
    @blp.response(200, HealthSchema)
    def get(self):
        """Report whether the database takes a write now: a real write, rolled back, within
        2 seconds (503 when it cannot)."""
        return _ready()


@blp.route("/health")
class Health(MethodView):
    @blp.doc(security=[])
    @blp.response(200, HealthSchema)
    def get(self):
        """Report whether the service can write (as /health/ready; 503 when it cannot)."""
        return _ready()

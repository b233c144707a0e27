"""GET /health: whether the service and its database answer."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy import text

from points.errors import problem
from points.extensions import db

blp = Blueprint("health", __name__, url_prefix="/api/v1", description="Service health.")


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})
    database = fields.String(required=True, metadata={"example": "ok"})


@blp.route("/health")
class Health(MethodView):
    @blp.doc(security=[])
    @blp.response(200, HealthSchema)
    def get(self):
        """Report whether the service and its database answer (503 when the database is down)."""
        try:
            db.session.execute(text("SELECT 1"))
        except Exception:
            current_app.logger.exception("health check: database unreachable")
            db.session.rollback()
            return problem(503, "Database unavailable", "The database does not answer.")
        return {"status": "ok", "database": "ok"}

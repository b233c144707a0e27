"""Kiosk sessions: card code and PIN open a short volunteer session at a kiosk."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from points import directory
from points.api.body import Blueprint
from points.api.common import UtcDateTime, allow, mask_name
from points.auth import (
    activate_at_kiosk,
    current_principal,
    end_kiosk_session,
    open_kiosk_session,
)
from points.extensions import db
from points.models import ApiToken, Volunteer

# A PIN, or a card's activation code (12 digits) typed where the PIN goes.
PIN_OR_CODE = r"^(?:[0-9]{6}|[0-9]{12})$"
ACTIVATION_CODE = r"^[0-9]{4} ?[0-9]{4} ?[0-9]{4}$"

blp = Blueprint(
    "kiosk",
    __name__,
    url_prefix="/api/v1/kiosk",
    description=(
        "A kiosk token alone sees no volunteer. Card code and PIN open a short session "
        "(a bearer token of its own) in which the kiosk reads that volunteer's balance and "
        "the catalog and redeems. It ends when idle, after a redemption, or on DELETE."
    ),
)


class CardSchema(Schema):
    card_code = fields.String(required=True, validate=validate.Length(1, 32))
    pin = fields.String(
        required=True,
        load_only=True,
        validate=validate.Regexp(PIN_OR_CODE),
        metadata={
            "description": "6 digits; a card's pending 12-digit activation code is answered "
            "409 activation-required (then POST /kiosk/activate)."
        },
    )


class ActivationSchema(Schema):
    card_code = fields.String(required=True, validate=validate.Length(1, 32))
    code = fields.String(
        required=True,
        load_only=True,
        validate=validate.Regexp(ACTIVATION_CODE),
        metadata={"description": "The one-time activation code: 12 digits, spaces allowed."},
    )
    new_pin = fields.String(
        required=True,
        load_only=True,
        validate=validate.Regexp(directory.PIN_PATTERN),
        metadata={"description": "Six digits; not trivial (123456), not from the card code."},
    )


class SessionOpenedSchema(Schema):
    token = fields.String(
        required=True, metadata={"description": "Bearer token of the session; shown once."}
    )
    volunteer_id = fields.Integer(required=True)
    display_name = fields.String(
        required=True, metadata={"description": "The name masked for the screen: 王*英."}
    )
    expires_at = UtcDateTime(
        required=True, metadata={"description": "Moves later while the session is in use."}
    )


class SessionSchema(Schema):
    volunteer_id = fields.Integer(required=True)
    display_name = fields.String(required=True)
    expires_at = UtcDateTime(required=True)


@blp.route("/sessions")
class KioskSessions(MethodView):
    @allow("kiosk", admin=False, who="a kiosk whose node holds the card's volunteer")
    @blp.arguments(CardSchema)
    @blp.response(201, SessionOpenedSchema)
    def post(self, body):
        """Open a volunteer session at this kiosk with card code and PIN (423 when locked;
        409 activation-required for the card's one-time activation code)."""
        principal = current_principal()
        session = open_kiosk_session(principal, body["card_code"], body["pin"])
        return {
            "token": session.token,
            "volunteer_id": session.volunteer_id,
            "display_name": mask_name(session.name),
            "expires_at": session.expires_at,
        }


@blp.route("/activate")
class KioskActivate(MethodView):
    @allow("kiosk", admin=False, who="a kiosk whose node holds the card's volunteer")
    @blp.arguments(ActivationSchema)
    @blp.response(201, SessionOpenedSchema)
    def post(self, body):
        """Choose a first PIN with the card's one-time activation code, and open a session
        (the code then never works again; counted like a PIN, 423 when locked)."""
        principal = current_principal()
        session = activate_at_kiosk(principal, body["card_code"], body["code"], body["new_pin"])
        return {
            "token": session.token,
            "volunteer_id": session.volunteer_id,
            "display_name": mask_name(session.name),
            "expires_at": session.expires_at,
        }


@blp.route("/sessions/current")
class CurrentKioskSession(MethodView):
    @allow("session", admin=False, who="a kiosk session")
    @blp.response(200, SessionSchema)
    def get(self):
        """Show the session this token is (its volunteer, masked, and when it ends)."""
        principal = current_principal()
        name, expires_at = db.session.execute(
            select(Volunteer.name, ApiToken.expires_at)
            .join(ApiToken, ApiToken.volunteer_id == Volunteer.id)
            .where(ApiToken.id == principal.token_id)
        ).one()
        return {
            "volunteer_id": principal.volunteer_id,
            "display_name": mask_name(name),
            "expires_at": expires_at,
        }

    @allow("session", replay=True, admin=False, who="a kiosk session")
    @blp.response(204)
    def delete(self):
        """End this session now (the kiosk's "done" button)."""
        end_kiosk_session(current_principal())

"""Volunteers: registration, profile, balance and the history of their points."""

from __future__ import annotations

import base64
import binascii
import json

from flask.views import MethodView
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from points import auth, directory, roster, statements, volunteers
from points.api.body import Blueprint
from points.api.common import (
    VOLUNTEER_ID,
    Moment,
    UtcDateTime,
    allow,
    decode_cursor,
    encode_cursor,
    mask_phone,
)
from points.auth import current_principal, reach_volunteer, require_scope
from points.errors import InvalidInputError
from points.extensions import db
from points.models import District, Volunteer

blp = Blueprint("volunteers", __name__, url_prefix="/api/v1/volunteers", description="Volunteers.")

IN_NODE = "of the volunteer's node or above"


class VolunteerCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 200))
    phone = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(r"^\+?[0-9 -]{5,20}$"),
        metadata={"description": "One volunteer per phone number in a node."},
    )
    district = fields.String(required=True, validate=validate.Length(1, 64))
    pin = fields.String(
        load_default=None,
        load_only=True,
        validate=validate.Regexp(directory.PIN_PATTERN),
        metadata={
            "description": (
                "Six digits, for the card at kiosks; not trivial (123456, 111111), not "
                "from the card code. Left out, a PIN is drawn and answered once."
            )
        },
    )


class VolunteerCreatedSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    district = fields.String(required=True)
    card_code = fields.String(required=True)
    status = fields.String(required=True)
    pin = fields.String(
        metadata={"description": "The drawn PIN, when none was given: shown only this once."}
    )


class RosterQuerySchema(Schema):
    q = fields.String(
        load_default="",
        validate=validate.Length(0, 200),
        metadata={"description": "A card code, a phone number, or the start of a name."},
    )
    district = fields.String(
        load_default=None, validate=validate.Length(1, 64), metadata={"description": "A node."}
    )
    status = fields.String(load_default=None, validate=validate.OneOf(roster.STATES))
    cursor = fields.String(
        load_default=None,
        validate=validate.Length(1, 400),
        metadata={"description": "From next_cursor."},
    )
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))


class RosterRowSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    phone = fields.String(
        required=True, allow_none=True, metadata={"description": "Masked for auditors."}
    )
    card_code = fields.String(
        required=True, allow_none=True, metadata={"description": "null for auditors."}
    )
    status = fields.String(required=True)
    district = fields.String(required=True)
    district_name = fields.String(required=True)
    locked_until = UtcDateTime(
        required=True, allow_none=True, metadata={"description": "The card is locked until."}
    )
    balance = fields.Integer(required=True)
    held = fields.Integer(required=True)
    available = fields.Integer(required=True)
    service_minutes = fields.Integer(required=True)


class RosterPageSchema(Schema):
    items = fields.List(fields.Nested(RosterRowSchema), required=True)
    next_cursor = fields.String(
        required=True, allow_none=True, metadata={"description": "null on the last page."}
    )


class VolunteerPatchSchema(Schema):
    name = fields.String(validate=validate.Length(1, 200))
    phone = fields.String(
        allow_none=True,
        validate=validate.Regexp(r"^\+?[0-9 -]{5,20}$"),
        metadata={"description": "null removes the phone number."},
    )
    status = fields.String(
        validate=validate.OneOf(roster.STATES),
        metadata={"description": "suspended: the card and the volunteer's sessions stop."},
    )
    reason = fields.String(
        validate=validate.Length(1, 500), metadata={"description": "Why the status changes."}
    )


class NewPinSchema(Schema):
    pin = fields.String(required=True, metadata={"description": "Shown only this once."})


class NewActivationSchema(Schema):
    activation_code = fields.String(
        required=True,
        metadata={
            "description": "12 digits, shown only this once; the volunteer types it where "
            "the PIN goes, then chooses a PIN. Print it with the card (grouped 4821 0937 5512)."
        },
    )


class NewCardSchema(Schema):
    card_code = fields.String(
        required=True, metadata={"description": "The new card's code; the old one stops now."}
    )


class VolunteerProfileSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    phone = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "Masked (139****0001) unless the token is an office's."},
    )
    district = fields.String(required=True)
    card_code = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "Shown to offices and to the volunteer only."},
    )
    status = fields.String(required=True)
    service_minutes = fields.Integer(required=True)
    created_at = UtcDateTime(required=True)
    activation_pending = fields.Boolean(
        required=True,
        metadata={"description": "A one-time activation code is pending: no PIN chosen yet."},
    )


class ExpiringSchema(Schema):
    points = fields.Integer(required=True)
    expires_at = UtcDateTime(required=True)


class BalanceSchema(Schema):
    volunteer_id = fields.Integer(required=True)
    balance = fields.Integer(required=True)
    held = fields.Integer(
        required=True, metadata={"description": "Reserved by redemptions not yet delivered."}
    )
    available = fields.Integer(required=True, metadata={"description": "balance - held"})
    service_minutes = fields.Integer(
        required=True, metadata={"description": "Service time; only grows."}
    )
    star_level = fields.Integer(
        required=True, metadata={"description": "星级, from service hours under the stars policy."}
    )
    expiring = fields.List(
        fields.Nested(ExpiringSchema),
        required=True,
        metadata={"description": "Points expiring soon (the expiry policy's soon_days)."},
    )
    as_of = UtcDateTime(required=True, allow_none=True, metadata={"description": "null: now."})


class EntriesQuerySchema(Schema):
    cursor = fields.String(
        load_default=None,
        validate=validate.Length(1, 200),
        metadata={"description": "From next_cursor."},
    )
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))
    month = fields.String(
        load_default=None,
        validate=validate.Regexp(r"^\d{4}-\d{2}$"),
        metadata={"description": "Only this month (YYYY-MM) in the node's time zone."},
    )


class CorrectedSchema(Schema):
    reason = fields.String(required=True)
    effective_at = UtcDateTime(required=True)


class VolunteerEntrySchema(Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True)
    points = fields.Integer(
        required=True, metadata={"description": "Signed: credited (+) or debited (-)."}
    )
    reason = fields.String(required=True)
    created_at = UtcDateTime(required=True)
    effective_at = UtcDateTime(required=True)
    plugin = fields.String(required=True, allow_none=True)
    rule = fields.String(required=True, allow_none=True)
    reverses_id = fields.Integer(required=True, allow_none=True)
    config_version = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "The version of the plugin's policy behind an award."},
    )
    corrects = fields.Nested(
        CorrectedSchema,
        required=True,
        allow_none=True,
        metadata={"description": "For a correction: the line it corrects."},
    )
    other_side = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "For a gift: the other volunteer's name, masked (王*英)."},
    )


class AsOfQuerySchema(Schema):
    as_of = Moment(
        load_default=None,
        metadata={"description": "The points at this past instant (by effective time)."},
    )


class StatementQuerySchema(Schema):
    since = Moment(required=True)
    until = Moment(required=True)


class StatementLineSchema(VolunteerEntrySchema):
    balance_after = fields.Integer(required=True)


class StatementSchema(Schema):
    volunteer_id = fields.Integer(required=True)
    since = UtcDateTime(required=True)
    until = UtcDateTime(required=True)
    opening = fields.Integer(required=True, metadata={"description": "Balance before since."})
    earned = fields.Integer(required=True)
    spent = fields.Integer(required=True)
    closing = fields.Integer(required=True, metadata={"description": "Balance at until."})
    lines = fields.List(
        fields.Nested(StatementLineSchema),
        required=True,
        metadata={"description": "Oldest first, by effective time."},
    )


class EntryPageSchema(Schema):
    items = fields.List(fields.Nested(VolunteerEntrySchema), required=True)
    next_cursor = fields.String(
        required=True, allow_none=True, metadata={"description": "null on the last page."}
    )


def _roster_cursor(row: roster.RosterRow) -> str:
    return base64.urlsafe_b64encode(json.dumps([row.name, row.id]).encode()).decode()


def _roster_after(cursor: str | None) -> tuple[str, int] | None:
    if cursor is None:
        return None
    try:
        name, last = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if isinstance(name, str) and isinstance(last, int) and not isinstance(last, bool):
            return name, last
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        pass
    raise InvalidInputError("invalid cursor", errors={"cursor": ["Use next_cursor as given."]})


@blp.route("")
class Volunteers(MethodView):
    @allow("office", "auditor", who="admin, office and auditor (their node and below)")
    @blp.arguments(RosterQuerySchema, location="query")
    @blp.response(200, RosterPageSchema)
    def get(self, query):
        """Search the volunteers of the node: by card code, phone, or the start of a name."""
        principal = current_principal()
        rows = roster.search(
            principal,
            query["q"],
            district=query["district"],
            status=query["status"],
            after=_roster_after(query["cursor"]),
            limit=query["limit"] + 1,
        )
        page, more = rows[: query["limit"]], len(rows) > query["limit"]
        return {
            "items": [row.as_dict() for row in page],
            "next_cursor": _roster_cursor(page[-1]) if more else None,
        }

    @allow("office", who="admin, an office whose node holds the district")
    @blp.arguments(VolunteerCreateSchema)
    @blp.response(201, VolunteerCreatedSchema)
    def post(self, body):
        """Register a volunteer with a card and a PIN (given, or drawn and answered once)."""
        principal = current_principal()
        district = directory.district_by_code(body["district"])
        require_scope(principal, district.path)
        drawn = body["pin"] is None
        pin = roster.new_pin("") if drawn else body["pin"]
        volunteer = directory.register_volunteer(
            body["name"], body["district"], pin, phone=body["phone"]
        )
        answer = {
            "id": volunteer.id,
            "name": volunteer.name,
            "district": district.code,
            "card_code": volunteer.card_code,
            "status": volunteer.status,
        }
        return {**answer, "pin": pin} if drawn else answer


@blp.route(f"/<{VOLUNTEER_ID}:volunteer_id>")
class VolunteerById(MethodView):
    @allow("office", who=f"admin, office {IN_NODE}")
    @blp.arguments(VolunteerPatchSchema)
    @blp.response(200, VolunteerProfileSchema)
    def patch(self, body, volunteer_id):
        """Change a volunteer's name, phone number or status (suspended, active)."""
        principal = current_principal()
        if "name" in body or "phone" in body:
            roster.update_volunteer(
                principal,
                volunteer_id,
                name=body.get("name"),
                phone=body.get("phone"),
                clear_phone="phone" in body and body["phone"] is None,
            )
        if "status" in body:
            roster.set_status(principal, volunteer_id, body["status"], body.get("reason", ""))
        return _profile(principal, volunteer_id)

    @allow("office", "auditor", "volunteer", who=f"admin, office and auditor {IN_NODE}, self")
    @blp.response(200, VolunteerProfileSchema)
    def get(self, volunteer_id):
        """Show a volunteer's profile; the phone number is masked except for offices."""
        principal = current_principal()
        reach_volunteer(principal, volunteer_id)
        return _profile(principal, volunteer_id)


def _profile(principal, volunteer_id: int) -> dict:
    """A volunteer's profile as `principal` may see it."""
    row = db.session.execute(
        select(Volunteer, District.code)
        .join(District, District.id == Volunteer.district_id)
        .where(Volunteer.id == volunteer_id)
    ).one()
    volunteer, code = row
    office = principal.role in ("admin", "office")
    return {
        "id": volunteer.id,
        "name": volunteer.name,
        "phone": volunteer.phone if office else mask_phone(volunteer.phone),
        "district": code,
        "card_code": volunteer.card_code if principal.role != "auditor" else None,
        "status": volunteer.status,
        "service_minutes": volunteer.service_minutes,
        "created_at": volunteer.created_at,
        "activation_pending": volunteer.activation_hash is not None,
    }


@blp.route(f"/<{VOLUNTEER_ID}:volunteer_id>/balance")
class VolunteerBalance(MethodView):
    @allow(
        "office",
        "auditor",
        "volunteer",
        "session",
        who=f"admin, office and auditor {IN_NODE}, self, a kiosk session of the volunteer",
    )
    @blp.arguments(AsOfQuerySchema, location="query")
    @blp.response(200, BalanceSchema)
    def get(self, query, volunteer_id):
        """Show a volunteer's points: balance, held, available, service time, expiring;
        with `as_of`, as they stood at that instant."""
        principal = current_principal()
        reach_volunteer(principal, volunteer_id)
        if query["as_of"] is None:
            return {**volunteers.balance(volunteer_id), "as_of": None}
        return volunteers.balance_as_of(volunteer_id, query["as_of"])


@blp.route(f"/<{VOLUNTEER_ID}:volunteer_id>/statement")
class VolunteerStatement(MethodView):
    @allow(
        "office",
        "auditor",
        "volunteer",
        "session",
        who=f"admin, office and auditor {IN_NODE}, self, a kiosk session of the volunteer",
    )
    @blp.arguments(StatementQuerySchema, location="query")
    @blp.response(200, StatementSchema)
    def get(self, query, volunteer_id):
        """A statement for [since, until): the opening balance, every line with the
        balance after it, the closing balance."""
        principal = current_principal()
        reach_volunteer(principal, volunteer_id)
        found = statements.statement(volunteer_id, query["since"], query["until"])
        return {
            "volunteer_id": volunteer_id,
            "since": found.start,
            "until": found.end,
            "opening": found.opening,
            "earned": found.earned,
            "spent": found.spent,
            "closing": found.closing,
            "lines": found.lines,
        }


@blp.route(f"/<{VOLUNTEER_ID}:volunteer_id>/entries")
class VolunteerEntries(MethodView):
    @allow("office", "auditor", "volunteer", who=f"admin, office and auditor {IN_NODE}, self")
    @blp.arguments(EntriesQuerySchema, location="query")
    @blp.response(200, EntryPageSchema)
    def get(self, query, volunteer_id):
        """List a volunteer's entries, newest first, each saying why; page with the cursor."""
        principal = current_principal()
        reach_volunteer(principal, volunteer_id)
        before = decode_cursor(query["cursor"]) if query["cursor"] is not None else None
        lines, next_id = volunteers.entries(
            volunteer_id, before=before, limit=query["limit"], month=query["month"]
        )
        return {
            "items": lines,
            "next_cursor": encode_cursor(next_id) if next_id is not None else None,
        }


class PageQuerySchema(Schema):
    cursor = fields.String(
        load_default=None,
        validate=validate.Length(1, 200),
        metadata={"description": "From next_cursor."},
    )
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))


class VolunteerRecordSchema(Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True)
    started_at = UtcDateTime(required=True)
    minutes = fields.Integer(required=True, allow_none=True)
    details = fields.Dict(required=True)
    status = fields.String(required=True, metadata={"description": "pending, approved, rejected"})
    points = fields.Integer(required=True)
    queue_reason = fields.String(
        required=True, allow_none=True, metadata={"description": "Why it waits, zh-CN / en."}
    )
    decided_at = UtcDateTime(required=True, allow_none=True)
    decision_reason = fields.String(
        required=True, allow_none=True, metadata={"description": "The office's reason."}
    )
    created_at = UtcDateTime(required=True)


class RecordPageSchema(Schema):
    items = fields.List(fields.Nested(VolunteerRecordSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class VoucherSchema(Schema):
    id = fields.Integer(required=True)
    sku = fields.String(required=True)
    name = fields.String(required=True, metadata={"description": "zh-CN"})
    name_en = fields.String(required=True)
    provider = fields.String(required=True, metadata={"description": "The provider's name."})
    points = fields.Integer(required=True)
    voucher_code = fields.String(required=True)
    status = fields.String(
        required=True, metadata={"description": "held, fulfilled, cancelled or expired"}
    )
    created_at = UtcDateTime(required=True)
    expires_at = UtcDateTime(
        required=True, allow_none=True, metadata={"description": "While held: when it lapses."}
    )
    resolved_at = UtcDateTime(required=True, allow_none=True)


class VoucherPageSchema(Schema):
    items = fields.List(fields.Nested(VoucherSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class PinChangeSchema(Schema):
    old_pin = fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(1, 12),
        metadata={"description": "The current PIN; while one is pending, the activation code."},
    )
    new_pin = fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(1, 6),
        metadata={"description": "Six digits; not trivial (123456), not from the card code."},
    )


def _page(lines: list[dict], next_id: int | None) -> dict:
    return {"items": lines, "next_cursor": encode_cursor(next_id) if next_id else None}


def _before(query: dict) -> int | None:
    return decode_cursor(query["cursor"]) if query["cursor"] is not None else None


@blp.route(f"/<{VOLUNTEER_ID}:volunteer_id>/service-records")
class VolunteerRecords(MethodView):
    @allow("office", "auditor", "volunteer", who=f"admin, office and auditor {IN_NODE}, self")
    @blp.arguments(PageQuerySchema, location="query")
    @blp.response(200, RecordPageSchema)
    def get(self, query, volunteer_id):
        """List a volunteer's service records, newest first, with the office's decisions."""
        reach_volunteer(current_principal(), volunteer_id)
        return _page(*volunteers.records(volunteer_id, before=_before(query), limit=query["limit"]))


@blp.route(f"/<{VOLUNTEER_ID}:volunteer_id>/redemptions")
class VolunteerVouchers(MethodView):
    @allow("office", "auditor", "volunteer", who=f"admin, office and auditor {IN_NODE}, self")
    @blp.arguments(PageQuerySchema, location="query")
    @blp.response(200, VoucherPageSchema)
    def get(self, query, volunteer_id):
        """List a volunteer's vouchers (redemptions), newest first."""
        reach_volunteer(current_principal(), volunteer_id)
        return _page(
            *volunteers.vouchers(volunteer_id, before=_before(query), limit=query["limit"])
        )


@blp.route(f"/<{VOLUNTEER_ID}:volunteer_id>/pin")
class VolunteerPin(MethodView):
    @allow("volunteer", admin=False, who="the volunteer themselves")
    @blp.arguments(PinChangeSchema)
    @blp.response(204)
    def put(self, body, volunteer_id):
        """Change one's own PIN: the old PIN (counted like any attempt), then the new one."""
        principal = current_principal()
        reach_volunteer(principal, volunteer_id)
        auth.change_pin(volunteer_id, body["old_pin"], body["new_pin"])
        auth.end_volunteer_sessions(volunteer_id, keep=principal.token_id)


@blp.route(f"/<{VOLUNTEER_ID}:volunteer_id>/pin-reset")
class VolunteerPinReset(MethodView):
    @allow("office", who=f"admin, office {IN_NODE}")
    @blp.response(200, NewPinSchema)
    def post(self, volunteer_id):
        """Give the volunteer a new random PIN (answered once), unlock the card and end their
        sessions."""
        return {"pin": roster.reset_pin(current_principal(), volunteer_id)}


@blp.route(f"/<{VOLUNTEER_ID}:volunteer_id>/activation")
class VolunteerActivation(MethodView):
    @allow("office", who=f"admin, office {IN_NODE}")
    @blp.response(200, NewActivationSchema)
    def post(self, volunteer_id):
        """Give the volunteer a new one-time activation code (answered once): their PIN and
        any earlier code stop working, the card unlocks, their sessions end."""
        return {"activation_code": roster.issue_activation(current_principal(), volunteer_id)}


@blp.route(f"/<{VOLUNTEER_ID}:volunteer_id>/unlock")
class VolunteerUnlock(MethodView):
    @allow("office", who=f"admin, office {IN_NODE}")
    @blp.response(204)
    def post(self, volunteer_id):
        """Unlock a card locked by wrong PINs."""
        roster.unlock_card(current_principal(), volunteer_id)


@blp.route(f"/<{VOLUNTEER_ID}:volunteer_id>/reissue-card")
class VolunteerReissueCard(MethodView):
    @allow("office", who=f"admin, office {IN_NODE}")
    @blp.response(200, NewCardSchema)
    def post(self, volunteer_id):
        """Give the volunteer a new card code; the old card stops working at once."""
        return {"card_code": roster.reissue_card(current_principal(), volunteer_id)}

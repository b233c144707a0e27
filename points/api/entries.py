"""Entries: corrections by reversal (the original stays; a correcting entry undoes it)."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from points import corrections
from points.api import idempotency
from points.api.body import Blueprint
from points.api.common import ENTRY_ID, UtcDateTime, allow
from points.auth import current_principal
from points.extensions import db
from points.models import Account, District, Entry, Posting

blp = Blueprint("entries", __name__, url_prefix="/api/v1/entries", description="Corrections.")


class ReverseSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(1, 500))


class PostingSchema(Schema):
    account_id = fields.Integer(required=True)
    account_kind = fields.String(required=True)
    volunteer_id = fields.Integer(required=True, allow_none=True)
    amount = fields.Integer(required=True)


class EntrySchema(Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True)
    district = fields.String(required=True)
    reason = fields.String(required=True)
    actor = fields.String(required=True)
    created_at = UtcDateTime(required=True)
    effective_at = UtcDateTime(required=True)
    plugin = fields.String(required=True, allow_none=True)
    rule = fields.String(required=True, allow_none=True)
    reverses_id = fields.Integer(required=True, allow_none=True)
    postings = fields.List(fields.Nested(PostingSchema), required=True)


def describe_entry(entry_id: int) -> dict:
    """Return an entry with its postings as the API shows it."""
    entry, code = db.session.execute(
        select(Entry, District.code)
        .join(District, District.id == Entry.district_id)
        .where(Entry.id == entry_id)
    ).one()
    postings = db.session.execute(
        select(Posting.account_id, Account.kind, Account.volunteer_id, Posting.amount)
        .join(Account, Account.id == Posting.account_id)
        .where(Posting.entry_id == entry_id)
        .order_by(Posting.id)
    ).all()
    return {
        "id": entry.id,
        "kind": entry.kind,
        "district": code,
        "reason": entry.reason,
        "actor": entry.actor,
        "created_at": entry.created_at,
        "effective_at": entry.effective_at,
        "plugin": entry.plugin,
        "rule": entry.rule,
        "reverses_id": entry.reverses_id,
        "postings": [
            {"account_id": a, "account_kind": k, "volunteer_id": v, "amount": m}
            for a, k, v, m in postings
        ],
    }


@blp.route(f"/<{ENTRY_ID}:entry_id>/reverse")
class EntryReverse(MethodView):
    @allow("office", replay=True, who="admin, an office over every node the entry touches")
    @blp.doc(parameters=[idempotency.PARAMETER])
    @blp.arguments(ReverseSchema)
    @blp.response(201, EntrySchema, headers=idempotency.REPLAY_HEADER_DOC)
    def post(self, body, entry_id):
        """Correct an entry by posting its reversal."""
        principal = current_principal()
        # Checked before the key is claimed: a 403 is not remembered as the answer.
        corrections.check_reach(principal, entry_id)

        def work() -> dict:
            reversal = corrections.reverse_entry(principal, entry_id, body["reason"])
            return EntrySchema().dump(describe_entry(reversal.id))

        return idempotency.idempotent(principal, "reverse", {"entry_id": entry_id, **body}, work)

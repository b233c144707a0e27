"""The audit log: who changed what, in which node, when and from where.

Every service function that changes something other than points (people, cards, tokens,
providers, policy, decisions) calls `record` inside its own unit of work, so the row
commits or rolls back with the change. Point movements a volunteer or kiosk makes
(records, redemptions, gifts) are audited by the ledger itself: each entry names its
actor and sits in a hash chain (docs/architecture.md, "The audit log").

Who is acting comes from the request (the authenticated token or staff session, set by
`acting_as`) or, outside a request, from `cli_actor` (commands) or "system".
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flask import has_request_context, request
from sqlalchemy import insert, select

from points import ledger
from points.extensions import db
from points.models import AuditEvent, utcnow

if TYPE_CHECKING:
    from points.auth import Principal

# Never written into before/after, whatever a caller passes.
SECRET_FIELDS = frozenset(
    {"pin", "pin_hash", "password", "password_hash", "token", "token_hash", "secret"}
)


@dataclass(frozen=True)
class Actor:
    """Who is acting: "staff:3", "office:12" (a token), "cli:root", "system"."""

    actor: str
    name: str | None = None
    ip: str | None = None
    request_id: str | None = None


SYSTEM = Actor("system")
_outside_request: ContextVar[Actor] = ContextVar("points_audit_actor", default=SYSTEM)
_ENVIRON_KEY = "points.actor"


def acting_as(principal: Principal) -> None:
    """Remember for this request that `principal` is acting (called at authentication)."""
    from points.observability import request_id_for

    request.environ[_ENVIRON_KEY] = Actor(
        principal.actor,
        principal.name,
        request.remote_addr,
        request_id_for(request.environ),
    )


def acting_anonymously() -> None:
    """Remember that nobody signed in is acting (a sign-in form, a public page)."""
    from points.observability import request_id_for

    request.environ[_ENVIRON_KEY] = Actor(
        "anonymous", None, request.remote_addr, request_id_for(request.environ)
    )


@contextmanager
def cli_actor() -> Iterator[None]:
    """Make the operating-system user the actor of the changes made within."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    token = _outside_request.set(Actor(f"cli:{user}", user))
    try:
        yield
    finally:
        _outside_request.reset(token)


def current_actor() -> Actor:
    """Return who is acting now."""
    if has_request_context():
        found = request.environ.get(_ENVIRON_KEY)
        if found is not None:
            return found
        from points.observability import request_id_for

        return Actor("anonymous", None, request.remote_addr, request_id_for(request.environ))
    return _outside_request.get()


def changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[dict, dict]:
    """Return the fields that differ, as (before, after) dicts of just those fields."""
    keys = [key for key in after if before.get(key) != after.get(key)]
    return {key: before.get(key) for key in keys}, {key: after.get(key) for key in keys}


def _path_of(district_id: int) -> str:
    """A node's path, from the request's cache of nodes when it has it (a path never
    changes)."""
    from points.policy import district_info

    return district_info(district_id).path


def record(
    action: str,
    *,
    district_id: int | None,
    target: tuple[str, Any] | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    actor: Actor | None = None,
) -> None:
    """Write one audit row in the caller's unit of work.

    `action` is "<thing>.<verb>" ("volunteer.edit"); `target` is (type, id). Must be
    called inside ledger.atomic, so that the row commits with the change it describes.
    """
    if not ledger.in_unit_of_work():
        raise RuntimeError("audit.record must run inside the change's unit of work")
    who = actor or current_actor()
    path = _path_of(district_id) if district_id is not None else None
    db.session.execute(
        insert(AuditEvent).values(
            at=utcnow(),
            actor=who.actor[:200],
            actor_name=(who.name or None) and who.name[:200],
            action=action,
            target_type=target[0] if target else None,
            target_id=str(target[1]) if target else None,
            district_id=district_id,
            district_path=path,
            ip=who.ip,
            request_id=who.request_id,
            before=_clean(before),
            after=_clean(after),
        )
    )


def _clean(values: Mapping[str, Any] | None) -> dict | None:
    if values is None:
        return None
    return {key: _jsonable(value) for key, value in values.items() if key not in SECRET_FIELDS}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): _jsonable(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(inner) for inner in value]
    return value


# -- reading -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """What an audit log query keeps (every field optional)."""

    district_path: str | None = None
    action: str | None = None
    actor: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def events(
    principal: Principal, filters: Filters, *, before: int | None = None, limit: int = 50
) -> list[AuditEvent]:
    """Audit rows of `principal`'s node and below (admins: all), newest first.

    `filters.district_path` narrows to a node in reach; `before` is the id of the last
    row of the page before (a cursor). Rows without a node (a sign-in with an unknown
    username) are shown to admins only.
    """
    from points.auth import require_scope

    statement = select(AuditEvent)
    if filters.district_path is not None:
        require_scope(principal, filters.district_path, "this district node")
        statement = statement.where(
            AuditEvent.district_path.startswith(filters.district_path, autoescape=True)
        )
    elif principal.role != "admin":
        statement = statement.where(
            AuditEvent.district_path.startswith(principal.path, autoescape=True)
        )
    if filters.action:
        # "volunteer" matches every volunteer action; "volunteer.edit" just that one.
        if "." in filters.action:
            statement = statement.where(AuditEvent.action == filters.action)
        else:
            statement = statement.where(
                AuditEvent.action.startswith(filters.action + ".", autoescape=True)
            )
    if filters.actor:
        statement = statement.where(AuditEvent.actor == filters.actor)
    if filters.target_type:
        statement = statement.where(AuditEvent.target_type == filters.target_type)
    if filters.target_id:
        statement = statement.where(AuditEvent.target_id == filters.target_id)
    if filters.since:
        statement = statement.where(AuditEvent.at >= filters.since)
    if filters.until:
        statement = statement.where(AuditEvent.at < filters.until)
    if before is not None:
        statement = statement.where(AuditEvent.id < before)
    statement = statement.order_by(AuditEvent.id.desc()).limit(max(1, min(limit, 500)))
    return list(db.session.scalars(statement))


def as_dict(event: AuditEvent) -> dict[str, Any]:
    """An audit row as the API shows it."""
    return {
        "id": event.id,
        "at": event.at,
        "actor": event.actor,
        "actor_name": event.actor_name,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "district_id": event.district_id,
        "ip": event.ip,
        "request_id": event.request_id,
        "before": event.before,
        "after": event.after,
    }

"""Policy drafts: a node's next version of a plugin's configuration, worked on before it
is stored.

Public: get_draft(principal, district, plugin) -> Draft | None; start_draft(...) -> Draft
(the node's layer in effect, as a draft, unsaved); save_draft(principal, district,
plugin, config, *, locked, enabled, comment) -> Draft; discard_draft(principal, district,
plugin); preview_draft(principal, district, plugin, start, end) -> Preview;
activate_draft(principal, district, plugin, effective_from=None) -> VersionInfo.

A draft holds the whole layer the node will set (its config, locks and switch), as a
version would. Saving checks it as `set_policy` would (`policy.check_draft`: the
plugin's schema, locks from above, known providers), so a saved draft can always be
previewed. Activation stores it through `set_policy` (the one writer of versions, with
its audit row) and removes the draft in the same unit of work, naming the version the
draft began from: if someone stored a newer one meanwhile, nothing is stored (412) and
the office looks again. Every save, discard and activation is in the audit log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select

from points import audit, ledger
from points.auth import Principal, require_scope
from points.errors import InvalidInputError, NotFoundError
from points.extensions import db
from points.models import PolicyDraft, utcnow
from points.policy import VersionInfo, _known_plugin, check_draft, district_info, set_policy
from points.policy_versions import own_layer
from points.service import Preview, preview_policy


@dataclass(frozen=True)
class Draft:
    """A draft as the editor shows it. `saved` is False for a draft not yet stored (the
    layer in effect, offered as a start)."""

    district: str
    plugin: str
    config: dict
    locked: list[str]
    enabled: bool | None
    base_version: int
    author: str | None
    comment: str | None
    updated_at: datetime | None
    saved: bool = True

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _node(principal: Principal, district):
    node = district_info(district)
    require_scope(principal, node.path, "this district node")
    return node


def _row(node_id: int, plugin: str) -> PolicyDraft | None:
    return db.session.scalars(
        select(PolicyDraft).where(PolicyDraft.district_id == node_id, PolicyDraft.plugin == plugin)
    ).first()


def _draft(row: PolicyDraft, code: str) -> Draft:
    return Draft(
        code,
        row.plugin,
        dict(row.config),
        list(row.locked),
        row.enabled,
        row.base_version,
        row.author,
        row.comment,
        row.updated_at,
    )


def get_draft(principal: Principal, district, plugin: str) -> Draft | None:
    """The node's saved draft of `plugin`, or None."""
    node = _node(principal, district)
    _known_plugin(plugin)
    row = _row(node.id, plugin)
    return _draft(row, node.code) if row is not None else None


def start_draft(principal: Principal, district, plugin: str) -> Draft:
    """The saved draft, else the node's layer in effect offered as one (not stored)."""
    node = _node(principal, district)
    layer = own_layer(node, plugin)
    row = _row(node.id, plugin)
    if row is not None:
        return _draft(row, node.code)
    return Draft(
        node.code,
        plugin,
        layer.config,
        layer.locked,
        layer.enabled,
        layer.newest,
        None,
        None,
        None,
        saved=False,
    )


def _stored(row: PolicyDraft | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "config": row.config,
        "locked": list(row.locked),
        "enabled": row.enabled,
        "base_version": row.base_version,
        "comment": row.comment,
    }


def save_draft(
    principal: Principal,
    district,
    plugin: str,
    config: Any,
    *,
    locked: Iterable[str] = (),
    enabled: bool | None = None,
    comment: str | None = None,
) -> Draft:
    """Check and store the node's draft of `plugin` (replacing its earlier draft).

    Raises InvalidInputError (field errors as set_policy gives them, nothing stored),
    NotFoundError, ForbiddenError."""
    node = _node(principal, district)
    if comment is not None and (not isinstance(comment, str) or len(comment) > 1000):
        raise InvalidInputError("comment must be text", errors={"comment": ["At most 1000."]})
    node, config, locked, _when = check_draft(node, plugin, config, locked=locked, enabled=enabled)

    def work() -> Draft:
        row = _row(node.id, plugin)
        before = _stored(row)
        if row is None:
            row = PolicyDraft(
                district_id=node.id,
                plugin=plugin,
                base_version=own_layer(node, plugin).newest,
            )
            db.session.add(row)
        row.config, row.locked, row.enabled = config, list(locked), enabled
        row.comment, row.author, row.updated_at = comment, principal.actor, utcnow()
        db.session.flush()
        audit.record(
            "policy.draft_save",
            district_id=node.id,
            target=("policy", f"{node.code}/{plugin}"),
            before=before,
            after=_stored(row),
        )
        return _draft(row, node.code)

    return ledger.atomic(work)


def discard_draft(principal: Principal, district, plugin: str) -> None:
    """Remove the node's draft of `plugin`; NotFoundError when there is none."""
    node = _node(principal, district)

    def work() -> None:
        row = _row(node.id, plugin)
        if row is None:
            raise NotFoundError(f"no draft of {plugin!r} at {node.code}")
        before = _stored(row)
        db.session.execute(delete(PolicyDraft).where(PolicyDraft.id == row.id))
        audit.record(
            "policy.draft_discard",
            district_id=node.id,
            target=("policy", f"{node.code}/{plugin}"),
            before=before,
        )

    ledger.atomic(work)


def _saved(node, plugin: str) -> PolicyDraft:
    row = _row(node.id, plugin)
    if row is None:
        raise NotFoundError(
            f"no draft of {plugin!r} at {node.code}: save one first",
            errors={"draft": ["Save a draft first."]},
        )
    return row


def preview_draft(
    principal: Principal, district, plugin: str, start: datetime, end: datetime
) -> Preview:
    """What the saved draft would have awarded over [start, end), beside the policy in
    effect: totals and per volunteer. Writes nothing."""
    node = _node(principal, district)
    row = _saved(node, plugin)
    return preview_policy(
        node, plugin, row.config, start=start, end=end, locked=row.locked, enabled=row.enabled
    )


def activate_draft(
    principal: Principal, district, plugin: str, effective_from: datetime | date | None = None
) -> VersionInfo:
    """Store the saved draft as the node's next version, in effect now or from a date or
    time (not before now), and remove the draft, in one unit of work.

    Raises NotFoundError (no draft), InvalidInputError (the draft no longer fits, e.g. a
    lock set above since; or a start in the past), PreconditionFailedError (a newer
    version was stored since the draft began)."""
    node = _node(principal, district)
    if effective_from is not None:
        when = (
            effective_from
            if isinstance(effective_from, datetime)
            else datetime.combine(effective_from, time(0), ZoneInfo(node.timezone))
        )
        if when.tzinfo is None or when.date() < utcnow().astimezone(when.tzinfo).date():
            raise InvalidInputError(
                "a draft takes effect today or later",
                errors={"effective_from": ["Today or later."]},
            )

    def work() -> VersionInfo:
        row = _saved(node, plugin)
        stored = set_policy(
            node,
            plugin,
            row.config,
            author=principal.actor,
            locked=row.locked,
            enabled=row.enabled,
            effective_from=effective_from,
            comment=row.comment,
            expected_version=row.base_version,
        )
        db.session.execute(delete(PolicyDraft).where(PolicyDraft.id == row.id))
        return stored

    return ledger.atomic(work)

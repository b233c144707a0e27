"""Posting a record's awards through the ledger, and telling listeners once committed."""

from __future__ import annotations

import logging
from datetime import datetime

from points import ledger
from points.errors import PluginError
from points.ledger import fused
from points.models import utcnow
from points.plugins import LotInfo, PointsPluginManager, RecordInfo, VolunteerInfo, call_each
from points.policy import Policy

logger = logging.getLogger(__name__)


def _post(
    pm: PointsPluginManager,
    policy: Policy,
    record: RecordInfo,
    volunteer: VolunteerInfo,
    awards: tuple[dict, ...],
    actor: str,
    *,
    count_minutes: bool,
    skip: frozenset[tuple[str, str]] = frozenset(),
    effective_at: datetime | None = None,
) -> list:
    """Post one earn entry per award with points, except the `skip` (plugin, rule) keys,
    inside the caller's unit; count the record's minutes once. Return the entries.

    `effective_at` (default now) dates the entries, their lots' expiry and the minutes:
    a paper record imported today is dated its service."""
    posted = [
        ledger.earn(
            volunteer.id,
            earn.points,
            actor=actor,
            reason=earn.reason,
            effective_at=effective_at,
            expires_at=earn.expires_at,
            plugin=earn.plugin,
            rule=earn.rule,
            config_version=earn.config_version,
            service_record_id=record.id,
        )
        for earn in _earns(pm, policy, record, volunteer, awards, effective_at or utcnow(), skip)
    ]
    if count_minutes and record.minutes:
        ledger.add_service_minutes(
            volunteer.id,
            record.minutes,
            actor=actor,
            reason=_minutes_reason(record),
            service_record_id=record.id,
            counted_at=effective_at,
        )
    return posted


def _earns(
    pm: PointsPluginManager,
    policy: Policy,
    record: RecordInfo,
    volunteer: VolunteerInfo,
    awards: tuple[dict, ...],
    now: datetime,
    skip: frozenset[tuple[str, str]] = frozenset(),
) -> list[fused.Earn]:
    """Return the earns for the awards with points, but the `skip` keys: each with its
    reason and the expiry the plugins give its lot."""
    earns = []
    for award in awards:
        if award["points"] <= 0 or (award["plugin"], award["rule"]) in skip:
            continue
        lot = LotInfo(
            volunteer.id,
            record.district_id,
            award["points"],
            now,
            award["plugin"],
            award["rule"],
            record.timezone,
        )
        answers = call_each(
            pm, "expiry_for", {"lot": lot}, enabled=policy.enabled, config_for=policy.config
        )
        reason = award["reason_zh"] + " / " + award["reason_en"]
        if award["clip"]:
            reason += f"（{award['clip']['reason_zh']}）/ ({award['clip']['reason_en']})"
        earns.append(
            fused.Earn(
                award["points"],
                reason,
                min((when for _, when in answers), default=None),
                award["plugin"],
                award["rule"],
                award["config_version"],
            )
        )
    return earns


def _minutes_reason(record: RecordInfo) -> str:
    return f"service record {record.id} ({record.kind})"


def _notify(pm: PointsPluginManager, policy: Policy, entries: list) -> None:
    """Tell plugins about the entries once they are committed (the caller's unit of work
    may be larger than ours); a failing listener is logged, never undone."""

    def deliver() -> None:
        for entry in entries:
            try:
                call_each(pm, "entry_posted", {"entry": entry}, enabled=policy.enabled)
            except PluginError:
                logger.exception("entry_posted listener failed for entry %s", entry.id)

    if entries:
        ledger.after_commit(deliver)

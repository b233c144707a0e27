"""Past service in bulk: one volunteer's paper records, evaluated in service order and
posted in one unit of work, each dated its service (points.imports).

The same pipeline as `record_service` (the record's checks, the earning plugins under
the policy in force on the service date, the same posting), with three differences a
paper book needs:

- Dated its service: the earn entries' effective time, their lots' expiry and the
  minutes' count are the service's start, so expiry and monthly totals are right for
  last year's service.
- In service order: the volunteer's records are evaluated oldest first, each seeing the
  approved history before it plus the records of the batch before it, so the caps give
  the same points whatever the order of the file.
- Approved by the import: the office checked these on paper; the approval plugins are
  not asked, and the decision reason says where each record came from.

A record is posted once: its key goes into `import_keys` in the same unit, and a key
already there (an earlier run of the same file) is reported as a duplicate.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select

from points import budgets, ledger
from points.errors import (
    AccountClosedError,
    ConflictError,
    InvalidInputError,
    PluginError,
    PointsError,
)
from points.extensions import db
from points.models import ImportKey, ServiceRecord, utcnow
from points.plugins import History, PastRecord, RecordInfo, plugin_manager
from points.policy import resolve_policy
from points.service.evaluation import evaluate
from points.service.posting import _earns, _notify
from points.service.reading import (
    _EARLIEST,
    _LATEST,
    _VOLUNTEER_LOCKED,
    _history_rows,
    _star_level,
    _volunteer_and_policy,
    past_record,
)
from points.service.submission import (
    _check_record,
    _record_values,
    policy_zone,
)


@dataclass(frozen=True)
class PastService:
    """A record of past service to post: `key` is unique over all imports."""

    key: str
    line: int
    kind: str
    started_at: datetime
    minutes: int | None
    details: Mapping[str, Any]


@dataclass(frozen=True)
class PastOutcome:
    """What became of one PastService: posted (with its points and minutes), duplicate
    (posted by an earlier run) or refused (with the reason and nothing written)."""

    line: int
    status: str
    points: int = 0
    minutes: int = 0
    reason: str | None = None
    record_id: int | None = None


def record_past_service(
    volunteer_id: int,
    services: list[PastService],
    *,
    actor: str,
    reason: str,
    run_id: int | None,
    dry_run: bool = False,
) -> list[PastOutcome]:
    """Post a volunteer's past service in service order, in one unit of work; return an
    outcome per service, in service order. A dry run evaluates and writes exactly as a
    real run would, then rolls back, so that it reports the same points.

    Raises NotFoundError (no such volunteer) and AccountClosedError (not active): the
    whole batch is then refused. A bad record is refused alone.
    """
    pm = plugin_manager()
    ordered = sorted(services, key=lambda s: (s.started_at, s.line))
    now = utcnow()
    posted: dict[str, Any] = {}

    def unit() -> list[PastOutcome]:
        volunteer, policy, _ = _volunteer_and_policy(volunteer_id, None, now, _VOLUNTEER_LOCKED)
        if volunteer.status != "active":
            raise AccountClosedError(f"volunteer {volunteer_id} is not active")
        known = _posted_keys([s.key for s in ordered])
        taken = _dedupe_keys(volunteer.id)
        history = _KnownHistory(_history_rows(volunteer.id, None, _EARLIEST, _LATEST))
        minutes = volunteer.service_minutes
        outcomes: list[PastOutcome] = []
        checked: list[_Checked] = []
        # Evaluate in service order, each record seeing the ones before it; write nothing.
        for service in ordered:
            if service.key in known:
                outcomes.append(PastOutcome(service.line, "duplicate"))
                continue
            try:
                one = _evaluated(pm, volunteer, minutes, service, history, taken, now)
            except (InvalidInputError, ConflictError, PluginError) as error:
                outcomes.append(PastOutcome(service.line, "refused", reason=_why(error)))
                continue
            known.add(service.key)
            if one.dedupe is not None:
                taken.add(one.dedupe)
            minutes += service.minutes or 0
            history.add(one.past)
            checked.append(one)
            outcomes.append(one)  # replaced by its outcome once written
        # Then write them all: a statement per table for the batch.
        written = _write(checked, volunteer, actor, reason, now, run_id)
        outcomes = [written.get(id(o), o) for o in outcomes]
        posted.update(policy=policy, entries=written["entries"])
        return outcomes

    if dry_run:
        return ledger.rolled_back(unit)
    outcomes = ledger.atomic(unit)
    if posted["entries"]:
        _notify(pm, posted["policy"], posted["entries"])
    return outcomes


@dataclass(frozen=True)
class _Checked:
    """A service checked and evaluated, ready to write: its record's columns but the id,
    its earns, and the record as the history of the next ones sees it."""

    service: PastService
    values: dict[str, Any]
    dedupe: str | None
    points: int
    earns: list
    past: PastRecord


def _evaluated(pm, volunteer, minutes, service, history, taken, now) -> _Checked:
    """Check one service and evaluate it as of its start, the volunteer as they were
    then (their minutes so far in this batch); write nothing. Raises InvalidInputError,
    ConflictError (a second once-a-day record), PluginError."""
    # The policy in force when the service started decides its points.
    policy = resolve_policy(volunteer.district_id, min(service.started_at, now))
    spec, clean = _check_record(
        pm, policy, service.kind, service.started_at, service.minutes, service.details, now
    )
    node = policy.district
    local_day = service.started_at.astimezone(policy_zone(node)).date()
    dedupe = f"{service.kind}:{local_day.isoformat()}" if spec.once_per_day else None
    if dedupe is not None and dedupe in taken:
        raise ConflictError(
            f"a {service.kind} on {local_day} is already recorded",
            errors={"date": [f"Already a {service.kind} on {local_day}."]},
        )
    as_then = replace(
        volunteer, service_minutes=minutes, star_level=_star_level(pm, policy, minutes)
    )
    record = RecordInfo(
        None,
        node.id,
        volunteer.id,
        service.kind,
        service.started_at,
        service.minutes,
        clean,
        node.timezone,
    )
    evaluation = evaluate(pm, policy, record, as_then, history, review=False)
    # Past service counts against the budgets of its own period (its earns are dated
    # its start): clipped, or refused for the office to record when a budget queues.
    awards, queued = budgets.settle(node, evaluation.awards, service.started_at, may_queue=True)
    if queued is not None:
        raise ConflictError(
            queued.reason_en,
            errors={"points": [f"{queued.reason_zh} / {queued.reason_en}"]},
        )
    evaluation = replace(evaluation, awards=awards)
    # The lots' expiry counts from the service (the plugins' `expiry_for`).
    earns = _earns(pm, policy, record, as_then, evaluation.awards, service.started_at)
    values = _record_values(evaluation, record, dedupe, "", now)
    values |= {"status": "approved", "points": evaluation.points, "queue_reason": None}
    past = past_record(
        None,
        service.kind,
        service.started_at,
        service.minutes,
        evaluation.points,
        clean,
        list(evaluation.awards),
    )
    return _Checked(service, values, dedupe, evaluation.points, earns, past)


def _write(checked: list[_Checked], volunteer, actor, reason, now, run_id) -> dict:
    """Insert the checked services as approved records, their earns and minutes dated
    their start, and their import keys; return {id(checked): outcome, "entries": [...]}."""
    written: dict = {"entries": []}
    if not checked:
        return written
    ids = ledger.reserve_ids("service_records", len(checked))
    records, earns, minutes, keys = [], [], [], []
    for record_id, one in zip(ids, checked, strict=True):
        service = one.service
        records.append(
            one.values
            | {
                "id": record_id,
                "submitted_by": actor,
                "decided_at": now,
                "decided_by": actor,
                "decision_reason": reason,
            }
        )
        earns += [
            ledger.BatchEarn(
                earn.points,
                earn.reason,
                service.started_at,
                earn.expires_at,
                earn.plugin,
                earn.rule,
                earn.config_version,
                record_id,
            )
            for earn in one.earns
        ]
        if service.minutes:
            minutes.append(
                ledger.BatchMinutes(
                    service.minutes,
                    f"service record {record_id} ({service.kind})",
                    record_id,
                    service.started_at,
                )
            )
        keys.append(
            {
                "key": service.key,
                "district_id": volunteer.district_id,
                "run_id": run_id,
                "line": service.line,
                "volunteer_id": volunteer.id,
                "service_record_id": record_id,
                "created_at": now,
            }
        )
        written[id(one)] = PastOutcome(
            service.line, "posted", one.points, service.minutes or 0, record_id=record_id
        )
    ledger.insert_many(ServiceRecord.__table__, records)
    written["entries"] = ledger.earn_many(volunteer.id, earns, actor=actor)
    ledger.add_service_minutes_many(volunteer.id, minutes, actor=actor)
    ledger.insert_many(ImportKey.__table__, keys)
    return written


class _KnownHistory(History):
    """A volunteer's whole approved history, read once for a batch and kept in service
    order as the batch adds to it: each record is evaluated against what was approved
    before the batch and what the batch has evaluated so far, with no query per record.
    (The batch's records are written only after all are evaluated.)"""

    def __init__(self, records: list[PastRecord]):
        super().__init__(None)
        self._sorted = sorted(records, key=_order)
        # Timestamps: bisecting floats is several times faster than aware datetimes.
        self._starts = [r.started_at.timestamp() for r in self._sorted]

    def add(self, record: PastRecord) -> None:
        at = bisect.bisect_right(self._sorted, _order(record), key=_order)
        self._sorted.insert(at, record)
        self._starts.insert(at, record.started_at.timestamp())

    def records(self, kind=None, since=None, until=None) -> list[PastRecord]:
        starts = self._starts
        low = 0 if since is None else bisect.bisect_left(starts, since.timestamp())
        high = len(starts) if until is None else bisect.bisect_left(starts, until.timestamp())
        return [r for r in self._sorted[low:high] if kind is None or r.kind == kind]


def _order(record: PastRecord) -> tuple[datetime, int]:
    return record.started_at, record.id or 0


def _posted_keys(keys: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        found.update(db.session.scalars(select(ImportKey.key).where(ImportKey.key.in_(chunk))))
    return found


def _dedupe_keys(volunteer_id: int) -> set[str]:
    return set(
        db.session.scalars(
            select(ServiceRecord.dedupe_key).where(
                ServiceRecord.volunteer_id == volunteer_id, ServiceRecord.dedupe_key.is_not(None)
            )
        )
    )


def _why(error: PointsError) -> str:
    """One line: the error's field messages, or its detail."""
    errors = getattr(error, "errors", None) or {}
    if errors:
        return "; ".join(
            f"{field}: {' '.join(messages)}" for field, messages in sorted(errors.items())
        )
    return str(getattr(error, "detail", error))

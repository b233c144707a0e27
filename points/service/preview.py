"""Previewing a policy draft: the evaluation re-run over a node's past records, writing nothing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from points.errors import InvalidInputError
from points.extensions import db
from points.models import District, ServiceRecord, Volunteer
from points.plugins import DistrictInfo, History, RecordInfo, plugin_manager
from points.policy import VersionInfo, check_draft, district_info, resolve_policy
from points.service.evaluation import evaluate
from points.service.reading import history_for, past_record, volunteer_info


@dataclass(frozen=True)
class PreviewRow:
    """One volunteer in a preview: records in the period, points actually posted for
    them, and points under the current policy and under the draft."""

    volunteer_id: int
    name: str
    records: int
    actual: int
    current: int
    draft: int


@dataclass(frozen=True)
class Preview:
    """What a draft would have awarded over a past period, beside the current policy."""

    district: str
    plugin: str
    start: datetime
    end: datetime
    rows: tuple[PreviewRow, ...]

    @property
    def records(self) -> int:
        return sum(row.records for row in self.rows)

    @property
    def current_total(self) -> int:
        return sum(row.current for row in self.rows)

    @property
    def draft_total(self) -> int:
        """The draft's cost in points over the period."""
        return sum(row.draft for row in self.rows)

    @property
    def actual_total(self) -> int:
        return sum(row.actual for row in self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "district": self.district,
            "plugin": self.plugin,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "records": self.records,
            "current_total": self.current_total,
            "draft_total": self.draft_total,
            "actual_total": self.actual_total,
            "volunteers": [row.__dict__ for row in self.rows],
        }


def preview_policy(
    district: int | str | DistrictInfo,
    plugin: str,
    config: Any,
    *,
    start: datetime,
    end: datetime,
    locked: Iterable[str] = (),
    enabled: bool | None = None,
) -> Preview:
    """Re-run the earning plugins over the node's service records that started in
    [start, end) (pending or approved, oldest first), under the current policy and
    under the draft as if it had taken effect at `start`; write nothing.

    Raises what set_policy raises for a bad draft, InvalidInputError for bad dates,
    PluginError.
    """
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise InvalidInputError(f"{name} needs a time zone", errors={name: ["Aware time."]})
    if end <= start:
        raise InvalidInputError("end must be after start", errors={"end": ["After start."]})
    node, config, locked, when = check_draft(
        district, plugin, config, locked=locked, enabled=enabled, effective_from=start
    )
    draft = VersionInfo(-1, node.id, plugin, 0, config, locked, enabled, "", None, when, when)
    overrides = {(node.id, plugin): draft}
    pm = plugin_manager()
    try:
        subtree = select(District.id).where(District.path.startswith(node.path))
        rows = (
            db.session.execute(
                select(ServiceRecord)
                .where(
                    ServiceRecord.district_id.in_(subtree),
                    ServiceRecord.started_at >= start,
                    ServiceRecord.started_at < end,
                    ServiceRecord.status.in_(("pending", "approved")),
                )
                .order_by(ServiceRecord.started_at, ServiceRecord.id)
            )
            .scalars()
            .all()
        )
        totals: dict[int, dict[str, int]] = {}
        histories: dict[tuple[int, str], History] = {}
        names = dict(
            db.session.execute(
                select(Volunteer.id, Volunteer.name).where(
                    Volunteer.id.in_({row.volunteer_id for row in rows})
                )
            ).all()
        )
        for row in rows:
            zone = district_info(row.district_id).timezone
            record = RecordInfo(
                row.id,
                row.district_id,
                row.volunteer_id,
                row.kind,
                row.started_at,
                row.minutes,
                row.details,
                zone,
                row.verified_at is not None,
            )
            total = totals.setdefault(
                row.volunteer_id, {"records": 0, "actual": 0, "current": 0, "draft": 0}
            )
            total["records"] += 1
            total["actual"] += row.points
            for label, extra in (("current", None), ("draft", overrides)):
                policy = resolve_policy(row.district_id, row.started_at, overrides=extra)
                key = (row.volunteer_id, label)
                if key not in histories:
                    histories[key] = history_for(row.volunteer_id, before=start)
                history = histories[key]
                volunteer = volunteer_info(row.volunteer_id, policy)
                evaluation = evaluate(pm, policy, record, volunteer, history, review=False)
                total[label] += evaluation.points
                history.extra.append(
                    past_record(
                        row.id,
                        row.kind,
                        row.started_at,
                        row.minutes,
                        evaluation.points,
                        row.details,
                        list(evaluation.awards),
                    )
                )
        preview_rows = tuple(
            PreviewRow(volunteer_id, names.get(volunteer_id, ""), **total)
            for volunteer_id, total in sorted(totals.items())
        )
    finally:
        # A preview writes nothing: drop whatever a plugin might have left in the session.
        db.session.rollback()
    return Preview(node.code, plugin, start, end, preview_rows)

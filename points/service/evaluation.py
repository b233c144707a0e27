"""Evaluating a record: the earning plugins' awards after limits, and the approval decision."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from points.errors import PluginError
from points.plugins import (
    Award,
    Decision,
    History,
    Limit,
    PointsPluginManager,
    RecordInfo,
    VolunteerInfo,
    call_each,
)
from points.policy import Policy


@dataclass(frozen=True)
class Evaluation:
    """What the plugins make of one record: awards after limits, and the approval decision."""

    awards: tuple[dict[str, Any], ...]
    decisions: tuple[Decision, ...]

    @property
    def points(self) -> int:
        return sum(award["points"] for award in self.awards)

    @property
    def approve_now(self) -> bool:
        return bool(self.decisions) and all(d.allowed for d in self.decisions)

    @property
    def queue_reason(self) -> str:
        denied = [d for d in self.decisions if not d.allowed]
        if denied:
            return (
                "；".join(d.reason_zh for d in denied)
                + " / "
                + "; ".join(d.reason_en for d in denied)
            )
        return "无自动批准规则，待街道审核 / no approval rule: waits for the office"


def _checked_awards(name: str, hook: str, awards: Any, policy: Policy) -> list[Award]:
    if not isinstance(awards, list | tuple) or not all(isinstance(a, Award) for a in awards):
        raise PluginError(
            f"plugin {name!r} returned something other than Awards from {hook}",
            plugin=name,
            hook=hook,
        )
    checked = []
    for award in awards:
        if isinstance(award.points, bool) or not isinstance(award.points, int) or award.points < 0:
            raise PluginError(
                f"plugin {name!r} proposed {award.points!r} points in {hook}",
                plugin=name,
                hook=hook,
            )
        checked.append(replace(award, plugin=name, config_version=policy.config(name).version))
    return checked


def _award_dict(award: Award, proposed: int, clip: Limit | None) -> dict[str, Any]:
    return {
        "plugin": award.plugin,
        "rule": award.rule,
        "points": award.points,
        "proposed": proposed,
        "reason_zh": award.reason_zh,
        "reason_en": award.reason_en,
        "config_version": award.config_version,
        "clip": None
        if clip is None
        else {"plugin": clip.plugin, "reason_zh": clip.reason_zh, "reason_en": clip.reason_en},
    }


def apply_limits(awards: list[Award], limits: list[Limit]) -> list[dict[str, Any]]:
    """Clip awards to the limits: each rule to its lowest ceiling, then the total to the
    lowest overall ceiling, taking points off the last awards first."""
    points = [a.points for a in awards]
    clips: list[Limit | None] = [None] * len(awards)
    for limit in sorted(limits, key=lambda lim: (lim.points, lim.plugin)):
        if limit.rule is not None:
            for i, award in enumerate(awards):
                if award.rule == limit.rule and points[i] > limit.points:
                    points[i] = max(limit.points, 0)
                    clips[i] = limit
    overall = [lim for lim in limits if lim.rule is None]
    if overall:
        lowest = min(overall, key=lambda lim: (lim.points, lim.plugin))
        excess = sum(points) - max(lowest.points, 0)
        for i in reversed(range(len(awards))):
            if excess <= 0:
                break
            take = min(points[i], excess)
            if take:
                points[i] -= take
                excess -= take
                clips[i] = lowest
    return [
        _award_dict(replace(a, points=p), a.points, clip)
        for a, p, clip in zip(awards, points, clips, strict=True)
    ]


def evaluate(
    pm: PointsPluginManager,
    policy: Policy,
    record: RecordInfo,
    volunteer: VolunteerInfo,
    history: History,
    *,
    review: bool = True,
) -> Evaluation:
    """Run the earning plugins over one record; write nothing. Raises PluginError."""
    common = {"record": record, "volunteer": volunteer, "history": history}
    options = {"enabled": policy.enabled, "config_for": policy.config}
    base: list[Award] = []
    for name, awards in call_each(pm, "award_points", common, **options):
        base += _checked_awards(name, "award_points", awards, policy)
    base.sort(key=lambda a: a.key)
    extra: list[Award] = []
    for name, awards in call_each(
        pm, "award_bonuses", {**common, "awards": tuple(base)}, **options
    ):
        extra += _checked_awards(name, "award_bonuses", awards, policy)
    extra.sort(key=lambda a: a.key)
    proposed = base + extra
    limits: list[Limit] = []
    for name, found in call_each(
        pm, "limit_awards", {**common, "awards": tuple(proposed)}, **options
    ):
        for limit in found:
            if not isinstance(limit, Limit) or isinstance(limit.points, bool):
                raise PluginError(
                    f"plugin {name!r} returned a bad limit", plugin=name, hook="limit_awards"
                )
            limits.append(replace(limit, plugin=name))
    awards = apply_limits(proposed, limits)
    decisions: list[Decision] = []
    if review:
        final = tuple(replace(a, points=d["points"]) for a, d in zip(proposed, awards, strict=True))
        for name, decision in call_each(
            pm,
            "review_record",
            {"record": record, "volunteer": volunteer, "awards": final},
            **options,
        ):
            if not isinstance(decision, Decision):
                raise PluginError(
                    f"plugin {name!r} returned a bad decision", plugin=name, hook="review_record"
                )
            decisions.append(replace(decision, plugin=name))
    return Evaluation(tuple(awards), tuple(decisions))

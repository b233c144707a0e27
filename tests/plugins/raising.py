"""A plugin whose earning rule always fails: it must leave the ledger untouched."""

from points.plugins import Award, hookimpl


@hookimpl
def award_points(record):
    raise RuntimeError("boom")


@hookimpl
def award_bonuses(awards):
    return [Award(1, "never", "不会", "never")]

"""History: what plugins read of a volunteer's past, and how little of it is read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from plugins import caps
from points.plugins import History, PastRecord, RecordInfo

DAY = timedelta(days=1)
START = datetime(2026, 3, 18, 9, 0, tzinfo=UTC)  # a Wednesday


def past(n: int, when: datetime, points: int = 5, kind: str = "patrol") -> PastRecord:
    return PastRecord(n, kind, when, 60, points, {})


class Store:
    """A loader over fixed records that remembers the ranges it was asked for."""

    def __init__(self, records):
        self.records = records
        self.asked = []

    def __call__(self, since, until):
        self.asked.append((since, until))
        return [
            r
            for r in self.records
            if (since is None or r.started_at >= since) and (until is None or r.started_at < until)
        ]


def test_a_range_inside_the_one_read_is_not_read_again():
    store = Store([past(i, START + i * DAY) for i in range(-10, 10)])
    history = History(store)
    assert len(history.records(since=START - 5 * DAY, until=START + 5 * DAY)) == 10
    assert len(history.records(since=START, until=START + DAY)) == 1
    assert history.awarded(START - DAY, START + DAY) == 10
    assert store.asked == [(START - 5 * DAY, START + 5 * DAY)]


def test_a_range_outside_the_read_widens_it_and_keeps_the_old_answers():
    store = Store([past(i, START + i * DAY) for i in range(-10, 10)])
    history = History(store)
    history.records(since=START, until=START + DAY)
    assert [r.id for r in history.records(since=START - 2 * DAY, until=START)] == [-2, -1]
    assert store.asked[-1] == (START - 2 * DAY, START + DAY)
    assert [r.id for r in history.records(since=START, until=START + DAY)] == [0]
    assert len(store.asked) == 2
    assert len(history.records()) == 20  # unbounded both ways
    assert store.asked[-1] == (None, None)
    history.records(since=START + 3 * DAY)
    assert len(store.asked) == 3


def test_extra_records_join_the_read_ones():
    history = History(Store([past(1, START)]), extra=[past(2, START + DAY, points=7)])
    assert history.awarded(START, START + 2 * DAY) == 12
    assert History(extra=[past(3, START)]).awarded() == 5


def record(kind: str = "patrol") -> RecordInfo:
    return RecordInfo(None, 1, 1, kind, START, 120, {}, "Asia/Shanghai")


def test_caps_read_only_the_periods_they_cap():
    """A back-dated record with only a daily cap reads that local day, not everything
    since: the history of a long-serving volunteer stays unread."""
    store = Store([past(i, START + i * DAY) for i in range(-40, 40)])
    config = {"overall": {"day": 100, "week": None, "month": None}, "per_kind": {}}
    limits = caps.limit_awards(record(), config, History(store))
    assert [limit.points for limit in limits] == [95]  # START's own day holds 5 points
    ((since, until),) = store.asked
    assert until - since == DAY
    assert since <= START < until


def test_caps_read_once_over_the_month_and_the_week_around_it():
    store = Store([past(i, START + i * DAY) for i in range(-40, 40)])
    config = {
        "overall": {"day": None, "week": 30, "month": 1000},
        "per_kind": {"patrol": {"day": 10, "week": None, "month": None}},
    }
    limits = caps.limit_awards(record(), config, History(store))
    assert sorted(limit.points for limit in limits) == [0, 5, 845]
    assert len(store.asked) == 1


def test_caps_read_nothing_without_a_cap():
    store = Store([past(1, START)])
    config = {"overall": {"day": None, "week": None, "month": None}, "per_kind": {}}
    assert caps.limit_awards(record(), config, History(store)) == []
    assert store.asked == []

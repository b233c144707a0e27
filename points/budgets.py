"""Issuance budgets: a node's points per month, quarter or year for its whole subtree.

Public: in_force(node, as_of) -> tuple[Budget, ...] (root first); settle(node, awards,
moment, *, may_queue) -> (awards, Decision | None); one_call_arguments(node, moment,
points) -> dict | None; usage(nodes, as_of=None) -> list[Usage]; usage_under(path,
as_of=None) -> list[Usage]; check() -> list[str];
rebuild() -> int; period_bounds(moment, period, timezone).

What a budget counts: the points of earn entries of service records (every award the
earning plugins made, bonuses included) posted to volunteer accounts of the node and
every node below it, whose entry is dated (effective_at) in the node's period, in the
node's own time zone. An imported past record is dated its service, so it counts
against that period's budget. Direct ledger earns (no service record) and reversals or
corrections do not count and give nothing back: a budget bounds what the earning
pipeline issued, and a reversed award was issued.

Which budgets apply: those set in the OWN policy layer (the version in effect) of each
node on the award's path, the node itself included; a budget is never inherited as a
fresh budget by a child (a node's budget bounds the sum over its subtree). A layer that
sets `points` to null, or disables the plugin, has no budget.

How it stays exact without one hot row: counters are striped (points.models
BudgetCounter, migration 0019). A writer counts on its connection's stripe (PostgreSQL
backend pid modulo 8); a stripe takes chunks (1% of the budget, at most 500, at most an
eighth of what is left) from the period's row under that row's lock only when its chunk
runs out; near the limit the lock holder takes back the other stripes' unused chunks,
so the last points are granted exactly. Periods are locked root first. On PostgreSQL
the steps are `points_budget_take` (one call, in the caller's transaction; the one-call
record path sends it in the same statement as its record); SQLite, one writer at a
time, runs them here on stripe 0, whose chunk is the whole budget.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, text

from points import ledger
from points.extensions import db
from points.models import utcnow
from points.plugins import Decision, DistrictInfo

NAME = "budget"
STRIPES = 8
PERIOD_WORDS = {
    "month": ("本月", "the month"),
    "quarter": ("本季度", "the quarter"),
    "year": ("本年度", "the year"),
}
# Points awarded in [start, end) to volunteers of the node's subtree (as migration 0019).
_AWARDED = """
    SELECT coalesce(sum(po.amount), 0)
    FROM entries en
    JOIN postings po ON po.entry_id = en.id
    JOIN accounts ac ON ac.id = po.account_id AND ac.kind = 'volunteer'
    JOIN districts di ON di.id = en.district_id
    WHERE en.kind = 'earn' AND en.service_record_id IS NOT NULL
      AND en.effective_at >= :start AND en.effective_at < :end
      AND di.path LIKE (SELECT nd.path FROM districts nd WHERE nd.id = :node) || '%'"""


@dataclass(frozen=True)
class Budget:
    """A budget set in `node`'s own policy layer."""

    node: DistrictInfo
    points: int
    period: str
    overflow: str
    version: int = 0  # the policy version (row id) of the node's own layer

    def bounds(self, moment: datetime) -> tuple[datetime, datetime]:
        return period_bounds(moment, self.period, self.node.timezone)


def period_bounds(moment: datetime, period: str, timezone: str) -> tuple[datetime, datetime]:
    """Return the start and end (UTC) of the local month, quarter or year around `moment`."""
    zone = ZoneInfo(timezone)
    day = moment.astimezone(zone).date()
    if period == "month":
        start = day.replace(day=1)
        end = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    elif period == "quarter":
        first = 3 * ((day.month - 1) // 3) + 1
        start = date(day.year, first, 1)
        end = date(day.year + (first + 3 > 12), (first + 2) % 12 + 1, 1)
    else:
        start, end = date(day.year, 1, 1), date(day.year + 1, 1, 1)
    return (
        datetime.combine(start, time(0), zone).astimezone(ZoneInfo("UTC")),
        datetime.combine(end, time(0), zone).astimezone(ZoneInfo("UTC")),
    )


# -- which budgets apply -------------------------------------------------------------------


def in_force(node: DistrictInfo, as_of: datetime | None = None) -> tuple[Budget, ...]:
    """The budgets set in the own layers of the node's path at `as_of` (now), root first.

    Every take uses the budgets in force now, whatever the period it counts in: an
    imported past record is bounded by today's budget for its own (past) period.

    Cached with the process's policy versions (per node and the versions in effect):
    a record at a node without budgets pays a scan of its chain's cached versions."""
    from points.plugins import config_schemas, plugin_manager
    from points.policy import _in_effect, _versions, district_info

    as_of = as_of or utcnow()
    versions = _versions()
    chain = node.ancestor_ids
    rows = versions.rows_for(chain)
    own = [_in_effect(rows[node_id], NAME, as_of) for node_id in chain]
    key = (node.id, tuple(row.id if row is not None else None for row in own))
    cache = versions.__dict__.setdefault("budgets", {})
    found = cache.get(key)
    if found is None:
        schema = config_schemas(plugin_manager()).get(NAME)
        budgets = []
        for node_id, row in zip(chain, own, strict=True):
            if schema is None or row is None or row.enabled is False:
                continue
            config = schema.load(dict(row.config))
            if config["points"] is None:
                continue
            info = node if node_id == node.id else district_info(node_id)
            budgets.append(
                Budget(info, config["points"], config["period"], config["overflow"], row.id)
            )
        found = cache[key] = tuple(budgets)
    return found


# -- taking points from the budgets --------------------------------------------------------


def _arrays(budgets: Iterable[Budget], moment: datetime) -> dict[str, list]:
    arrays: dict[str, list] = {
        "nodes": [],
        "kinds": [],
        "starts": [],
        "ends": [],
        "versions": [],
        "budgets": [],
    }
    for budget in budgets:
        start, end = budget.bounds(moment)
        arrays["nodes"].append(budget.node.id)
        arrays["versions"].append(budget.version)
        arrays["kinds"].append(budget.period)
        arrays["starts"].append(start)
        arrays["ends"].append(end)
        arrays["budgets"].append(budget.points)
    return arrays


_PG_TAKE = (
    "SELECT points_budget_take(%(nodes)s::integer[], %(kinds)s::text[], "
    "%(starts)s::timestamptz[], %(ends)s::timestamptz[], %(versions)s::integer[], "
    "%(budgets)s::bigint[], %(wanted)s::bigint, true)"
)


def take(budgets: tuple[Budget, ...], moment: datetime, wanted: int) -> tuple[int, Budget | None]:
    """Take up to `wanted` points from every budget, in the caller's unit of work;
    return (points granted, the budget that bound them or None)."""
    if wanted <= 0 or not budgets:
        return wanted, None
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        granted, binding = connection.exec_driver_sql(
            _PG_TAKE, {**_arrays(budgets, moment), "wanted": wanted}
        ).scalar()
    else:
        granted, binding = _take_sqlite(connection, budgets, moment, wanted)
    bound = next((b for b in budgets if b.node.id == binding), None)
    return int(granted), bound


def _sqlite_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _take_sqlite(connection, budgets, moment, wanted) -> tuple[int, int | None]:
    """SQLite writes one unit at a time, so one stripe (0) holds the whole budget as its
    chunk: far from the limit an award is one UPDATE for every budget on the path."""
    keys = []
    for budget in budgets:
        start, _ = budget.bounds(moment)
        keys.append((budget.node.id, budget.period, _sqlite_time(start), budget.version))
    match = " OR ".join(
        ["(district_id = ? AND period = ? AND period_start = ? AND version_id = ?)"] * len(keys)
    )
    done = connection.exec_driver_sql(
        f"UPDATE budget_counters SET used = used + ? WHERE stripe = 0 AND ({match}) "
        "AND used + ? <= reserved RETURNING district_id",
        (wanted, *[v for key in keys for v in key], wanted),
    ).all()
    if len(done) == len(keys):
        return wanted, None
    if done:
        _give_back_sqlite(
            connection, [b for b in budgets if b.node.id in {r[0] for r in done}], moment, wanted
        )
    return _take_sqlite_slowly(connection, budgets, moment, wanted)


def _take_sqlite_slowly(connection, budgets, moment, wanted) -> tuple[int, int | None]:
    """Near the limit, or a period counted for the first time or under another version."""
    granted, binding = wanted, None
    for budget in budgets:
        start, end = budget.bounds(moment)
        key = {"node": budget.node.id, "kind": budget.period, "start": start}
        where = "WHERE district_id = :node AND period = :kind AND period_start = :start"
        row = connection.execute(
            text(f"SELECT version_id FROM budget_periods {where}"), _bind(key)
        ).first()
        if row is None or row[0] != budget.version:
            # First counted, or under another version: count the period afresh, the
            # stripe's chunk the whole budget (or what was awarded, if more).
            used = int(connection.execute(text(_AWARDED), _bind({**key, "end": end})).scalar())
            chunk = max(used, budget.points)
            connection.execute(text(f"DELETE FROM budget_counters {where}"), _bind(key))
            connection.execute(text(f"DELETE FROM budget_periods {where}"), _bind(key))
            values = {**key, "end": end, "budget": budget.points, "used": used, "chunk": chunk}
            connection.execute(
                text(
                    "INSERT INTO budget_periods (district_id, period, period_start, "
                    "period_end, version_id, budget, allocated) VALUES (:node, :kind, :start, "
                    ":end, :version, :budget, :chunk)"
                ),
                _bind({**values, "version": budget.version}),
            )
            connection.execute(
                text(
                    "INSERT INTO budget_counters (district_id, period, period_start, stripe, "
                    "version_id, reserved, used) VALUES (:node, :kind, :start, 0, :version, "
                    ":chunk, :used)"
                ),
                _bind({**values, "version": budget.version}),
            )
        else:
            # The chunk is the whole budget again (a rebuild leaves it at what was used).
            values = {**key, "budget": budget.points}
            connection.execute(
                text(
                    "UPDATE budget_counters SET reserved = max(used, :budget) "
                    f"{where} AND stripe = 0"
                ),
                _bind(values),
            )
            connection.execute(
                text(
                    "UPDATE budget_periods SET allocated = (SELECT sum(reserved) FROM "
                    "budget_counters c WHERE c.district_id = budget_periods.district_id AND "
                    "c.period = budget_periods.period AND "
                    f"c.period_start = budget_periods.period_start) {where}"
                ),
                _bind(values),
            )
        spare = connection.execute(
            text(f"SELECT reserved - used FROM budget_counters {where} AND stripe = 0"),
            _bind(key),
        ).scalar()
        grant = max(0, min(granted, int(spare)))
        connection.execute(
            text(f"UPDATE budget_counters SET used = used + :grant {where} AND stripe = 0"),
            _bind({**key, "grant": grant}),
        )
        if grant < granted:
            # Earlier (higher) nodes granted more than this one can: give it back.
            _give_back_sqlite(connection, budgets[: budgets.index(budget)], moment, granted - grant)
            granted, binding = grant, budget.node.id
    return granted, binding


def _bind(values: dict[str, Any]) -> dict[str, Any]:
    """Times as SQLite stores the models' UTCDateTime: UTC text to the microsecond."""
    return {
        k: v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v
        for k, v in values.items()
    }


def _give_back_sqlite(connection, budgets, moment, points: int) -> None:
    for budget in budgets:
        start, _ = budget.bounds(moment)
        connection.execute(
            text(
                "UPDATE budget_counters SET used = used - :points WHERE district_id = :node "
                "AND period = :kind AND period_start = :start AND stripe = 0"
            ),
            _bind(
                {"node": budget.node.id, "kind": budget.period, "start": start, "points": points}
            ),
        )


def give_back(budgets: tuple[Budget, ...], moment: datetime, points: int) -> None:
    """Return `points` this unit took from every budget (a record queued after all)."""
    if points <= 0 or not budgets:
        return
    connection = db.session.connection()
    if connection.dialect.name != "postgresql":
        _give_back_sqlite(connection, budgets, moment, points)
        return
    # The stripe this connection took them on, locked by this transaction since: its
    # chunk stays reserved for the next earn.
    for budget in budgets:
        start, _ = budget.bounds(moment)
        connection.execute(
            text(
                "UPDATE budget_counters SET used = used - :points WHERE district_id = :node "
                "AND period = :kind AND period_start = :start "
                f"AND stripe = pg_backend_pid() % {STRIPES}"
            ),
            {"node": budget.node.id, "kind": budget.period, "start": start, "points": points},
        )


# -- clipping or queueing ------------------------------------------------------------------


def _words(budget: Budget) -> tuple[str, str]:
    return PERIOD_WORDS[budget.period]


def clip_reason(budget: Budget, left: int) -> tuple[str, str]:
    zh, en = _words(budget)
    name = budget.node.name
    if left <= 0:
        return f"{zh}{name}积分预算已用完", f"the budget of {name} for {en} is spent"
    return (
        f"{zh}{name}积分预算仅余 {left} 分",
        f"only {left} points left in the budget of {name} for {en}",
    )


def queue_reason(budget: Budget, points: int, left: int) -> tuple[str, str]:
    zh, en = _words(budget)
    name = budget.node.name
    return (
        f"{zh}{name}积分预算余 {left} 分，不足 {points} 分，待街道审核",
        f"the budget of {name} for {en} has {left} points left, not {points}: waits for the office",
    )


def clipped(awards: tuple[dict, ...], granted: int, budget: Budget) -> tuple[dict, ...]:
    """The awards cut to `granted` points in all, the last ones first, each cut one
    naming the budget."""
    zh, en = clip_reason(budget, granted)
    excess = sum(a["points"] for a in awards) - granted
    out = list(awards)
    for i in reversed(range(len(out))):
        if excess <= 0:
            break
        cut = min(out[i]["points"], excess)
        if cut:
            excess -= cut
            out[i] = {
                **out[i],
                "points": out[i]["points"] - cut,
                "clip": {"plugin": NAME, "reason_zh": zh, "reason_en": en},
            }
    return tuple(out)


def settle(
    node: DistrictInfo, awards: tuple[dict, ...], moment: datetime, *, may_queue: bool
) -> tuple[tuple[dict, ...], Decision | None]:
    """Take the awards' points from the budgets on the node's path, in the caller's unit
    of work, dated `moment` (the earn entries' date). Return the awards, clipped to what
    the budgets grant, or (when the binding budget says `queue` and `may_queue`) the
    awards untouched and the budget's Decision to queue the record, nothing taken."""
    wanted = sum(a["points"] for a in awards)
    budgets = in_force(node, moment)
    if wanted <= 0 or not budgets:
        return awards, None
    granted, binding = take(budgets, moment, wanted)
    if binding is None or granted >= wanted:
        return awards, None
    if may_queue and binding.overflow == "queue":
        give_back(budgets, moment, granted)
        zh, en = queue_reason(binding, wanted, granted)
        return awards, replace(Decision.deny(zh, en), plugin=NAME)
    return clipped(awards, granted, binding), None


def one_call_arguments(node: DistrictInfo, moment: datetime, points: int) -> dict | None:
    """The budgets a one-call record takes `points` from, as `points_budget_settle`
    reads them (None: no budget applies)."""
    budgets = in_force(node, moment) if points > 0 else ()
    if not budgets:
        return None
    return {**_arrays(budgets, moment), "wanted": points}


# -- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """A budget in force at a node now: its period and how much of it was awarded."""

    node: DistrictInfo
    period: str
    start: datetime
    end: datetime
    budget: int
    used: int
    overflow: str

    @property
    def left(self) -> int:
        return max(self.budget - self.used, 0)

    @property
    def label(self) -> str:
        """The period as the node writes it: 2026-12, 2026-Q4 or 2026."""
        local = self.start.astimezone(ZoneInfo(self.node.timezone))
        if self.period == "month":
            return f"{local.year}-{local.month:02d}"
        if self.period == "quarter":
            return f"{local.year}-Q{(local.month - 1) // 3 + 1}"
        return str(local.year)

    def as_dict(self) -> dict[str, Any]:
        return {
            "district_id": self.node.id,
            "district": self.node.code,
            "name": self.node.name,
            "period": self.period,
            "label": self.label,
            "start": self.start,
            "end": self.end,
            "budget": self.budget,
            "used": self.used,
            "left": self.left,
            "overflow": self.overflow,
        }


def used(budget: Budget, moment: datetime) -> int:
    """Points awarded in the budget's period around `moment`: the counters' sum once the
    period is counted, else a sum over the entries."""
    start, end = budget.bounds(moment)
    params = {"node": budget.node.id, "kind": budget.period, "start": start}
    connection = db.session.connection()
    bind = _bind if connection.dialect.name == "sqlite" else dict
    row = connection.execute(
        text(
            "SELECT sum(used), count(*) FROM budget_counters WHERE district_id = :node "
            "AND period = :kind AND period_start = :start AND version_id = :version"
        ),
        bind({**params, "version": budget.version}),
    ).first()
    if row is not None and row[1]:
        return int(row[0])
    return int(connection.execute(text(_AWARDED), bind({**params, "end": end})).scalar())


def usage(nodes: Iterable[DistrictInfo], as_of: datetime | None = None) -> list[Usage]:
    """The budget each of `nodes` sets in its own layer, with what its period used."""
    as_of = as_of or utcnow()
    out = []
    for node in nodes:
        own = [b for b in in_force(node, as_of) if b.node.id == node.id]
        for budget in own:
            start, end = budget.bounds(as_of)
            out.append(
                Usage(
                    node,
                    budget.period,
                    start,
                    end,
                    budget.points,
                    used(budget, as_of),
                    budget.overflow,
                )
            )
    return out


def usage_under(path: str | None, as_of: datetime | None = None) -> list[Usage]:
    """The budgets set at nodes whose path starts with `path` (None: every node), each
    with its period around `as_of` (now), the highest nodes first."""
    from points.models import District, PolicyVersion
    from points.policy import district_info

    query = (
        select(District.id)
        .join(PolicyVersion, PolicyVersion.district_id == District.id)
        .where(PolicyVersion.plugin == NAME)
        .distinct()
    )
    if path is not None:
        query = query.where(District.path.startswith(path, autoescape=True))
    nodes = [district_info(node_id) for node_id in db.session.scalars(query)]
    nodes.sort(key=lambda n: (len(n.ancestor_ids), n.name))
    return usage(nodes, as_of)


# -- verifying and rebuilding --------------------------------------------------------------


def _periods(connection) -> list[tuple]:
    return connection.execute(
        text(
            "SELECT district_id, period, period_start, period_end, version_id, allocated "
            "FROM budget_periods ORDER BY district_id, period, period_start"
        )
    ).all()


def _live(node_id: int, version: int) -> bool:
    """Whether a period counted under `version` is still counted: that version is the
    node's budget now. A lifted or replaced budget's periods stop counting (the next
    take under a new version counts the period afresh), so they are not checked."""
    from points.policy import district_info

    return any(b.version == version for b in in_force(district_info(node_id)))


def check() -> list[str]:
    """Differences between the counters and the awards: per node and period, the sum
    used must equal the points awarded, the chunks the allocation, each stripe within
    its chunk."""
    connection = db.session.connection()
    bind = _bind if connection.dialect.name == "sqlite" else dict
    problems = []
    for node, kind, start, end, version, allocated in _periods(connection):
        if not _live(node, version):
            continue
        key = {"node": node, "kind": kind, "start": start}
        used_sum, reserved_sum, over = connection.execute(
            text(
                "SELECT coalesce(sum(used), 0), coalesce(sum(reserved), 0), "
                "coalesce(sum(CASE WHEN used > reserved THEN 1 ELSE 0 END), 0) "
                "FROM budget_counters WHERE district_id = :node AND period = :kind "
                "AND period_start = :start"
            ),
            bind(key),
        ).one()
        awarded = int(connection.execute(text(_AWARDED), bind({**key, "end": end})).scalar())
        label = f"budget of node {node}, {kind} from {start}"
        if int(used_sum) != awarded:
            problems.append(f"{label}: counters say {int(used_sum)} used, awards sum to {awarded}")
        if int(reserved_sum) != int(allocated):
            problems.append(
                f"{label}: stripes hold {int(reserved_sum)}, the period allocated {allocated}"
            )
        if int(over):
            problems.append(f"{label}: a stripe used more than it reserved")
    return problems


def rebuild() -> int:
    """Count every period's awards again from the entries (stripe 0, chunk = used);
    return the periods rebuilt. On PostgreSQL both tables are locked first: a unit
    taking points meanwhile waits, then counts on the rebuilt rows."""

    def work() -> int:
        connection = db.session.connection()
        postgres = connection.dialect.name == "postgresql"
        bind = dict if postgres else _bind
        if postgres:
            connection.execute(text("LOCK TABLE budget_periods, budget_counters IN EXCLUSIVE MODE"))
        rows = _periods(connection)
        for node, kind, start, end, version, _ in rows:
            key = {"node": node, "kind": kind, "start": start}
            awarded = int(connection.execute(text(_AWARDED), bind({**key, "end": end})).scalar())
            connection.execute(
                text(
                    "DELETE FROM budget_counters WHERE district_id = :node AND period = :kind "
                    "AND period_start = :start"
                ),
                bind(key),
            )
            connection.execute(
                text(
                    "INSERT INTO budget_counters (district_id, period, period_start, stripe, "
                    "version_id, reserved, used) VALUES (:node, :kind, :start, 0, :version, "
                    ":awarded, :awarded)"
                ),
                bind({**key, "version": version, "awarded": awarded}),
            )
            connection.execute(
                text(
                    "UPDATE budget_periods SET allocated = :awarded WHERE district_id = :node "
                    "AND period = :kind AND period_start = :start"
                ),
                bind({**key, "awarded": awarded}),
            )
        return len(rows)

    return ledger.atomic(work)

"""Issuance budgets: per node and period, striped counters and the PostgreSQL take.

- `budget_periods`: one row per node, period kind and period start (the node's time
  zone): the policy version of the budget it was counted under (another version
  recounts the period from the entries), the budget and `allocated`, the sum of the
  chunks its stripes hold. Locked only to hand a stripe a chunk.
- `budget_counters`: 8 stripes per node and period, each with the chunk it `reserved`
  and the points it `used`; a writer counts on the stripe of its connection
  (PostgreSQL backend pid modulo 8, as the ledger hours do; SQLite, one writer at a
  time, stripe 0), so earns far from the limit never queue for one row.
- `points_budget_take(...)` (PostgreSQL): takes an award's points from the budgets of
  the nodes on its path, root first, in the caller's transaction; `partial` returns
  what could be granted (the locked path clips or queues on it), otherwise it raises
  SP003 and the statement (a one-call record) writes nothing. SQLite runs the same
  steps in Python (points.budgets).

Revision ID: 0019
Revises: 0017
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

STRIPES = 8
# The points a stripe takes at once: 1% of the budget, at least 1, at most 500; less
# near the limit (at most an eighth of what is left), and never less than the award.
CHUNK_SHARE = 100
CHUNK_MAX = 500

# Points awarded in [s, e) to volunteers of the node's subtree: earn entries of service
# records (the awards the earning plugins made), by the volunteer's posting; `skip`: the
# entries of the statement taking (a one-call record writes its earns first).
AWARDED = """
    SELECT coalesce(sum(po.amount), 0)
    FROM entries en
    JOIN postings po ON po.entry_id = en.id
    JOIN accounts ac ON ac.id = po.account_id AND ac.kind = 'volunteer'
    JOIN districts di ON di.id = en.district_id
    WHERE en.kind = 'earn' AND en.service_record_id IS NOT NULL
      AND en.effective_at >= {s} AND en.effective_at < {e}
      AND di.path LIKE (SELECT nd.path FROM districts nd WHERE nd.id = {node}) || '%'
      AND NOT (en.id = ANY(coalesce({skip}, '{{}}'::bigint[])))"""

PG_TAKE_ONE = f"""
CREATE FUNCTION points_budget_take_one(
    node integer, kind text, p_start timestamptz, p_end timestamptz, v integer, b bigint,
    want bigint, mine smallint, skip bigint[]
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    counted integer;
    alloc bigint;
    r bigint;
    u bigint;
    spare bigint;
    pool bigint;
    back bigint;
    g bigint;
    need bigint;
    chunk bigint;
BEGIN
    IF want <= 0 THEN
        RETURN 0;
    END IF;
    -- Far from the limit: the stripe's chunk covers it, one row of eight.
    UPDATE budget_counters SET used = used + want
    WHERE district_id = node AND period = kind AND period_start = p_start AND stripe = mine
      AND version_id = v AND used + want <= reserved;
    IF FOUND THEN
        RETURN want;
    END IF;
    -- The chunk ran out: under the period's lock, hand the stripe another.
    INSERT INTO budget_periods (district_id, period, period_start, period_end, version_id,
                                budget, allocated)
    VALUES (node, kind, p_start, p_end, 0, b, 0) ON CONFLICT DO NOTHING;
    SELECT version_id, allocated INTO counted, alloc FROM budget_periods
    WHERE district_id = node AND period = kind AND period_start = p_start FOR UPDATE;
    IF counted <> v THEN
        -- Counted for the first time, or under another version of the budget (set,
        -- changed, lifted and set again): count the period's awards afresh, once every
        -- unit counting on a stripe has committed.
        PERFORM 1 FROM budget_counters
        WHERE district_id = node AND period = kind AND period_start = p_start
        ORDER BY stripe FOR UPDATE;
        alloc := ({AWARDED.format(s="p_start", e="p_end", node="node", skip="skip")});
        DELETE FROM budget_counters
        WHERE district_id = node AND period = kind AND period_start = p_start;
        INSERT INTO budget_counters (district_id, period, period_start, stripe, version_id,
                                     reserved, used)
        VALUES (node, kind, p_start, 0, v, alloc, alloc);
        UPDATE budget_periods SET version_id = v, budget = b, allocated = alloc
        WHERE district_id = node AND period = kind AND period_start = p_start;
    END IF;
    INSERT INTO budget_counters (district_id, period, period_start, stripe, version_id,
                                 reserved, used)
    VALUES (node, kind, p_start, mine, v, 0, 0) ON CONFLICT DO NOTHING;
    SELECT reserved, used INTO r, u FROM budget_counters
    WHERE district_id = node AND period = kind AND period_start = p_start AND stripe = mine
    FOR UPDATE;
    spare := r - u;
    pool := b - alloc;
    IF pool < want - spare THEN
        -- Near the limit: take back what the other stripes hold unused.
        PERFORM 1 FROM budget_counters
        WHERE district_id = node AND period = kind AND period_start = p_start
          AND stripe <> mine
        ORDER BY stripe FOR UPDATE;
        SELECT coalesce(sum(reserved - used), 0) INTO back FROM budget_counters
        WHERE district_id = node AND period = kind AND period_start = p_start
          AND stripe <> mine;
        UPDATE budget_counters SET reserved = used
        WHERE district_id = node AND period = kind AND period_start = p_start
          AND stripe <> mine AND reserved > used;
        alloc := alloc - back;
        pool := pool + back;
    END IF;
    g := least(want, spare + greatest(pool, 0));
    need := greatest(g - spare, 0);
    chunk := need + least(
        greatest(least(b / {CHUNK_SHARE}, {CHUNK_MAX}), 1),
        greatest(pool - need, 0) / {STRIPES});
    UPDATE budget_counters SET reserved = reserved + chunk, used = used + g
    WHERE district_id = node AND period = kind AND period_start = p_start AND stripe = mine;
    UPDATE budget_periods SET allocated = alloc + chunk
    WHERE district_id = node AND period = kind AND period_start = p_start;
    RETURN g;
END $$"""

# Returns {granted, the node whose budget bound it (NULL: none did)}. Nodes come root
# first, so that two takes lock periods in one order (no deadlock). What a node granted
# beyond a later node's grant goes back to the stripe (locked by this transaction).
PG_TAKE = f"""
CREATE FUNCTION points_budget_take(
    nodes integer[], kinds text[], starts timestamptz[], ends timestamptz[],
    versions integer[], budgets bigint[], wanted bigint, partial boolean,
    skip bigint[] DEFAULT NULL
) RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    mine smallint := pg_backend_pid() % {STRIPES};
    granted bigint := wanted;
    got bigint[] := '{{}}';
    binding bigint := NULL;
    g bigint;
BEGIN
    FOR i IN 1 .. coalesce(array_length(nodes, 1), 0) LOOP
        g := points_budget_take_one(nodes[i], kinds[i], starts[i], ends[i], versions[i],
                                    budgets[i], granted, mine, skip);
        got := got || g;
        IF g < granted THEN
            IF NOT partial THEN
                RAISE EXCEPTION 'points_budget_take: budget of node % spent', nodes[i]
                    USING ERRCODE = 'SP003';
            END IF;
            granted := g;
            binding := nodes[i];
        END IF;
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(got, 1), 0) LOOP
        IF got[i] > granted THEN
            UPDATE budget_counters SET used = used - (got[i] - granted)
            WHERE district_id = nodes[i] AND period = kinds[i] AND period_start = starts[i]
              AND stripe = mine;
        END IF;
    END LOOP;
    RETURN ARRAY[granted, binding];
END $$"""

# A one-call record (points_record) with its budgets: the record is written first (it
# takes the volunteer's lock first, as the locked path does), then its points are taken
# whole from every budget on the path, or SP003 undoes the statement.
PG_SETTLE = """
CREATE FUNCTION points_budget_settle(
    entry_ids bigint[], nodes integer[], kinds text[], starts timestamptz[],
    ends timestamptz[], versions integer[], budgets bigint[], wanted bigint
) RETURNS bigint[] LANGUAGE plpgsql AS $$
BEGIN
    IF entry_ids IS NOT NULL AND wanted > 0 THEN
        -- The record's own entries, written by this statement, are not yet counted.
        PERFORM points_budget_take(nodes, kinds, starts, ends, versions, budgets, wanted,
                                   false, entry_ids);
    END IF;
    RETURN entry_ids;
END $$"""


def upgrade():
    op.create_table(
        "budget_periods",
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("budget", sa.BigInteger(), nullable=False),
        sa.Column("allocated", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "period IN ('month', 'quarter', 'year')", name=op.f("ck_budget_periods_period")
        ),
        sa.CheckConstraint(
            "budget >= 0 AND allocated >= 0", name=op.f("ck_budget_periods_sums")
        ),
        sa.ForeignKeyConstraint(
            ["district_id"], ["districts.id"], name=op.f("fk_budget_periods_district_id_districts")
        ),
        sa.PrimaryKeyConstraint(
            "district_id", "period", "period_start", name=op.f("pk_budget_periods")
        ),
    )
    op.create_table(
        "budget_counters",
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stripe", sa.SmallInteger(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "used >= 0 AND used <= reserved", name=op.f("ck_budget_counters_within")
        ),
        sa.ForeignKeyConstraint(
            ["district_id"],
            ["districts.id"],
            name=op.f("fk_budget_counters_district_id_districts"),
        ),
        sa.PrimaryKeyConstraint(
            "district_id", "period", "period_start", "stripe", name=op.f("pk_budget_counters")
        ),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_TAKE_ONE)
        op.execute(PG_TAKE)
        op.execute(PG_SETTLE)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS points_budget_settle("
            "bigint[], integer[], text[], timestamptz[], timestamptz[], integer[], bigint[], bigint)"
        )
        op.execute(
            "DROP FUNCTION IF EXISTS points_budget_take("
            "integer[], text[], timestamptz[], timestamptz[], integer[], bigint[], bigint, boolean, "
            "bigint[])"
        )
        op.execute(
            "DROP FUNCTION IF EXISTS points_budget_take_one("
            "integer, text, timestamptz, timestamptz, integer, bigint, bigint, smallint, bigint[])"
        )
    op.drop_table("budget_counters")
    op.drop_table("budget_periods")

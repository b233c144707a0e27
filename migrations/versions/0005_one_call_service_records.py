"""A service record, its earns and its minutes written by one call (PostgreSQL).

`points_record(...)` writes what the locked path of `record_service` writes (the record,
one earn per award through `points_earn`, the minutes with their audit row) in one call
sent in autocommit mode, after the caller read the volunteer and their history without
a transaction. It first takes the volunteer's row lock and checks that the row and the
history are still what the caller evaluated; if not, it writes nothing and returns NULL,
and the caller evaluates again (docs/architecture.md, "A service record in one call").
SQLite has nothing to install: its records keep the locked path.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The record's id is reserved by the caller (nextval in its read), so its earns' content
# hashes, which name the record, are computed before the call. `earns` is a JSON array
# of {points, reason, plugin, rule, config_version, expires_at, hash}, in posting order
# (one JSON text is far cheaper for the driver to send than seven arrays). `seen` is the caller's
# digest of the approved records it read in [history_since, history_until): count, sum
# of ids, sum of points (NULL since: it read none). An earn whose account preconditions
# fail (a closed account, a stale cached id) raises SP001 after the record was inserted,
# and a history that changed SP002 after the minutes were counted: the statement rolls
# back whole, and the caller evaluates again or takes the locked path, which says why.
PG_RECORD = """
CREATE FUNCTION points_record(
    record integer, volunteer integer, district integer, seen_minutes bigint,
    history_since timestamptz, history_until timestamptz, seen bigint[],
    kind text, started_at timestamptz, minutes integer, details json, status text,
    dedupe_key text, actor text, written_at timestamptz, points bigint, awards json,
    queue_reason text, decision_reason text, minutes_reason text,
    account integer, issuance integer, earns json
) RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    entries bigint[] := '{}';
    entry bigint;
    earn record;
    counted integer := CASE WHEN status = 'approved' THEN minutes END;
    approved boolean := status = 'approved';
BEGIN
    -- The volunteer as the caller read them, locked until the end (records and
    -- approvals of one volunteer take turns, as on the locked path), and their minutes
    -- counted in the same UPDATE. PostgreSQL checks the WHERE again on the latest row
    -- after waiting for the lock.
    IF counted IS NOT NULL THEN
        UPDATE volunteers v SET service_minutes = v.service_minutes + counted
        WHERE v.id = volunteer AND v.district_id = district AND v.status = 'active'
          AND v.service_minutes = seen_minutes;
    ELSE
        PERFORM 1 FROM volunteers v
        WHERE v.id = volunteer AND v.district_id = district AND v.status = 'active'
          AND v.service_minutes = seen_minutes
        FOR NO KEY UPDATE;
    END IF;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- Under the lock, the history the caps counted must be the history now (SP002
    -- undoes the minutes just counted).
    IF history_since IS NOT NULL AND (
        SELECT ARRAY[count(*), coalesce(sum(r.id), 0), coalesce(sum(r.points), 0)]::bigint[]
        FROM service_records r
        WHERE r.volunteer_id = volunteer AND r.status = 'approved'
          AND r.started_at >= history_since AND r.started_at < history_until
    ) IS DISTINCT FROM seen THEN
        RAISE EXCEPTION 'points_record: the history changed' USING ERRCODE = 'SP002';
    END IF;
    INSERT INTO service_records (
        id, district_id, volunteer_id, kind, started_at, minutes, details, status,
        dedupe_key, submitted_by, created_at, points, awards, queue_reason, decided_at,
        decided_by, decision_reason)
    VALUES (
        record, district, volunteer, kind, started_at, minutes, details, status,
        dedupe_key, actor, written_at, points, awards, queue_reason,
        CASE WHEN approved THEN written_at END, CASE WHEN approved THEN actor END,
        decision_reason);
    FOR earn IN
        SELECT * FROM json_to_recordset(earns) AS e(
            points bigint, reason text, plugin text, rule text, config_version integer,
            expires_at timestamptz, hash text)
    LOOP
        entry := points_earn(
            NULL, NULL, NULL, written_at, volunteer, account, issuance, district,
            earn.points, written_at, actor, earn.reason, earn.plugin, earn.rule,
            earn.config_version, record, earn.expires_at, earn.hash);
        IF entry IS NULL THEN
            RAISE EXCEPTION 'points_record: an earn precondition failed'
                USING ERRCODE = 'SP001';
        END IF;
        entries := entries || entry;
    END LOOP;
    IF counted IS NOT NULL THEN
        INSERT INTO service_minutes (district_id, volunteer_id, minutes, kind, actor,
                                     reason, service_record_id, created_at)
        VALUES (district, volunteer, counted, 'service', actor, minutes_reason, record,
                written_at);
    END IF;
    RETURN entries;
END $$;
"""


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_RECORD)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS points_record")

"""Webhooks: endpoints, their subscriptions, and an outbox of deliveries kept by triggers.

- `webhook_endpoints`: a URL registered at a node (it hears the events of the node and
  every node below it: the node's path is copied, as audit rows copy it); the signing
  secret is derived from `salt` and the app's secret key, never stored.
- `webhook_subscriptions`: the events an endpoint wants.
- `webhook_deliveries`: the outbox, one row per (endpoint, event); UNIQUE (endpoint_id,
  event_id) so an event is queued once per endpoint and a replay keeps its id.
- `webhook_attempts`: every try of a delivery, with its HTTP status or error.

The outbox rows are written by triggers, in the transaction of the event, because the
one-call PostgreSQL writes (migrations 0003, 0005) run no Python between statements.
The triggers insert only (endpoint, event, event id, subject id, times); the worker
builds the payload when it sends (points.webhooks). They sit on the ledger's hot path
(every entry), so they first look for a subscription to the event and do nothing more
when there is none: on SQLite in the trigger's WHEN, on PostgreSQL (whose WHEN cannot
read a table) as the function's first statement.

Revision ID: 0017
Revises: 0016 (re-chained onto 0016 at the merge with the imports branch)
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

EVENTS = (
    "entry.posted",
    "record.approved",
    "record.rejected",
    "redemption.held",
    "redemption.fulfilled",
    "redemption.cancelled",
    "redemption.expired",
    "honour.finalised",
)
COLUMNS = "endpoint_id, event, event_id, subject_id, status, attempts, next_attempt_at, created_at"

# (trigger name, table, timing, WHEN over NEW/OLD, event, event id): one trigger each.
# A record may be written approved or rejected at once (auto-approval, `points_record`);
# a redemption is written held; honours and the rest change status by UPDATE.
TRIGGERS = (
    ("entries_webhook", "entries", "INSERT", None, "'entry.posted'", "'entry:' || NEW.id"),
    (
        "service_records_webhook_insert",
        "service_records",
        "INSERT",
        "NEW.status IN ('approved', 'rejected')",
        "'record.' || NEW.status",
        "'record:' || NEW.id || ':' || NEW.status",
    ),
    (
        "service_records_webhook_update",
        "service_records",
        "UPDATE OF status",
        "NEW.status IN ('approved', 'rejected') AND OLD.status <> NEW.status",
        "'record.' || NEW.status",
        "'record:' || NEW.id || ':' || NEW.status",
    ),
    (
        "redemptions_webhook_insert",
        "redemptions",
        "INSERT",
        None,
        "'redemption.' || NEW.status",
        "'redemption:' || NEW.id || ':' || NEW.status",
    ),
    (
        "redemptions_webhook_update",
        "redemptions",
        "UPDATE OF status",
        "OLD.status <> NEW.status",
        "'redemption.' || NEW.status",
        "'redemption:' || NEW.id || ':' || NEW.status",
    ),
    (
        "honours_webhook_update",
        "honours",
        "UPDATE OF status",
        "NEW.status = 'final' AND OLD.status <> 'final'",
        "'honour.finalised'",
        "'honour:' || NEW.id || ':' || 'finalised'",
    ),
)


def _create_tables() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("district_path", sa.String(length=512), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_by", sa.String(length=200), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'disabled')", name=op.f("ck_webhook_endpoints_status")
        ),
        sa.CheckConstraint(
            "(status = 'active') = (disabled_at IS NULL)",
            name=op.f("ck_webhook_endpoints_disabled"),
        ),
        sa.ForeignKeyConstraint(
            ["district_id"],
            ["districts.id"],
            name=op.f("fk_webhook_endpoints_district_id_districts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_index(
        "ix_webhook_endpoints_district_path_id", "webhook_endpoints", ["district_path", "id"]
    )
    op.create_table(
        "webhook_subscriptions",
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.CheckConstraint(
            f"event IN ({', '.join(repr(e) for e in EVENTS)})",
            name=op.f("ck_webhook_subscriptions_event"),
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_subscriptions_endpoint_id_webhook_endpoints"),
        ),
        sa.PrimaryKeyConstraint("endpoint_id", "event", name=op.f("pk_webhook_subscriptions")),
    )
    # What the triggers look up first, for every entry: is anyone listening to this event?
    op.create_index("ix_webhook_subscriptions_event", "webhook_subscriptions", ["event"])
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", big_id, nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("subject_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')",
            name=op.f("ck_webhook_deliveries_status"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_webhook_deliveries_attempts")),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint(
            "endpoint_id", "event_id", name=op.f("uq_webhook_deliveries_endpoint_id_event_id")
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint_id_id", "webhook_deliveries", ["endpoint_id", "id"]
    )
    op.create_index(
        "ix_webhook_deliveries_next_attempt_at",
        "webhook_deliveries",
        ["next_attempt_at"],
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("id", big_id, nullable=False),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("milliseconds", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index("ix_webhook_attempts_delivery_id_id", "webhook_attempts", ["delivery_id", "id"])


# The rows to queue: one per active endpoint at the event's node or above it that
# subscribes to the event. {event}, {event_id}, {now}, {starts} are filled per dialect.
QUEUE = """
    INSERT INTO webhook_deliveries ({columns})
    SELECT s.endpoint_id, {event}, {event_id}, NEW.id, 'pending', 0, {now}, {now}
    FROM webhook_subscriptions s
    JOIN webhook_endpoints w ON w.id = s.endpoint_id AND w.status = 'active'
    JOIN districts d ON d.id = NEW.district_id
    WHERE s.event = {event} AND {starts}
    ON CONFLICT (endpoint_id, event_id) DO NOTHING"""

# SQLite stores times as "YYYY-MM-DD HH:MM:SS.ffffff" (what SQLAlchemy writes and reads).
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%S', 'now') || substr(strftime('%f', 'now'), 3) || '000'"


def _postgres_triggers() -> None:
    for name, table, timing, when, event, event_id in TRIGGERS:
        queue = QUEUE.format(
            columns=COLUMNS,
            event=event,
            event_id=event_id,
            now="now()",
            starts="starts_with(d.path, w.district_path)",
        )
        op.execute(
            f"""
            CREATE FUNCTION points_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM 1 FROM webhook_subscriptions WHERE event = {event} LIMIT 1;
                IF FOUND THEN
                    {queue};
                END IF;
                RETURN NULL;
            END $$"""
        )
        condition = f" WHEN ({when})" if when else ""
        op.execute(
            f"CREATE TRIGGER {name} AFTER {timing} ON {table} FOR EACH ROW{condition} "
            f"EXECUTE FUNCTION points_{name}()"
        )


def _sqlite_triggers() -> None:
    for name, table, timing, when, event, event_id in TRIGGERS:
        queue = QUEUE.format(
            columns=COLUMNS,
            event=event,
            event_id=event_id,
            now=SQLITE_NOW,
            starts="substr(d.path, 1, length(w.district_path)) = w.district_path",
        )
        listening = f"EXISTS (SELECT 1 FROM webhook_subscriptions WHERE event = {event})"
        condition = f"({when}) AND {listening}" if when else listening
        op.execute(
            f"CREATE TRIGGER {name} AFTER {timing} ON {table} FOR EACH ROW "
            f"WHEN {condition} BEGIN {queue}; END"
        )


def upgrade():
    _create_tables()
    if op.get_bind().dialect.name == "postgresql":
        _postgres_triggers()
    else:
        _sqlite_triggers()


def downgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table, *_ in TRIGGERS:
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS points_{name}()")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_subscriptions")
    op.drop_table("webhook_endpoints")

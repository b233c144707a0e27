"""Initial schema: the district tree, volunteers, providers, tokens and the ledger.

Besides the tables, the database enforces what it can of the ledger's invariants:
CHECK constraints everywhere; on PostgreSQL a deferred constraint trigger refusing an
entry whose postings do not sum to zero at commit; on both databases triggers refusing
UPDATE and DELETE on the append-only tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = ("entries", "postings", "lot_uses", "seals", "service_minutes")

PG_FUNCTIONS = """
CREATE FUNCTION points_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END $$;

CREATE FUNCTION points_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total numeric;
BEGIN
    SELECT sum(amount) INTO total FROM postings WHERE entry_id = NEW.entry_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'entry % does not balance: postings sum to %', NEW.entry_id, total
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;
"""


def create_guards():
    """Install the append-only and zero-sum triggers for this database."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTIONS)
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION points_refuse_change()"
            )
        op.execute(
            "CREATE CONSTRAINT TRIGGER postings_balanced AFTER INSERT ON postings "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION points_entry_balanced()"
        )
    else:
        for table in APPEND_ONLY:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END"
                )


def drop_guards():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS postings_balanced ON postings")
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS points_entry_balanced()")
        op.execute("DROP FUNCTION IF EXISTS points_refuse_change()")
    else:
        for table in APPEND_ONLY:
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")


def upgrade():
    op.create_table('districts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('path', sa.String(length=512), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("level IN ('city', 'district', 'street', 'community', 'grid')", name=op.f('ck_districts_level')),
    sa.ForeignKeyConstraint(['parent_id'], ['districts.id'], name=op.f('fk_districts_parent_id_districts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_districts')),
    sa.UniqueConstraint('code', name=op.f('uq_districts_code'))
    )
    with op.batch_alter_table('districts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_districts_parent_id'), ['parent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_districts_path'), ['path'], unique=False)

    op.create_table('idempotency_keys',
    sa.Column('scope', sa.String(length=100), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('scope', 'key', name=op.f('pk_idempotency_keys'))
    )
    op.create_table('chain_heads',
    sa.Column('district_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['district_id'], ['districts.id'], name=op.f('fk_chain_heads_district_id_districts')),
    sa.PrimaryKeyConstraint('district_id', name=op.f('pk_chain_heads'))
    )
    op.create_table('providers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('district_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('active', 'closed')", name=op.f('ck_providers_status')),
    sa.ForeignKeyConstraint(['district_id'], ['districts.id'], name=op.f('fk_providers_district_id_districts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_providers')),
    sa.UniqueConstraint('code', name=op.f('uq_providers_code'))
    )
    with op.batch_alter_table('providers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_providers_district_id'), ['district_id'], unique=False)

    op.create_table('volunteers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('district_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('card_code', sa.String(length=32), nullable=False),
    sa.Column('pin_hash', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('failed_pins', sa.Integer(), nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('service_minutes', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('active', 'suspended', 'closed')", name=op.f('ck_volunteers_status')),
    sa.CheckConstraint('failed_pins >= 0', name=op.f('ck_volunteers_failed_pins')),
    sa.CheckConstraint('service_minutes >= 0', name=op.f('ck_volunteers_service_minutes')),
    sa.ForeignKeyConstraint(['district_id'], ['districts.id'], name=op.f('fk_volunteers_district_id_districts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_volunteers')),
    sa.UniqueConstraint('card_code', name=op.f('uq_volunteers_card_code'))
    )
    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_volunteers_district_id'), ['district_id'], unique=False)

    op.create_table('accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('district_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('volunteer_id', sa.Integer(), nullable=True),
    sa.Column('provider_id', sa.Integer(), nullable=True),
    sa.Column('balance', sa.BigInteger(), nullable=True),
    sa.Column('held', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(kind = 'provider') = (provider_id IS NOT NULL)", name=op.f('ck_accounts_provider_owner')),
    sa.CheckConstraint("(kind = 'volunteer') = (balance IS NOT NULL)", name=op.f('ck_accounts_cached_balance')),
    sa.CheckConstraint("(kind = 'volunteer') = (volunteer_id IS NOT NULL)", name=op.f('ck_accounts_volunteer_owner')),
    sa.CheckConstraint("kind = 'volunteer' OR held = 0", name=op.f('ck_accounts_held_only_volunteer')),
    sa.CheckConstraint("kind IN ('volunteer', 'issuance', 'provider', 'expired', 'clearing')", name=op.f('ck_accounts_kind')),
    sa.CheckConstraint("status IN ('open', 'closed')", name=op.f('ck_accounts_status')),
    sa.CheckConstraint('balance IS NULL OR (balance >= 0 AND held >= 0 AND balance - held >= 0)', name=op.f('ck_accounts_non_negative')),
    sa.ForeignKeyConstraint(['district_id'], ['districts.id'], name=op.f('fk_accounts_district_id_districts')),
    sa.ForeignKeyConstraint(['provider_id'], ['providers.id'], name=op.f('fk_accounts_provider_id_providers')),
    sa.ForeignKeyConstraint(['volunteer_id'], ['volunteers.id'], name=op.f('fk_accounts_volunteer_id_volunteers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('provider_id', 'district_id', name=op.f('uq_accounts_provider_id_district_id')),
    sa.UniqueConstraint('volunteer_id', name=op.f('uq_accounts_volunteer_id'))
    )
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.create_index('ix_accounts_district_kind', ['district_id', 'kind'], unique=False)
        batch_op.create_index('uq_accounts_district_system_kind', ['district_id', 'kind'], unique=True, sqlite_where=sa.text("kind IN ('issuance', 'expired', 'clearing')"), postgresql_where=sa.text("kind IN ('issuance', 'expired', 'clearing')"))

    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('district_id', sa.Integer(), nullable=False),
    sa.Column('volunteer_id', sa.Integer(), nullable=True),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("(role = 'volunteer') = (volunteer_id IS NOT NULL)", name=op.f('ck_api_tokens_volunteer')),
    sa.CheckConstraint("role IN ('admin', 'office', 'auditor', 'kiosk', 'volunteer')", name=op.f('ck_api_tokens_role')),
    sa.ForeignKeyConstraint(['district_id'], ['districts.id'], name=op.f('fk_api_tokens_district_id_districts')),
    sa.ForeignKeyConstraint(['volunteer_id'], ['volunteers.id'], name=op.f('fk_api_tokens_volunteer_id_volunteers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_tokens_district_id'), ['district_id'], unique=False)

    op.create_table('service_minutes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('district_id', sa.Integer(), nullable=False),
    sa.Column('volunteer_id', sa.Integer(), nullable=False),
    sa.Column('minutes', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('service_record_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind = 'correction' OR minutes > 0", name=op.f('ck_service_minutes_only_grows')),
    sa.CheckConstraint("kind IN ('service', 'correction')", name=op.f('ck_service_minutes_kind')),
    sa.CheckConstraint('minutes <> 0', name=op.f('ck_service_minutes_non_zero')),
    sa.ForeignKeyConstraint(['district_id'], ['districts.id'], name=op.f('fk_service_minutes_district_id_districts')),
    sa.ForeignKeyConstraint(['volunteer_id'], ['volunteers.id'], name=op.f('fk_service_minutes_volunteer_id_volunteers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_service_minutes')),
    sa.UniqueConstraint('service_record_id', name=op.f('uq_service_minutes_service_record_id'))
    )
    with op.batch_alter_table('service_minutes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_service_minutes_volunteer_id'), ['volunteer_id'], unique=False)

    op.create_table('holds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('district_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('destination_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.String(length=200), nullable=True),
    sa.Column('resolution', sa.Text(), nullable=True),
    sa.CheckConstraint("(status = 'pending') = (resolved_at IS NULL)", name=op.f('ck_holds_resolved')),
    sa.CheckConstraint("status IN ('pending', 'posted', 'voided', 'timed_out')", name=op.f('ck_holds_status')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_holds_positive')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_holds_account_id_accounts')),
    sa.ForeignKeyConstraint(['destination_id'], ['accounts.id'], name=op.f('fk_holds_destination_id_accounts')),
    sa.ForeignKeyConstraint(['district_id'], ['districts.id'], name=op.f('fk_holds_district_id_districts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_holds'))
    )
    with op.batch_alter_table('holds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_holds_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_holds_pending_expiry', ['expires_at'], unique=False, sqlite_where=sa.text("status = 'pending'"), postgresql_where=sa.text("status = 'pending'"))

    op.create_table('entries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('district_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('effective_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('plugin', sa.String(length=64), nullable=True),
    sa.Column('rule', sa.String(length=64), nullable=True),
    sa.Column('config_version', sa.Integer(), nullable=True),
    sa.Column('service_record_id', sa.Integer(), nullable=True),
    sa.Column('hold_id', sa.Integer(), nullable=True),
    sa.Column('reverses_id', sa.BigInteger(), nullable=True),
    sa.Column('related_entry_id', sa.BigInteger(), nullable=True),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.CheckConstraint("(kind = 'reversal') = (reverses_id IS NOT NULL)", name=op.f('ck_entries_reversal_link')),
    sa.CheckConstraint("kind IN ('earn', 'redeem', 'transfer', 'expire', 'reversal')", name=op.f('ck_entries_kind')),
    sa.ForeignKeyConstraint(['district_id'], ['districts.id'], name=op.f('fk_entries_district_id_districts')),
    sa.ForeignKeyConstraint(['hold_id'], ['holds.id'], name=op.f('fk_entries_hold_id_holds')),
    sa.ForeignKeyConstraint(['related_entry_id'], ['entries.id'], name=op.f('fk_entries_related_entry_id_entries')),
    sa.ForeignKeyConstraint(['reverses_id'], ['entries.id'], name=op.f('fk_entries_reverses_id_entries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_entries')),
    sa.UniqueConstraint('reverses_id', name=op.f('uq_entries_reverses_id'))
    )
    with op.batch_alter_table('entries', schema=None) as batch_op:
        batch_op.create_index('ix_entries_district_id_id', ['district_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_entries_hold_id'), ['hold_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_entries_service_record_id'), ['service_record_id'], unique=False)

    op.create_table('lots',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('district_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('remaining', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount > 0', name=op.f('ck_lots_positive')),
    sa.CheckConstraint('remaining >= 0 AND remaining <= amount', name=op.f('ck_lots_remaining')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_lots_account_id_accounts')),
    sa.ForeignKeyConstraint(['district_id'], ['districts.id'], name=op.f('fk_lots_district_id_districts')),
    sa.ForeignKeyConstraint(['entry_id'], ['entries.id'], name=op.f('fk_lots_entry_id_entries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lots'))
    )
    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.create_index('ix_lots_account_id_expires_at', ['account_id', 'expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_lots_entry_id'), ['entry_id'], unique=False)
        batch_op.create_index('ix_lots_open_expiry', ['expires_at'], unique=False, sqlite_where=sa.text('remaining > 0'), postgresql_where=sa.text('remaining > 0'))

    op.create_table('postings',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('entry_id', sa.BigInteger(), nullable=False),
    sa.Column('district_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('amount <> 0', name=op.f('ck_postings_non_zero')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_postings_account_id_accounts')),
    sa.ForeignKeyConstraint(['district_id'], ['districts.id'], name=op.f('fk_postings_district_id_districts')),
    sa.ForeignKeyConstraint(['entry_id'], ['entries.id'], name=op.f('fk_postings_entry_id_entries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_postings'))
    )
    with op.batch_alter_table('postings', schema=None) as batch_op:
        batch_op.create_index('ix_postings_account_id_id', ['account_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_postings_entry_id'), ['entry_id'], unique=False)

    op.create_table('seals',
    sa.Column('district_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('entry_id', sa.BigInteger(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['district_id'], ['districts.id'], name=op.f('fk_seals_district_id_districts')),
    sa.ForeignKeyConstraint(['entry_id'], ['entries.id'], name=op.f('fk_seals_entry_id_entries')),
    sa.PrimaryKeyConstraint('district_id', 'seq', name=op.f('pk_seals')),
    sa.UniqueConstraint('entry_id', name=op.f('uq_seals_entry_id'))
    )
    op.create_table('unsealed_entries',
    sa.Column('entry_id', sa.BigInteger(), nullable=False),
    sa.Column('district_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['district_id'], ['districts.id'], name=op.f('fk_unsealed_entries_district_id_districts')),
    sa.ForeignKeyConstraint(['entry_id'], ['entries.id'], name=op.f('fk_unsealed_entries_entry_id_entries')),
    sa.PrimaryKeyConstraint('entry_id', name=op.f('pk_unsealed_entries'))
    )
    with op.batch_alter_table('unsealed_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_unsealed_entries_district_id'), ['district_id'], unique=False)

    op.create_table('lot_uses',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('district_id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.BigInteger(), nullable=False),
    sa.Column('entry_id', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('amount > 0', name=op.f('ck_lot_uses_positive')),
    sa.ForeignKeyConstraint(['district_id'], ['districts.id'], name=op.f('fk_lot_uses_district_id_districts')),
    sa.ForeignKeyConstraint(['entry_id'], ['entries.id'], name=op.f('fk_lot_uses_entry_id_entries')),
    sa.ForeignKeyConstraint(['lot_id'], ['lots.id'], name=op.f('fk_lot_uses_lot_id_lots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lot_uses'))
    )
    with op.batch_alter_table('lot_uses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lot_uses_entry_id'), ['entry_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_lot_uses_lot_id'), ['lot_id'], unique=False)

    create_guards()


def downgrade():
    drop_guards()
    with op.batch_alter_table('lot_uses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lot_uses_lot_id'))
        batch_op.drop_index(batch_op.f('ix_lot_uses_entry_id'))

    op.drop_table('lot_uses')
    with op.batch_alter_table('unsealed_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_unsealed_entries_district_id'))

    op.drop_table('unsealed_entries')
    op.drop_table('seals')
    with op.batch_alter_table('postings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_postings_entry_id'))
        batch_op.drop_index('ix_postings_account_id_id')

    op.drop_table('postings')
    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.drop_index('ix_lots_open_expiry', sqlite_where=sa.text('remaining > 0'), postgresql_where=sa.text('remaining > 0'))
        batch_op.drop_index(batch_op.f('ix_lots_entry_id'))
        batch_op.drop_index('ix_lots_account_id_expires_at')

    op.drop_table('lots')
    with op.batch_alter_table('entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_entries_service_record_id'))
        batch_op.drop_index(batch_op.f('ix_entries_hold_id'))
        batch_op.drop_index('ix_entries_district_id_id')

    op.drop_table('entries')
    with op.batch_alter_table('holds', schema=None) as batch_op:
        batch_op.drop_index('ix_holds_pending_expiry', sqlite_where=sa.text("status = 'pending'"), postgresql_where=sa.text("status = 'pending'"))
        batch_op.drop_index(batch_op.f('ix_holds_account_id'))

    op.drop_table('holds')
    with op.batch_alter_table('service_minutes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_service_minutes_volunteer_id'))

    op.drop_table('service_minutes')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_district_id'))

    op.drop_table('api_tokens')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index('uq_accounts_district_system_kind', sqlite_where=sa.text("kind IN ('issuance', 'expired', 'clearing')"), postgresql_where=sa.text("kind IN ('issuance', 'expired', 'clearing')"))
        batch_op.drop_index('ix_accounts_district_kind')

    op.drop_table('accounts')
    with op.batch_alter_table('volunteers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_volunteers_district_id'))

    op.drop_table('volunteers')
    with op.batch_alter_table('providers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_providers_district_id'))

    op.drop_table('providers')
    op.drop_table('chain_heads')
    op.drop_table('idempotency_keys')
    with op.batch_alter_table('districts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_districts_path'))
        batch_op.drop_index(batch_op.f('ix_districts_parent_id'))

    op.drop_table('districts')

"""Plugins: versioned per-district policy, service records, redemptions, transfer requests.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('policy_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('district_id', sa.Integer(), nullable=False),
    sa.Column('plugin', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('locked', sa.JSON(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=True),
    sa.Column('author', sa.String(length=200), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('effective_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('version >= 1', name=op.f('ck_policy_versions_version')),
    sa.ForeignKeyConstraint(['district_id'], ['districts.id'], name=op.f('fk_policy_versions_district_id_districts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_policy_versions')),
    sa.UniqueConstraint('district_id', 'plugin', 'version', name=op.f('uq_policy_versions_district_id_plugin_version'))
    )
    op.create_table('service_records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('district_id', sa.Integer(), nullable=False),
    sa.Column('volunteer_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('minutes', sa.Integer(), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('dedupe_key', sa.String(length=64), nullable=True),
    sa.Column('submitted_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('queue_reason', sa.Text(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by', sa.String(length=200), nullable=True),
    sa.Column('decision_reason', sa.Text(), nullable=True),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('verified_by', sa.String(length=200), nullable=True),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('awards', sa.JSON(), nullable=True),
    sa.CheckConstraint("(status = 'pending') = (decided_at IS NULL)", name=op.f('ck_service_records_decided')),
    sa.CheckConstraint("status IN ('pending', 'approved', 'rejected')", name=op.f('ck_service_records_status')),
    sa.CheckConstraint('minutes IS NULL OR (minutes >= 1 AND minutes <= 1440)', name=op.f('ck_service_records_minutes')),
    sa.CheckConstraint('points >= 0', name=op.f('ck_service_records_points')),
    sa.ForeignKeyConstraint(['district_id'], ['districts.id'], name=op.f('fk_service_records_district_id_districts')),
    sa.ForeignKeyConstraint(['volunteer_id'], ['volunteers.id'], name=op.f('fk_service_records_volunteer_id_volunteers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_service_records')),
    sa.UniqueConstraint('volunteer_id', 'dedupe_key', name=op.f('uq_service_records_volunteer_id_dedupe_key'))
    )
    with op.batch_alter_table('service_records', schema=None) as batch_op:
        batch_op.create_index('ix_service_records_district_id_started_at', ['district_id', 'started_at'], unique=False)
        batch_op.create_index('ix_service_records_district_id_status_id', ['district_id', 'status', 'id'], unique=False)
        batch_op.create_index('ix_service_records_volunteer_id_started_at', ['volunteer_id', 'started_at'], unique=False)

    op.create_table('redemptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('district_id', sa.Integer(), nullable=False),
    sa.Column('pool_district_id', sa.Integer(), nullable=False),
    sa.Column('volunteer_id', sa.Integer(), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('hold_id', sa.Integer(), nullable=False),
    sa.Column('voucher_code', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.String(length=200), nullable=True),
    sa.Column('resolution', sa.Text(), nullable=True),
    sa.Column('entry_id', sa.BigInteger(), nullable=True),
    sa.CheckConstraint("(status = 'held') = (resolved_at IS NULL)", name=op.f('ck_redemptions_resolved')),
    sa.CheckConstraint("status IN ('held', 'fulfilled', 'cancelled', 'expired')", name=op.f('ck_redemptions_status')),
    sa.CheckConstraint('points > 0', name=op.f('ck_redemptions_positive')),
    sa.ForeignKeyConstraint(['district_id'], ['districts.id'], name=op.f('fk_redemptions_district_id_districts')),
    sa.ForeignKeyConstraint(['entry_id'], ['entries.id'], name=op.f('fk_redemptions_entry_id_entries')),
    sa.ForeignKeyConstraint(['hold_id'], ['holds.id'], name=op.f('fk_redemptions_hold_id_holds')),
    sa.ForeignKeyConstraint(['pool_district_id'], ['districts.id'], name=op.f('fk_redemptions_pool_district_id_districts')),
    sa.ForeignKeyConstraint(['provider_id'], ['providers.id'], name=op.f('fk_redemptions_provider_id_providers')),
    sa.ForeignKeyConstraint(['volunteer_id'], ['volunteers.id'], name=op.f('fk_redemptions_volunteer_id_volunteers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_redemptions')),
    sa.UniqueConstraint('hold_id', name=op.f('uq_redemptions_hold_id')),
    sa.UniqueConstraint('voucher_code', name=op.f('uq_redemptions_voucher_code'))
    )
    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.create_index('ix_redemptions_pool_district_id_sku_created_at', ['pool_district_id', 'sku', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_redemptions_volunteer_id'), ['volunteer_id'], unique=False)

    op.create_table('transfer_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('district_id', sa.Integer(), nullable=False),
    sa.Column('from_volunteer_id', sa.Integer(), nullable=False),
    sa.Column('to_volunteer_id', sa.Integer(), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('relation', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by', sa.String(length=200), nullable=True),
    sa.Column('decision_reason', sa.Text(), nullable=True),
    sa.Column('entry_id', sa.BigInteger(), nullable=True),
    sa.CheckConstraint("(status = 'pending') = (decided_at IS NULL)", name=op.f('ck_transfer_requests_decided')),
    sa.CheckConstraint("status IN ('pending', 'approved', 'rejected')", name=op.f('ck_transfer_requests_status')),
    sa.CheckConstraint('points > 0', name=op.f('ck_transfer_requests_positive')),
    sa.ForeignKeyConstraint(['district_id'], ['districts.id'], name=op.f('fk_transfer_requests_district_id_districts')),
    sa.ForeignKeyConstraint(['entry_id'], ['entries.id'], name=op.f('fk_transfer_requests_entry_id_entries')),
    sa.ForeignKeyConstraint(['from_volunteer_id'], ['volunteers.id'], name=op.f('fk_transfer_requests_from_volunteer_id_volunteers')),
    sa.ForeignKeyConstraint(['to_volunteer_id'], ['volunteers.id'], name=op.f('fk_transfer_requests_to_volunteer_id_volunteers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transfer_requests'))
    )
    with op.batch_alter_table('transfer_requests', schema=None) as batch_op:
        batch_op.create_index('ix_transfer_requests_district_id_status_id', ['district_id', 'status', 'id'], unique=False)



def downgrade():
    with op.batch_alter_table('transfer_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_transfer_requests_district_id_status_id')

    op.drop_table('transfer_requests')
    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_redemptions_volunteer_id'))
        batch_op.drop_index('ix_redemptions_pool_district_id_sku_created_at')

    op.drop_table('redemptions')
    with op.batch_alter_table('service_records', schema=None) as batch_op:
        batch_op.drop_index('ix_service_records_volunteer_id_started_at')
        batch_op.drop_index('ix_service_records_district_id_status_id')
        batch_op.drop_index('ix_service_records_district_id_started_at')

    op.drop_table('service_records')
    op.drop_table('policy_versions')

"""Policy drafts: a node's next version of a plugin's configuration, before it is stored.

- `policy_drafts`: one per node and plugin, checked as a version would be when saved,
  previewed against past records, then activated (a policy version is stored and the
  draft removed in one transaction) or discarded. `base_version` is the node's newest
  version when the draft began, so an activation after someone else's change is refused.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "policy_drafts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("plugin", sa.String(length=64), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("locked", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=True),
        sa.Column("base_version", sa.Integer(), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("base_version >= 0", name=op.f("ck_policy_drafts_base_version")),
        sa.ForeignKeyConstraint(
            ["district_id"], ["districts.id"], name=op.f("fk_policy_drafts_district_id_districts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_drafts")),
        sa.UniqueConstraint(
            "district_id", "plugin", name=op.f("uq_policy_drafts_district_id_plugin")
        ),
    )


def downgrade():
    op.drop_table("policy_drafts")

"""What the pages need: a node's contact line, kiosk pairing codes, provider link tokens.

- `districts.contact`: the office's contact line a volunteer's home page shows
  ("龙潭街道办事处 010-6711 2233, 工作日 9:00-17:00").
- `api_tokens.pairing_hash`, `pairing_expires_at`: a kiosk token can carry a one-time
  pairing code (stored as its sha256, like tokens), which a kiosk page exchanges once for
  a new device secret.
- Role `provider` with `api_tokens.provider_id`: a link token an office issues to one
  service provider, which reaches that provider's vouchers and nothing else.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

OLD_ROLES = ("admin", "office", "auditor", "kiosk", "volunteer")
NEW_ROLES = (*OLD_ROLES, "provider")
PROVIDER = "(role = 'provider') = (provider_id IS NOT NULL)"


def _roles(values: tuple[str, ...]) -> str:
    """The role CHECK, spelled as one constant on PostgreSQL (as 0006 spells them)."""
    if op.get_bind().dialect.name == "postgresql":
        return f"role::text = ANY ('{{{','.join(values)}}}'::text[])"
    return f"role IN ({', '.join(repr(v) for v in values)})"


def upgrade():
    # Not a batch: SQLite adds and drops a plain column in place, and cannot rebuild a
    # table that others refer to while foreign keys are on.
    op.add_column("districts", sa.Column("contact", sa.Text(), nullable=True))
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.add_column(sa.Column("provider_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("pairing_hash", sa.String(64), nullable=True))
        batch_op.add_column(
            sa.Column("pairing_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_api_tokens_provider_id_providers"), "providers", ["provider_id"], ["id"]
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_api_tokens_pairing_hash"), ["pairing_hash"]
        )
        batch_op.drop_constraint(batch_op.f("ck_api_tokens_role"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_api_tokens_role"), _roles(NEW_ROLES))
        batch_op.create_check_constraint(batch_op.f("ck_api_tokens_provider"), PROVIDER)


def downgrade():
    op.execute("DELETE FROM api_tokens WHERE role = 'provider'")
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_api_tokens_provider"), type_="check")
        batch_op.drop_constraint(batch_op.f("ck_api_tokens_role"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_api_tokens_role"), _roles(OLD_ROLES))
        batch_op.drop_constraint(batch_op.f("uq_api_tokens_pairing_hash"), type_="unique")
        batch_op.drop_constraint(
            batch_op.f("fk_api_tokens_provider_id_providers"), type_="foreignkey"
        )
        batch_op.drop_column("pairing_expires_at")
        batch_op.drop_column("pairing_hash")
        batch_op.drop_column("provider_id")
    op.drop_column("districts", "contact")

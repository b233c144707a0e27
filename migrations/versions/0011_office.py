"""The office console: staff accounts, and an append-only audit log.

- `staff`: username + password accounts of office, auditor and admin staff, scoped to a
  district node; the password stored as a scrypt hash; wrong passwords counted in the row
  (`failed_logins`, `locked_until`) so that every worker agrees on a lockout.
- `api_tokens.staff_id`: a staff member's console session is a token of their role and
  node, so that pages and the API authorise it the same way, and disabling the account or
  changing the password ends its sessions.
- Indexes for the office's volunteer search, `volunteers (name)` and `volunteers (phone)`,
  and for its locked cards, `volunteers (locked_until)`.
- `audit_events`: who changed what, in which node, when and from where, with the changed
  fields before and after. Append-only: triggers refuse UPDATE and DELETE, as on the
  ledger's tables.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "staff",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("must_change_password", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("role IN ('admin', 'office', 'auditor')", name=op.f("ck_staff_role")),
        sa.CheckConstraint("status IN ('active', 'disabled')", name=op.f("ck_staff_status")),
        sa.CheckConstraint("failed_logins >= 0", name=op.f("ck_staff_failed_logins")),
        sa.ForeignKeyConstraint(
            ["district_id"], ["districts.id"], name=op.f("fk_staff_district_id_districts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff")),
        sa.UniqueConstraint("username", name=op.f("uq_staff_username")),
    )
    op.create_index(op.f("ix_staff_district_id"), "staff", ["district_id"])
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.add_column(sa.Column("staff_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_api_tokens_staff_id_staff"), "staff", ["staff_id"], ["id"]
        )
        batch_op.create_index(batch_op.f("ix_api_tokens_staff_id"), ["staff_id"])
    # The office's volunteer search: by the start of a name, by a phone number.
    op.create_index("ix_volunteers_name", "volunteers", ["name"])
    op.create_index("ix_volunteers_phone", "volunteers", ["phone"])
    op.create_index("ix_volunteers_locked_until", "volunteers", ["locked_until"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("actor_name", sa.String(200), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(32), nullable=True),
        sa.Column("target_id", sa.String(64), nullable=True),
        sa.Column("district_id", sa.Integer(), nullable=True),
        sa.Column("district_path", sa.String(512), nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["district_id"], ["districts.id"], name=op.f("fk_audit_events_district_id_districts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(
        "ix_audit_events_district_path_id", "audit_events", ["district_path", "id"]
    )
    op.create_index(
        "ix_audit_events_target", "audit_events", ["target_type", "target_id", "id"]
    )
    if op.get_bind().dialect.name == "postgresql":
        # points_refuse_change() is migration 0001's.
        op.execute(
            "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION points_refuse_change()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_no_{action.lower()} BEFORE {action} ON "
                f"audit_events BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: "
                f"{action} refused'); END"
            )


def downgrade():
    op.drop_table("audit_events")  # its triggers go with it
    op.execute("DELETE FROM api_tokens WHERE staff_id IS NOT NULL")
    with op.batch_alter_table("api_tokens") as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_tokens_staff_id"))
        batch_op.drop_constraint(batch_op.f("fk_api_tokens_staff_id_staff"), type_="foreignkey")
        batch_op.drop_column("staff_id")
    op.drop_index("ix_volunteers_locked_until", table_name="volunteers")
    op.drop_index("ix_volunteers_phone", table_name="volunteers")
    op.drop_index("ix_volunteers_name", table_name="volunteers")
    op.drop_index(op.f("ix_staff_district_id"), table_name="staff")
    op.drop_table("staff")

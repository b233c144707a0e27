"""Honours with a public notice (公示): honour lists, their members, objections.

- `honours`: a list an office proposes from a ranking, published on a public page under
  an unguessable code until `notice_until`, then finalised or withdrawn.
- `honour_members`: who is on it, with their place and figure at the proposal.
- `honour_objections`: what anyone lodged during the notice (with a keyed hash of where
  it came from, never the address), and the office's answer.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "honours",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("ranked_by", sa.String(length=16), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("public_code", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("notice_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("proposed_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('notice', 'final', 'withdrawn')", name=op.f("ck_honours_status")
        ),
        sa.CheckConstraint(
            "ranked_by IN ('hours', 'points')", name=op.f("ck_honours_ranked_by")
        ),
        sa.CheckConstraint(
            "(status = 'notice') = (decided_at IS NULL)", name=op.f("ck_honours_decided")
        ),
        sa.CheckConstraint("period_end > period_start", name=op.f("ck_honours_period")),
        sa.ForeignKeyConstraint(
            ["district_id"], ["districts.id"], name=op.f("fk_honours_district_id_districts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_honours")),
        sa.UniqueConstraint("public_code", name=op.f("uq_honours_public_code")),
    )
    op.create_index(op.f("ix_honours_district_id"), "honours", ["district_id"])
    op.create_table(
        "honour_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("honour_id", sa.Integer(), nullable=False),
        sa.Column("volunteer_id", sa.Integer(), nullable=False),
        sa.Column("place", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("place >= 1", name=op.f("ck_honour_members_place")),
        sa.ForeignKeyConstraint(
            ["honour_id"], ["honours.id"], name=op.f("fk_honour_members_honour_id_honours")
        ),
        sa.ForeignKeyConstraint(
            ["volunteer_id"],
            ["volunteers.id"],
            name=op.f("fk_honour_members_volunteer_id_volunteers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_honour_members")),
        sa.UniqueConstraint(
            "honour_id", "volunteer_id", name=op.f("uq_honour_members_honour_id_volunteer_id")
        ),
    )
    op.create_index(
        op.f("ix_honour_members_volunteer_id"), "honour_members", ["volunteer_id"]
    )
    op.create_table(
        "honour_objections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("honour_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("answered_by", sa.String(length=200), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(answer IS NULL) = (answered_at IS NULL)",
            name=op.f("ck_honour_objections_answered"),
        ),
        sa.ForeignKeyConstraint(
            ["honour_id"], ["honours.id"], name=op.f("fk_honour_objections_honour_id_honours")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_honour_objections")),
    )
    op.create_index(
        op.f("ix_honour_objections_honour_id"), "honour_objections", ["honour_id"]
    )


def downgrade():
    op.drop_table("honour_objections")
    op.drop_table("honour_members")
    op.drop_table("honours")

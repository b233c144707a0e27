"""Activities: events an office posts for a node, sign-ups, on-site check-in and out.

- `activities`: the event (titles, place, times, the activity kind and the details its
  records carry, places, minimum star level, sign-up deadline), its status (open,
  cancelled, closed), the fields plugins add (`extra`), the salt of its rotating QR code
  and a version that bumps on each change.
- `activity_signups`: one row per volunteer and activity (UNIQUE), signed or withdrawn,
  with the check-in and check-out and the service record check-out made.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

VIAS = "('qr', 'card', 'office')"


def upgrade():
    op.create_table(
        "activities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("title_zh", sa.String(length=200), nullable=False),
        sa.Column("title_en", sa.String(length=200), nullable=False),
        sa.Column("description_zh", sa.Text(), nullable=False),
        sa.Column("description_en", sa.Text(), nullable=False),
        sa.Column("place", sa.String(length=200), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("record_details", sa.JSON(), nullable=False),
        sa.Column("places", sa.Integer(), nullable=False),
        sa.Column("min_star_level", sa.Integer(), nullable=False),
        sa.Column("signup_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.Column("qr_salt", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_reason", sa.Text(), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'cancelled', 'closed')", name=op.f("ck_activities_status")
        ),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_activities_times")),
        sa.CheckConstraint("places >= 1", name=op.f("ck_activities_places")),
        sa.CheckConstraint("min_star_level >= 0", name=op.f("ck_activities_min_star_level")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_activities_version")),
        sa.CheckConstraint(
            "(status = 'cancelled') = (cancelled_at IS NOT NULL)",
            name=op.f("ck_activities_cancelled"),
        ),
        sa.CheckConstraint(
            "(status = 'closed') = (closed_at IS NOT NULL)", name=op.f("ck_activities_closed")
        ),
        sa.ForeignKeyConstraint(
            ["district_id"], ["districts.id"], name=op.f("fk_activities_district_id_districts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activities")),
    )
    op.create_index(
        "ix_activities_district_id_starts_at", "activities", ["district_id", "starts_at"]
    )
    op.create_index("ix_activities_status_ends_at", "activities", ["status", "ends_at"])
    op.create_table(
        "activity_signups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("activity_id", sa.Integer(), nullable=False),
        sa.Column("volunteer_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("signed_by", sa.String(length=200), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_in_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_in_by", sa.String(length=200), nullable=True),
        sa.Column("checked_in_via", sa.String(length=8), nullable=True),
        sa.Column("checked_out_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_out_by", sa.String(length=200), nullable=True),
        sa.Column("checked_out_via", sa.String(length=8), nullable=True),
        sa.Column("service_record_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "status IN ('signed', 'withdrawn')", name=op.f("ck_activity_signups_status")
        ),
        sa.CheckConstraint(
            "(status = 'withdrawn') = (withdrawn_at IS NOT NULL)",
            name=op.f("ck_activity_signups_withdrawn"),
        ),
        sa.CheckConstraint(
            "checked_out_at IS NULL OR checked_in_at IS NOT NULL",
            name=op.f("ck_activity_signups_checked_out"),
        ),
        sa.CheckConstraint(
            "status = 'signed' OR checked_in_at IS NULL",
            name=op.f("ck_activity_signups_checked_in"),
        ),
        sa.CheckConstraint(
            f"checked_in_via IS NULL OR checked_in_via IN {VIAS}",
            name=op.f("ck_activity_signups_in_via"),
        ),
        sa.CheckConstraint(
            f"checked_out_via IS NULL OR checked_out_via IN {VIAS}",
            name=op.f("ck_activity_signups_out_via"),
        ),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["activities.id"],
            name=op.f("fk_activity_signups_activity_id_activities"),
        ),
        sa.ForeignKeyConstraint(
            ["volunteer_id"],
            ["volunteers.id"],
            name=op.f("fk_activity_signups_volunteer_id_volunteers"),
        ),
        sa.ForeignKeyConstraint(
            ["service_record_id"],
            ["service_records.id"],
            name=op.f("fk_activity_signups_service_record_id_service_records"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activity_signups")),
        # Also the index of "the signups of an activity".
        sa.UniqueConstraint(
            "activity_id", "volunteer_id", name=op.f("uq_activity_signups_activity_id_volunteer_id")
        ),
    )
    op.create_index("ix_activity_signups_volunteer_id", "activity_signups", ["volunteer_id"])


def downgrade():
    op.drop_index("ix_activity_signups_volunteer_id", table_name="activity_signups")
    op.drop_table("activity_signups")
    op.drop_index("ix_activities_status_ends_at", table_name="activities")
    op.drop_index("ix_activities_district_id_starts_at", table_name="activities")
    op.drop_table("activities")

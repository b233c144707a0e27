"""One phone number per volunteer within a district node.

A unique index on `volunteers (district_id, phone)`: two registrations of one number in
one node are one person registered twice (two cards, two balances), which the office
could not tell apart. Volunteers without a phone (NULL) are not affected: both SQLite
and PostgreSQL let NULLs repeat in a unique index.

The upgrade stops with a clear message if the database already holds such duplicates:
an office must settle them (which card the person keeps) before the index can exist.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

INDEX = "uq_volunteers_district_phone"


def upgrade():
    duplicates = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT district_id, phone, count(*) FROM volunteers WHERE phone IS NOT NULL "
                "GROUP BY district_id, phone HAVING count(*) > 1"
            )
        )
        .all()
    )
    if duplicates:
        raise RuntimeError(
            f"{len(duplicates)} phone numbers are registered more than once in one node "
            "(volunteers.district_id, phone); settle them before upgrading"
        )
    # SQLite creates an index without rebuilding the table: no batch needed.
    op.create_index(INDEX, "volunteers", ["district_id", "phone"], unique=True)


def downgrade():
    op.drop_index(INDEX, table_name="volunteers")

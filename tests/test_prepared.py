"""database.Prepared: the rows SQLAlchemy would return, its errors, its listeners."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, event, select
from sqlalchemy.exc import IntegrityError

from points.database import Prepared, is_retryable
from points.extensions import db
from points.models import ServiceRecord, Volunteer
from points.service import record_service

HISTORY = select(
    ServiceRecord.id,
    ServiceRecord.started_at,
    ServiceRecord.details,
    ServiceRecord.awards,
    ServiceRecord.minutes,
).where(
    ServiceRecord.volunteer_id == bindparam("volunteer_id"),
    ServiceRecord.status == "approved",  # bound in the statement, not by the caller
    ServiceRecord.started_at >= bindparam("since"),
)


def test_rows_are_what_sqlalchemy_returns(app, volunteer):
    started = datetime.now(UTC) - timedelta(days=1, minutes=7, microseconds=123)
    record_service(volunteer, "patrol", started, 120, {"route": "夕照寺中街"}, actor="o")
    parameters = {"volunteer_id": volunteer, "since": started - timedelta(hours=1)}
    expected = db.session.execute(HISTORY, parameters).all()
    found = Prepared(HISTORY).rows(db.session.connection(), parameters)
    assert [tuple(row) for row in found] == [tuple(row) for row in expected]
    (row,) = found
    assert row.started_at == started and row.started_at.tzinfo is not None
    assert row.details == {"route": "夕照寺中街"} and row.awards[0]["points"] == 10


def test_a_driver_error_is_raised_as_sqlalchemy_raises_it(app, volunteer, other_volunteer):
    taken = db.session.get(Volunteer, other_volunteer).card_code
    move = Prepared(
        Volunteer.__table__.update()
        .where(Volunteer.id == bindparam("volunteer"))
        .values(card_code=bindparam("card"))
    )
    with pytest.raises(IntegrityError) as raised:
        move.rows(db.session.connection(), {"volunteer": volunteer, "card": taken})
    assert not raised.value.connection_invalidated and not is_retryable(raised.value)
    db.session.rollback()


def test_cursor_listeners_hear_each_statement(app, volunteer):
    heard = []

    def listen(_connection, _cursor, statement, parameters, _context, _many):
        heard.append(statement)

    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        Prepared(HISTORY).rows(
            db.session.connection(), {"volunteer_id": volunteer, "since": datetime.now(UTC)}
        )
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)
    assert len(heard) == 1 and "FROM service_records" in heard[0]

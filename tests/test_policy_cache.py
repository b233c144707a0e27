"""The process's cache of policy versions: shared by requests, checked by a stamp per request."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, event, insert

from points.app import create_app
from points.extensions import db
from points.models import PolicyVersion
from points.plugins import plugin_manager, registered
from points.policy import district_info, plugin_config, resolve_policy, set_policy
from points.service import volunteer_info
from tests.plugins import recorder

NOW = datetime.now(UTC)
LONG_AGO = NOW - timedelta(days=400)


def put(district, plugin, config, **kwargs):
    kwargs.setdefault("author", "office:test")
    kwargs.setdefault("effective_from", LONG_AGO)
    return set_policy(district, plugin, config, **kwargs)


def in_request(app, work):
    """Run `work` in an app context of its own, as a request would."""
    with app.app_context():
        try:
            return work()
        finally:
            db.session.remove()


@contextlib.contextmanager
def statements():
    """Collect the SQL of every statement run on the current app's engine, but BEGIN."""
    seen: list[str] = []

    def collect(_connection, _cursor, statement, *_args):
        # SQLite's begin hook sends BEGIN as a statement; PostgreSQL's driver does not.
        if not statement.startswith("BEGIN"):
            seen.append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", collect)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", collect)


def version_reads(seen: list[str]) -> list[str]:
    return [s for s in seen if "policy_versions.config" in s]


def stamp_reads(seen: list[str]) -> list[str]:
    return [s for s in seen if "policy_versions" in s and "policy_versions.config" not in s]


def daily_cap(district="xizhaosi", as_of=None):
    return resolve_policy(district, as_of).config("caps")["overall"]["day"]


def test_policy_cache_serves_later_requests_with_one_stamp_read(app, tree):
    put("longtan", "caps", {"overall": {"day": 50}})
    assert in_request(app, daily_cap) == 50
    with statements() as seen:
        assert in_request(app, daily_cap) == 50
        assert in_request(app, lambda: plugin_config("caps", "xizhaosi")["overall"]["day"]) == 50
    assert version_reads(seen) == []
    assert len(stamp_reads(seen)) == 2  # once per request


def test_policy_cache_is_checked_in_the_volunteer_read(app, volunteer):
    put("longtan", "caps", {"overall": {"day": 50}})
    in_request(app, lambda: volunteer_info(volunteer))
    with statements() as seen:
        cap = in_request(app, lambda: (volunteer_info(volunteer), daily_cap())[1])
    assert cap == 50
    assert len(seen) == 1 and "FROM volunteers" in seen[0]


def test_policy_cache_keeps_effective_dates_apart(app, tree):
    put("longtan", "caps", {"overall": {"day": 50}})
    put("longtan", "caps", {"overall": {"day": 20}}, effective_from=NOW + timedelta(days=10))

    def caps_over_time():
        return [
            daily_cap(as_of=when)
            for when in (LONG_AGO - timedelta(days=1), NOW, NOW + timedelta(days=12))
        ]

    assert in_request(app, caps_over_time) == [100, 50, 20]
    with statements() as seen:
        assert in_request(app, caps_over_time) == [100, 50, 20]
    assert version_reads(seen) == []


def test_a_version_stored_by_another_app_is_seen_on_the_next_request(app, tree):
    put("longtan", "caps", {"overall": {"day": 50}})
    assert in_request(app, daily_cap) == 50
    other = create_app(dict(app.config))
    try:
        in_request(
            other, lambda: put("dongcheng", "caps", {"overall": {"day": 30}}, locked=["overall"])
        )
    finally:
        with other.app_context():
            db.engine.dispose()
    assert in_request(app, daily_cap) == 30


def insert_elsewhere(district: str, version: int, day_cap: int, **columns) -> None:
    """Store a caps version at `district` through a connection of its own, as psql would."""
    district_id = district_info(district).id
    elsewhere = create_engine(db.engine.url)
    try:
        with elsewhere.begin() as connection:
            connection.execute(
                insert(PolicyVersion),
                {
                    "district_id": district_id,
                    "plugin": "caps",
                    "version": version,
                    "config": {"overall": {"day": day_cap}},
                    "locked": [],
                    "enabled": None,
                    "author": "psql",
                    "effective_from": LONG_AGO,
                    "created_at": NOW,
                    **columns,
                },
            )
    finally:
        elsewhere.dispose()


def test_a_version_inserted_by_another_connection_is_seen_on_the_next_request(app, volunteer):
    put("longtan", "caps", {"overall": {"day": 50}})
    assert in_request(app, lambda: (volunteer_info(volunteer), daily_cap())[1]) == 50
    insert_elsewhere("xizhaosi", 1, 40)
    with statements() as seen:
        assert in_request(app, lambda: (volunteer_info(volunteer), daily_cap())[1]) == 40
    # The volunteer's row told of the change: its versions were read again, no stamp alone.
    assert len(seen) == 2 and len(version_reads(seen)) == 1


def test_a_version_committed_after_a_later_id_is_seen_on_the_next_request(app, tree):
    # On PostgreSQL a write that drew its id first may commit second.
    newest = put("longtan", "caps", {"overall": {"day": 50}}).id
    insert_elsewhere("dongcheng", 1, 70, id=newest + 10)
    assert in_request(app, daily_cap) == 50
    insert_elsewhere("xizhaosi", 1, 40, id=newest + 5)
    assert in_request(app, daily_cap) == 40


def test_a_version_stored_in_this_request_is_seen_at_once(app, tree):
    def change_and_read():
        before = daily_cap()
        put("longtan", "caps", {"overall": {"day": 60}})
        return before, daily_cap()

    assert in_request(app, change_and_read) == (100, 60)
    assert in_request(app, daily_cap) == 60


def test_a_plugin_registered_since_is_in_the_next_resolution(app, tree):
    assert "recorder" not in resolve_policy("xizhaosi").configs
    with registered(plugin_manager(), recorder, "recorder"):
        assert "recorder" in resolve_policy("xizhaosi").configs
    assert "recorder" not in resolve_policy("xizhaosi").configs

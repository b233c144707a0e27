"""Recovery without a restart: bounded waits for the database, broken connections
discarded, a truthful health check, durable SQLite commits."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from points.app import create_app
from points.config import database_url
from points.database import DatabaseStalledError, is_retryable
from points.extensions import db
from points.ledger.units import alone, autocommit_connection
from tests.conftest import _config

pytest_plugins = ("tests.api_fixtures",)


def problem_503(response) -> dict:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    assert int(response.headers["Retry-After"]) >= 1
    body = response.get_json()
    assert body["status"] == 503 and body["title"] == "Database unavailable"
    return body


@contextlib.contextmanager
def app_on(url: str, **settings):
    """An app on `url` with `settings` over the test configuration, its context pushed."""
    app = create_app({**_config(url), **settings})
    with app.app_context():
        try:
            yield app
        finally:
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def pg_only(backend):
    if backend != "postgresql":
        pytest.skip("PostgreSQL timeouts")


@contextlib.contextmanager
def served(url: str, **settings):
    """An app on `url` with `settings`, its context not pushed: each request of its test
    client runs in an app context of its own, torn down at the request's end as under
    gunicorn."""
    app = create_app({**_config(url), **settings})
    try:
        yield app
    finally:
        with app.app_context():
            db.engine.dispose()


def terminate_backend(url: str, pid: int) -> None:
    """End backend `pid` from a connection of its own, as an operator or a restart does."""
    other = create_engine(database_url(url), isolation_level="AUTOCOMMIT")
    try:
        with other.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        other.dispose()


# -- liveness and readiness --------------------------------------------------------------


def test_health_live_answers_without_a_database(tmp_path):
    broken = create_app(
        {"TESTING": True, "SECRET_KEY": "x", "DATABASE_URL": f"sqlite:///{tmp_path}/no/dir/x"}
    )
    client = broken.test_client()
    assert client.get("/api/v1/health/live").get_json() == {"status": "ok"}
    problem_503(client.get("/api/v1/health/ready"))
    problem_503(client.get("/api/v1/health"))


def test_health_ready_makes_a_write_and_keeps_nothing(api, app):
    before = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    db.session.rollback()
    for path in ("health/ready", "health"):
        response = api.get(path)
        assert response.status_code == 200, response.get_json()
        assert response.get_json() == {"status": "ok", "database": "ok"}
    after = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert after == before


def test_health_ready_is_503_within_its_bound_when_writes_wait(api, app, backend):
    # Another writer holds what the check must write: it answers 503 in about 2 s, not
    # after the 30 s an SQLite writer waits or the lock waits of PostgreSQL.
    url = str(db.engine.url.render_as_string(hide_password=False))
    if backend == "sqlite":
        other = create_engine(url, isolation_level=None)
        blocker = other.raw_connection()
        blocker.driver_connection.isolation_level = None
        blocker.cursor().execute("BEGIN IMMEDIATE")
    else:
        other = create_engine(url)
        blocker = other.raw_connection()
        blocker.cursor().execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
    try:
        started = time.monotonic()
        problem_503(api.get("health/ready"))
        assert time.monotonic() - started < 4
        assert api.get("health/live").status_code == 200
    finally:
        blocker.rollback()
        blocker.close()
        other.dispose()
    assert api.get("health/ready").status_code == 200


# -- SQLite made read-only, then writable again ------------------------------------------


@contextlib.contextmanager
def read_only(path: Path):
    """Make the SQLite database at `path` unwritable for this process while the block
    runs: as root (who may write anything) by taking another user's identity, else by
    taking the write permission from its files."""
    files = [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]
    if os.geteuid() == 0:
        os.seteuid(pwd.getpwnam("nobody").pw_uid)
        try:
            yield
        finally:
            os.seteuid(0)
        return
    modes = {p: p.stat().st_mode for p in files}
    for p in files:
        p.chmod(0o444)
    try:
        yield
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


@pytest.fixture
def shared_sqlite(sqlite_template):
    """A copy of the template in a folder every user may read (as `read_only` needs)."""
    folder = Path(tempfile.mkdtemp(prefix="points-readonly-"))
    folder.chmod(0o755)
    path = folder / "points.sqlite"
    shutil.copy(sqlite_template, path)
    path.chmod(0o644)
    yield path
    shutil.rmtree(folder)


def test_sqlite_read_only_then_writable_recovers_without_a_restart(shared_sqlite):
    from points.directory import create_district, create_token

    with app_on(f"sqlite:///{shared_sqlite}") as app:
        create_district("beijing", "北京市", "city")
        _, admin = create_token("admin", "beijing", name="admin")
        client = app.test_client()
        headers = {"Authorization": f"Bearer {admin}"}
        db.session.remove()
        db.engine.dispose()  # every connection from here on opens the file anew
        # Another worker's connection keeps the write-ahead log open meanwhile, as under
        # gunicorn: a connection opened now opens read-only, and stays so.
        other_worker = sqlite3.connect(shared_sqlite)
        other_worker.execute("SELECT count(*) FROM districts").fetchone()
        with read_only(shared_sqlite):
            assert client.get("/api/v1/health/live").status_code == 200
            problem_503(client.get("/api/v1/health/ready"))
            problem_503(
                client.post(
                    "/api/v1/districts",
                    json={"code": "dongcheng", "name": "东城区", "parent": "beijing"},
                    headers=headers,
                )
            )
        # Writable again: the connections opened read-only were discarded, not kept.
        assert client.get("/api/v1/health/ready").status_code == 200
        created = client.post(
            "/api/v1/districts",
            json={"code": "dongcheng", "name": "东城区", "parent": "beijing"},
            headers=headers,
        )
        assert created.status_code == 201, created.get_json()
        other_worker.close()


# -- SQLite durability -------------------------------------------------------------------


def test_sqlite_synchronous_is_full_by_default_and_configurable(tmp_path, sqlite_template):
    path = tmp_path / "points.sqlite"
    shutil.copy(sqlite_template, path)
    with app_on(f"sqlite:///{path}"):
        assert db.session.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    with app_on(f"sqlite:///{path}", SQLITE_SYNCHRONOUS="normal"):
        assert db.session.execute(text("PRAGMA synchronous")).scalar() == 1
    with pytest.raises(ValueError, match="SQLITE_SYNCHRONOUS"):
        create_app({**_config(f"sqlite:///{path}"), "SQLITE_SYNCHRONOUS": "sometimes"})


# -- bounded waits -----------------------------------------------------------------------


def test_pool_timeout_answers_503(api, world, app):
    url = db.engine.url.render_as_string(hide_password=False)
    with served(
        url,
        DATABASE_POOL_SECONDS=0.5,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0},
    ) as small:
        client = small.test_client()
        with small.app_context():
            holder = db.engine.connect()  # the pool's only connection
        try:
            started = time.monotonic()
            problem_503(
                client.get(
                    f"/api/v1/volunteers/{world.volunteers['self']}/balance",
                    headers={"Authorization": f"Bearer {world.tokens['admin']}"},
                )
            )
            assert time.monotonic() - started < 3
        finally:
            holder.close()


def test_pg_timeouts_are_set_on_every_connection_at_connect(pg_only, app):
    url = db.engine.url.render_as_string(hide_password=False)
    settings = {
        "DATABASE_STATEMENT_SECONDS": 7,
        "DATABASE_LOCK_SECONDS": 3,
        "DATABASE_IDLE_IN_TRANSACTION_SECONDS": 42,
    }
    wanted = {
        "statement_timeout": "7s",
        "lock_timeout": "3s",
        "idle_in_transaction_session_timeout": "42s",
    }
    with app_on(url, **settings) as bounded:
        assert bounded.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]["connect_timeout"] == 5
        for name, value in wanted.items():
            assert db.session.execute(text(f"SHOW {name}")).scalar() == value
        # The kept autocommit connection of one-call writes is the pool's too.
        with autocommit_connection() as connection:
            for name, value in wanted.items():
                assert connection.execute(f"SHOW {name}").fetchone()[0] == value
            assert connection.points_reply_seconds == 15


def test_pg_a_reply_that_never_comes_is_bounded_and_its_connection_discarded(pg_only, app):
    url = db.engine.url.render_as_string(hide_password=False)
    # No server-side timeout: only the client's bound can end this wait.
    with app_on(url, DATABASE_STATEMENT_SECONDS=0, DATABASE_REPLY_SECONDS=1):
        started = time.monotonic()
        with pytest.raises(OperationalError) as raised:
            db.session.execute(text("SELECT pg_sleep(10)"))
        assert time.monotonic() - started < 3
        assert isinstance(raised.value.orig, DatabaseStalledError)
        assert raised.value.connection_invalidated
        assert not is_retryable(raised.value)  # a retry would wait as long again
        db.session.rollback()
        time.sleep(1)  # past the stall's quick-bound window
        assert db.session.execute(text("SELECT 1")).scalar() == 1
        # One-call writes on the autocommit connection: bounded too, and not retried.
        attempts = []

        def sleepy():
            from points.ledger.units import alone_connection

            attempts.append(1)
            return alone_connection().execute("SELECT pg_sleep(10)").fetchone()

        started = time.monotonic()
        with pytest.raises(OperationalError):
            alone(sleepy)
        assert time.monotonic() - started < 3
        assert attempts == [1]


def test_pg_lock_wait_answers_503_and_the_key_settles_the_write(pg_only, api, world, app):
    url = db.engine.url.render_as_string(hide_password=False)
    from points.ledger.accounts import _volunteer_account

    account_id = _volunteer_account(world.volunteers["self"]).id
    db.session.rollback()
    with served(url, DATABASE_LOCK_SECONDS=0.5) as bounded:
        client = bounded.test_client()
        headers = {
            "Authorization": f"Bearer {world.tokens['office_in']}",
            "Idempotency-Key": "lock-wait-1",
        }
        body = {"volunteer_id": world.volunteers["self"], "sku": "haircut"}
        other = create_engine(url)
        blocker = other.raw_connection()
        try:
            blocker.cursor().execute(
                "SELECT id FROM accounts WHERE id = %s FOR UPDATE", (account_id,)
            )
            started = time.monotonic()
            body_503 = problem_503(client.post("/api/v1/redemptions", json=body, headers=headers))
            assert time.monotonic() - started < 3
            assert "Idempotency-Key" in body_503["detail"]
        finally:
            blocker.rollback()
            blocker.close()
            other.dispose()
        first = client.post("/api/v1/redemptions", json=body, headers=headers)
        assert first.status_code == 201, first.get_json()
        again = client.post("/api/v1/redemptions", json=body, headers=headers)
        assert again.status_code == 201
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.get_json() == first.get_json()


# -- a connection ended during a request -------------------------------------------------


def test_pg_connection_ended_before_cleanup_is_discarded_quietly(pg_only, world, app):
    url = db.engine.url.render_as_string(hide_password=False)
    db.session.rollback()
    ended = []
    with served(url) as served_app:

        @served_app.after_request
        def terminate(response):
            # Between the read's last statement and the session's cleanup, the database
            # ends this request's connection, as a restart or pg_terminate_backend does.
            if not ended:
                pid = db.session.connection().connection.driver_connection.info.backend_pid
                terminate_backend(url, pid)
                ended.append(pid)
            return response

        client = served_app.test_client()
        path = f"/api/v1/volunteers/{world.volunteers['self']}/balance"
        headers = {"Authorization": f"Bearer {world.tokens['admin']}"}
        response = client.get(path, headers=headers)
        assert ended
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["balance"] == 1000
        # The next request gets a sound connection.
        assert client.get(path, headers=headers).status_code == 200

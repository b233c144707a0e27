"""Fixtures: an app per test on a fresh database, SQLite always, PostgreSQL when configured.

Set POINTS_TEST_DATABASE_URL (for example postgresql://postgres@127.0.0.1/test) to run
every database test on PostgreSQL too. The run connects there only to create a private
database of its own (named after the process, so that parallel runs never meet), migrates
it, empties every table before each test, and drops it at the end.
Isolation is by emptying tables rather than by a rolled-back transaction, because the
ledger's tests need real commits: concurrent connections, deferred triggers.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, make_url, text

from points.app import create_app
from points.config import database_url
from points.extensions import db

# Fixtures several modules share: the API's world of nodes and tokens, the console's staff.
pytest_plugins = ("tests.api_fixtures", "tests.office_fixtures")

PG_URL = os.environ.get("POINTS_TEST_DATABASE_URL")
BACKENDS = ["sqlite", "postgresql"]


def _config(url: str) -> dict:
    return {
        "TESTING": True,
        "DATABASE_URL": url,
        "SECRET_KEY": "test-secret",
        "PIN_HASH_METHOD": "pbkdf2:sha256:1000",
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
    }


def _migrate(url: str) -> None:
    from flask_migrate import upgrade

    app = create_app(_config(url))
    with app.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> str:
    """A migrated SQLite database file, copied for each test."""
    path = tmp_path_factory.mktemp("template") / "points.sqlite"
    _migrate(f"sqlite:///{path}")
    return str(path)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The URL of a private, migrated PostgreSQL database (skips when none is configured)."""
    if not PG_URL:
        pytest.skip("PostgreSQL not configured: set POINTS_TEST_DATABASE_URL")
    server = make_url(database_url(PG_URL))
    name = f"points_test_{os.getpid()}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = server.set(database=name).render_as_string(hide_password=False)
        _migrate(url)
        yield url
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _empty_postgres(url: str) -> None:
    engine = create_engine(database_url(url))
    try:
        with engine.begin() as connection:
            tables = connection.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'alembic_version'"
                )
            ).scalars()
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url_for_test(request, tmp_path) -> str:
    """The URL of an empty, migrated database of each backend."""
    if request.param == "sqlite":
        path = tmp_path / "points.sqlite"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_url")
    _empty_postgres(url)
    return url


@pytest.fixture
def app(database_url_for_test):
    """The app on a fresh database, with an app context pushed."""
    app = create_app(_config(database_url_for_test))
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def backend(app) -> str:
    """The database backend of this test: 'sqlite' or 'postgresql'."""
    return db.engine.dialect.name


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def tree(app):
    """Beijing > Dongcheng > Longtan street > two communities."""
    from points.directory import create_district

    create_district("beijing", "北京市", "city")
    create_district("dongcheng", "东城区", "district", parent="beijing")
    create_district("longtan", "龙潭街道", "street", parent="dongcheng")
    east = create_district("xizhaosi", "夕照寺社区", "community", parent="longtan")
    west = create_district("zuoanmen", "左安门社区", "community", parent="longtan")
    return {"xizhaosi": east.id, "zuoanmen": west.id}


@pytest.fixture
def volunteer(tree):
    """A volunteer id in xizhaosi community."""
    from points.directory import register_volunteer

    return register_volunteer("王秀英", "xizhaosi", "204857", phone="13900000001").id


@pytest.fixture
def other_volunteer(tree):
    """A second volunteer id in the same community."""
    from points.directory import register_volunteer

    return register_volunteer("李桂兰", "xizhaosi", "530917").id


@pytest.fixture
def far_volunteer(tree):
    """A volunteer id in the other community (zuoanmen)."""
    from points.directory import register_volunteer

    return register_volunteer("张建国", "zuoanmen", "111222").id


@pytest.fixture
def provider(tree):
    """A barber's provider id."""
    from points.directory import create_provider

    return create_provider("barber-wang", "王师傅便民理发", "longtan").id


@pytest.fixture(params=BACKENDS)
def scratch_url(request, tmp_path):
    """A database of its own, for a test that migrates down and up: doing that to the
    shared test database would disturb the tests after it."""
    from tests.e2e.server import prepared_database

    if request.param == "postgresql" and not PG_URL:
        pytest.skip("PostgreSQL not configured: set POINTS_TEST_DATABASE_URL")
    with prepared_database(request.param, tmp_path, "points_test_migrations") as url:
        yield url


def seed_scratch_ledger() -> tuple[int, int]:
    """In a migrated scratch database's app context: a small tree, a volunteer with 10
    points in one lot and a barber. Returns (volunteer id, provider id)."""
    from points import ledger
    from points.directory import create_district, create_provider, register_volunteer

    create_district("city", "City", "city")
    create_district("street", "Street", "street", parent="city")
    create_district("east", "East", "community", parent="street")
    volunteer = register_volunteer("王秀英", "east", "204857").id
    barber = create_provider("barber", "Barber", "street").id
    ledger.earn(volunteer, 10, actor="office", reason="巡查")
    return volunteer, barber


@pytest.fixture(params=BACKENDS)
def fresh_app(request, tmp_path):
    """A function giving a new app on an empty database: one per hypothesis example."""
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
    else:
        pg_url = request.getfixturevalue("postgres_url")
    counter = iter(range(10**6))

    @contextmanager
    def make():
        if request.param == "sqlite":
            path = tmp_path / f"example-{next(counter)}.sqlite"
            shutil.copy(template, path)
            url = f"sqlite:///{path}"
        else:
            _empty_postgres(pg_url)
            url = pg_url
        app = create_app(_config(url))
        with app.app_context():
            try:
                yield app
            finally:
                db.session.remove()
                db.engine.dispose()

    return make

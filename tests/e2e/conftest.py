"""Fixtures of the end-to-end tests: gunicorn serving a fresh database of each backend."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from points.directory import create_district, create_provider, create_token
from tests.e2e.server import Http, Server, prepared_database, seeding


@dataclass
class Live:
    """A running server: its HTTP client, database URL and the admin token."""

    http: Http
    url: str
    admin: str
    server: Server


@pytest.fixture
def workers() -> int:
    """gunicorn workers; a test module may override this fixture."""
    return 2


@pytest.fixture(params=["sqlite", "postgresql"])
def live(request, tmp_path, workers):
    """gunicorn (sync workers) on Beijing > Dongcheng > Longtan, with barber-wang."""
    if request.param == "postgresql" and not os.environ.get("POINTS_TEST_DATABASE_URL"):
        pytest.skip("PostgreSQL not configured: set POINTS_TEST_DATABASE_URL")
    with prepared_database(request.param, tmp_path, "points_e2e") as url:
        with seeding(url):
            create_district("beijing", "北京市", "city")
            create_district("dongcheng", "东城区", "district", parent="beijing")
            create_district("longtan", "龙潭街道", "street", parent="dongcheng")
            create_provider("barber-wang", "王师傅便民理发", "longtan")
            _, admin = create_token("admin", "beijing", name="e2e admin")
        server = Server(
            url,
            workers=workers,
            environment={"POINTS_API_RATE_LIMIT_PER_MINUTE": "100000"},
            log_path=tmp_path / "gunicorn.log",
        )
        with server:
            yield Live(Http(server.base), url, admin, server)

"""The app factory's error handling: what a client sees when things go wrong."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError


def test_a_lost_database_is_a_503_problem_not_a_500(app, client):
    @app.get("/test-only/database-gone")
    def database_gone():
        raise OperationalError("SELECT 1", {}, ConnectionError("server closed the connection"))

    response = client.get("/test-only/database-gone")
    assert response.status_code == 503
    assert response.content_type == "application/problem+json"
    assert response.headers["Retry-After"] == "1"
    body = response.get_json()
    assert body["title"] == "Database unavailable" and "server closed" not in str(body)


def test_an_unexpected_error_reveals_nothing(app, client):
    @app.get("/test-only/bug")
    def bug():
        raise RuntimeError("secret internal detail")

    response = client.get("/test-only/bug")
    assert response.status_code == 500
    assert "secret" not in response.get_data(as_text=True)


@pytest.mark.parametrize(("hops", "seen"), [(0, "127.0.0.1"), (1, "203.0.113.9")])
def test_the_client_address_comes_from_a_trusted_proxy_only(tmp_path, hops, seen):
    """PROXY_HOPS trusts that many proxies' X-Forwarded-For: behind nginx the public
    notices' objection limit counts each neighbour, not the proxy; with 0 a client
    cannot pick its own address by sending the header."""
    from flask import request

    from points.app import create_app

    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'proxy.sqlite'}",
            "SECRET_KEY": "x",
            "PROXY_HOPS": hops,
        }
    )
    app.add_url_rule("/who", "who", lambda: request.remote_addr)
    answer = app.test_client().get("/who", headers={"X-Forwarded-For": "203.0.113.9"})
    assert answer.get_data(as_text=True) == seen

"""The app factory's error handling: what a client sees when things go wrong."""

from __future__ import annotations

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

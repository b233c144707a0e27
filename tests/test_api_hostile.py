"""Hostile input: every bad body is a clear 4xx problem, and nothing is done on one."""

from __future__ import annotations

import pytest

pytest_plugins = ("tests.api_fixtures",)


def problem_of(response, *statuses: int) -> dict:
    assert response.status_code in statuses, (
        response.status_code,
        response.get_data(as_text=True)[:300],
    )
    assert response.content_type == "application/problem+json"
    return response.get_json()


def _raw(api, path, token, data, content_type="application/json"):
    return api.client.post(
        "/api/v1/" + path,
        data=data,
        headers={"Authorization": f"Bearer {token}"},
        content_type=content_type,
    )


@pytest.mark.parametrize(
    "data, status",
    [
        ("[" * 1000 + "]" * 1000, 422),
        ('{"volunteer_id": 1' + "0" * 4300 + "}", 422),
        ('{"volunteer_id": NaN}', 400),
        ('{"volunteer_id": Infinity}', 400),
        ('{"volunteer_id": 1e400}', 422),
        ('{"a": ', 400),
        (b'{"a": "\xff"}', 400),
    ],
)
def test_api_hostile_json_is_a_clear_problem(api, world, data, status):
    problem_of(_raw(api, "service-records", world.tokens["office_in"], data), status)

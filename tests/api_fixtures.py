"""Fixtures for the API tests: a token per role and node, volunteers with cards, a client.

Use from a test module with `pytest_plugins = ("tests.api_fixtures",)`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from points import ledger
from points.directory import create_token
from points.extensions import db
from points.models import Volunteer
from points.policy import set_policy

PINS = {"self": "204857", "peer": "530917", "far": "111222"}

# The catalog of Longtan street in the API tests: a haircut for 30 points at barber-wang.
CATALOG = {
    "items": {
        "haircut": {
            "names": {"zh-CN": "理发", "en": "haircut"},
            "cost": 30,
            "provider": "barber-wang",
        },
        "repair": {
            "names": {"zh-CN": "家电维修", "en": "appliance repair"},
            "cost": 60,
            "provider": "barber-wang",
            "stock_per_month": 1,
            "min_star": 1,
        },
    }
}


@dataclass(frozen=True)
class RawFile:
    """A body that is a file, not JSON (an import's CSV)."""

    content: bytes
    content_type: str = "text/csv"


class Api:
    """A JSON client for /api/v1 that sends a bearer token."""

    def __init__(self, client):
        self.client = client

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ):
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        url = path if path.startswith("/") else "/api/v1/" + path
        if isinstance(json, RawFile):
            kwargs |= {"data": json.content, "content_type": json.content_type}
            json = None
        return self.client.open(url, method=method, json=json, headers=headers, **kwargs)

    def get(self, path, token=None, **kwargs):
        return self.call("GET", path, token, **kwargs)

    def post(self, path, token=None, json=None, **kwargs):
        return self.call("POST", path, token, json, **kwargs)

    def put(self, path, token=None, json=None, **kwargs):
        return self.call("PUT", path, token, json, **kwargs)

    def patch(self, path, token=None, json=None, **kwargs):
        return self.call("PATCH", path, token, json, **kwargs)

    def delete(self, path, token=None, **kwargs):
        return self.call("DELETE", path, token, **kwargs)


@dataclass
class World:
    """Tokens by principal name, volunteers by part (self, peer, far), their cards."""

    tokens: dict[str, str]
    volunteers: dict[str, int]
    cards: dict[str, str]
    pins: dict[str, str] = field(default_factory=lambda: dict(PINS))
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    def key(self) -> str:
        """A fresh Idempotency-Key."""
        return f"key-{next(self.counter)}"

    @staticmethod
    def started(hours_ago: float = 2) -> str:
        """An ISO time some hours ago, for a service record."""
        return (datetime.now(UTC) - timedelta(hours=hours_ago)).isoformat()


@pytest.fixture
def api(client) -> Api:
    return Api(client)


@pytest.fixture
def world(api, tree, volunteer, other_volunteer, far_volunteer, provider) -> World:
    """Beijing > Dongcheng > Longtan > {xizhaosi, zuoanmen}, with every role at each node.

    self and peer are volunteers in xizhaosi, far is in zuoanmen; self and far have 1000
    points. Longtan's catalog is CATALOG. `session` is a kiosk session of self at the
    xizhaosi kiosk.
    """
    set_policy(
        "longtan",
        "catalog",
        CATALOG,
        author="office:test",
        effective_from=datetime.now(UTC) - timedelta(days=1),
    )
    volunteers = {"self": volunteer, "peer": other_volunteer, "far": far_volunteer}
    tokens = {}
    for name, role, district, volunteer_id in [
        ("admin", "admin", "beijing", None),
        ("office_above", "office", "longtan", None),
        ("office_in", "office", "xizhaosi", None),
        ("office_out", "office", "zuoanmen", None),
        ("auditor_in", "auditor", "xizhaosi", None),
        ("auditor_out", "auditor", "zuoanmen", None),
        ("kiosk_in", "kiosk", "xizhaosi", None),
        ("kiosk_out", "kiosk", "zuoanmen", None),
        ("volunteer_self", "volunteer", "xizhaosi", volunteer),
        ("volunteer_peer", "volunteer", "xizhaosi", other_volunteer),
        ("volunteer_far", "volunteer", "zuoanmen", far_volunteer),
    ]:
        tokens[name] = create_token(role, district, name=name, volunteer_id=volunteer_id)[1]
    cards = {
        part: db.session.scalar(select(Volunteer.card_code).where(Volunteer.id == vid))
        for part, vid in volunteers.items()
    }
    ledger.earn(volunteer, 1000, actor="office:test", reason="patrol")
    ledger.earn(far_volunteer, 1000, actor="office:test", reason="patrol")
    response = api.post(
        "kiosk/sessions", tokens["kiosk_in"], {"card_code": cards["self"], "pin": PINS["self"]}
    )
    assert response.status_code == 201, response.get_json()
    tokens["session"] = response.get_json()["token"]
    return World(tokens, volunteers, cards)

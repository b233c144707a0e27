"""What bench/import.py and bench/service.py measure on: an app on a database, the tree
(city, district, street, community), every built-in plugin with a policy at three of its
levels, and the stewards of the community."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

from flask_migrate import upgrade

from points.app import create_app
from points.directory import create_district, register_volunteer
from points.extensions import db
from points.policy import set_policy

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


class Steward(NamedTuple):
    id: int
    card_code: str


def make_app(url: str):
    return create_app(
        {"DATABASE_URL": url, "SECRET_KEY": "bench", "PIN_HASH_METHOD": "pbkdf2:sha256:1000"}
    )


def prepare(app, stewards: int, *, approval: dict[str, Any] | None = None) -> list[Steward]:
    """Migrate the empty database, make the tree, set the policies (the street's
    `approval` too, when given) and register `stewards` in the community."""
    with app.app_context():
        upgrade()
        create_district("bench-city", "北京市", "city")
        create_district("bench-district", "东城区", "district", parent="bench-city")
        create_district("bench-street", "龙潭街道", "street", parent="bench-district")
        create_district("bench-community", "夕照寺社区", "community", parent="bench-street")
        policies = [
            ("bench-city", "stars", {}, ["levels_hours"]),
            ("bench-district", "caps", {"overall": {"day": 200}}, ()),
            *([("bench-street", "approval", approval, ())] if approval is not None else []),
            ("bench-street", "steward", {"patrol": {"points_per_hour": 5}}, ()),
        ]
        for node, plugin, config, locked in policies:
            set_policy(node, plugin, config, author="bench", effective_from=LONG_AGO, locked=locked)
        registered = [
            register_volunteer(f"志愿者{i}", "bench-community", f"{100000 + i}")
            for i in range(stewards)
        ]
        done = [Steward(v.id, v.card_code) for v in registered]
        db.session.remove()
        return done

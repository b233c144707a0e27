"""The example plugin (examples/leifeng), installed as a package, is found by its entry point."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from points import ledger
from points.app import create_app
from points.extensions import db
from points.plugins import describe_plugins, plugin_manager, plugin_names
from points.policy import set_policy
from points.service import approve, record_service
from tests.conftest import _config

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "leifeng"
BEIJING = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="session")
def leifeng_site(tmp_path_factory) -> str:
    """examples/leifeng installed by pip into a private folder, offline."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        capture_output=True,
        text=True,
        cwd=build,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(target.glob("points_leifeng-*.dist-info"))
    return str(target)


@pytest.fixture
def app(leifeng_site, database_url_for_test, monkeypatch):
    """An app created with the installed example on the path."""
    monkeypatch.syspath_prepend(leifeng_site)
    app = create_app(_config(database_url_for_test))
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def test_entry_point_plugin_is_discovered(app):
    pm = plugin_manager()
    assert "leifeng" in plugin_names(pm)
    row = {r["name"]: r for r in describe_plugins(pm)}["leifeng"]
    assert row["source"] == "points-leifeng 0.1.0" and row["configurable"]
    assert "award_bonuses" in row["hooks"]


def test_entry_point_plugin_can_be_disabled(leifeng_site, monkeypatch):
    monkeypatch.syspath_prepend(leifeng_site)
    app = create_app(
        {"DATABASE_URL": "sqlite://", "SECRET_KEY": "x", "DISABLED_PLUGINS": "leifeng"}
    )
    assert "leifeng" not in plugin_names(app.extensions["points.plugins"])


def test_entry_point_plugin_command(app):
    result = app.test_cli_runner().invoke(args=["leifeng-days"])
    assert result.output.strip() == "03-05: 2x"


def last_leifeng_day() -> datetime:
    today = datetime.now(BEIJING)
    year = today.year if (today.month, today.day) > (3, 5) else today.year - 1
    return datetime(year, 3, 5, 9, tzinfo=BEIJING)


def test_double_points_on_leifeng_day(app, volunteer):
    day = last_leifeng_day()
    set_policy(
        "longtan",
        "leifeng",
        {"multiplier": 3},
        author="office:test",
        effective_from=day - timedelta(days=1),
    )
    record = record_service(volunteer, "patrol", day, 120, actor="office:test")
    record = approve(record.id, "office:test")
    assert [(a["plugin"], a["rule"], a["points"]) for a in record.awards] == [
        ("steward", "patrol-hours", 10),
        ("leifeng", "leifeng-day", 20),
    ]
    assert ledger.balance(volunteer).balance == 30
    other_day = record_service(
        volunteer, "patrol", day + timedelta(days=1), 60, actor="office:test"
    )
    assert other_day.points == 5


def test_leifeng_config_is_validated(app, tree):
    from points import errors

    with pytest.raises(errors.InvalidInputError) as raised:
        set_policy("longtan", "leifeng", {"days": ["March 5"]}, author="office:test")
    assert "config.days" in raised.value.errors

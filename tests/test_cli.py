"""The `points` commands of the ledger core: tokens, ledger maintenance, the demo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from points import ledger
from points.directory import token_digest
from points.extensions import db
from points.models import ApiToken


def test_token_create_prints_the_secret_once_and_stores_its_hash(runner, tree):
    result = runner.invoke(args=["token", "create", "--role", "office", "--district", "longtan"])
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert secret.startswith("sp_") and len(secret) > 40
    stored = db.session.scalar(select(ApiToken))
    assert stored.token_hash == token_digest(secret) and secret not in stored.token_hash
    assert (stored.role, stored.name) == ("office", "office@longtan")


def test_token_create_bad_input_is_one_line_and_nonzero(runner, tree):
    for args, message in [
        (["--role", "office", "--district", "nowhere"], "no district 'nowhere'"),
        (["--role", "volunteer", "--district", "longtan"], "needs a volunteer id"),
        (["--role", "king", "--district", "longtan"], "Invalid value for '--role'"),
    ]:
        result = runner.invoke(args=["token", "create", *args])
        assert result.exit_code != 0
        assert message in result.output
    assert db.session.scalar(select(ApiToken)) is None


def test_token_revoke(runner, tree):
    runner.invoke(args=["token", "create", "--role", "kiosk", "--district", "xizhaosi"])
    token_id = db.session.scalar(select(ApiToken.id))
    assert runner.invoke(args=["token", "revoke", str(token_id)]).exit_code == 0
    again = runner.invoke(args=["token", "revoke", str(token_id)])
    assert again.exit_code == 1 and "no active token" in again.output


def test_ledger_maintenance_commands(runner, volunteer, provider):
    past = datetime.now(UTC) - timedelta(days=1)
    ledger.earn(volunteer, 12, actor="office", reason="patrol", expires_at=past)
    ledger.hold(
        volunteer,
        2,
        provider_id=provider,
        actor="kiosk",
        reason="meal",
        expires_at=datetime.now(UTC) + timedelta(seconds=1),
    )
    result = runner.invoke(args=["ledger", "expire"])
    assert result.exit_code == 0 and "expired 10 points in 1 entries" in result.output
    import time

    time.sleep(1.1)
    assert "timed out 1 holds" in runner.invoke(args=["ledger", "time-out-holds"]).output
    assert "sealed 2 entries" in runner.invoke(args=["ledger", "seal"]).output
    assert "ledger OK" in runner.invoke(args=["ledger", "verify"]).output


def test_demo_loads_once(runner):
    result = runner.invoke(args=["demo", "load"])
    assert result.exit_code == 0, result.output
    assert "Demo loaded" in result.output
    assert "ledger OK" in runner.invoke(args=["ledger", "verify"]).output
    again = runner.invoke(args=["demo", "load"])
    assert again.exit_code == 1 and "not empty" in again.output


def test_db_upgrade_is_safe_to_run_twice(runner):
    for _ in range(2):
        result = runner.invoke(args=["db", "upgrade"])
        assert result.exit_code == 0, result.output


def test_commands_on_an_unmigrated_database_say_what_to_do(tmp_path):
    from points.app import create_app

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/empty.sqlite", "SECRET_KEY": "x"})
    for args in (["ledger", "verify"], ["policy", "show", "longtan"], ["token", "revoke", "1"]):
        result = app.test_cli_runner().invoke(args=args)
        assert result.exit_code == 1
        assert result.output.strip() == (
            "Error: the database has no tables: run `points db upgrade`, "
            "or check POINTS_DATABASE_URL"
        )


def test_version_is_steward_points():
    from click.testing import CliRunner

    from points import __version__
    from points.cli import main

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"points, version {__version__}"

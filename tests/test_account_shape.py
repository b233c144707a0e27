"""An account's shape (migration 0007): what an account is (its kind, status, owner, and
whether it may hold points) is refused by the same rules under the same names on both
databases, CHECK constraints on SQLite and the `accounts_shape` trigger on PostgreSQL,
which a balance update does not fire."""

from __future__ import annotations

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from points import ledger
from points.app import create_app
from points.extensions import db
from points.models import Account
from tests.conftest import _config, seed_scratch_ledger

SHAPE_CHECKS = (
    "ck_accounts_kind",
    "ck_accounts_status",
    "ck_accounts_volunteer_owner",
    "ck_accounts_provider_owner",
    "ck_accounts_held_only_volunteer",
)


@pytest.fixture
def accounts(app, volunteer, provider):
    """Ids of a volunteer's, a provider's and an issuance account, and their node."""
    ledger.earn(volunteer, 10, actor="office", reason="巡查")
    ledger.redeem(volunteer, 3, provider_id=provider, actor="kiosk", reason="理发")
    rows = db.session.execute(select(Account.kind, Account.id, Account.district_id)).all()
    found = {kind: account_id for kind, account_id, _ in rows}
    found["district"] = next(d for kind, _, d in rows if kind == "volunteer")
    found["volunteer_id"] = volunteer
    db.session.remove()
    return found


# Each breaks one rule of an account's shape: (the rule, the statement).
BROKEN = {
    "an unknown kind": (
        "ck_accounts_kind",
        "INSERT INTO accounts (district_id, kind, held, status, created_at) "
        "VALUES (:district, 'savings', 0, 'open', now())",
    ),
    "an unknown status": (
        "ck_accounts_status",
        "UPDATE accounts SET status = 'frozen' WHERE id = :volunteer",
    ),
    "a volunteer account without its volunteer": (
        "ck_accounts_volunteer_owner",
        "UPDATE accounts SET volunteer_id = NULL WHERE id = :volunteer",
    ),
    "a system account with a volunteer": (
        "ck_accounts_volunteer_owner",
        "UPDATE accounts SET volunteer_id = :volunteer_id WHERE id = :issuance",
    ),
    "a provider account without its provider": (
        "ck_accounts_provider_owner",
        "UPDATE accounts SET provider_id = NULL WHERE id = :provider",
    ),
    "points held on a provider account": (
        "ck_accounts_held_only_volunteer",
        "UPDATE accounts SET held = 1 WHERE id = :provider",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_account_shape_is_refused_by_name(app, accounts, case):
    rule, statement = BROKEN[case]
    before = _accounts()
    refused = pytest.raises(IntegrityError, match=rule)
    with db.engine.connect() as connection, refused, connection.begin():
        connection.execute(text(statement.replace("now()", _now(connection))), accounts)
    assert _accounts() == before


def test_a_whole_account_passes(app, accounts):
    """What the rules allow still goes through: closing and reopening an account, and
    holding points on a volunteer's."""
    with db.engine.begin() as connection:
        connection.execute(
            text("UPDATE accounts SET status = 'closed' WHERE id = :provider"), accounts
        )
        connection.execute(text("UPDATE accounts SET held = 2 WHERE id = :volunteer"), accounts)
    statuses = db.session.execute(select(Account.id, Account.status, Account.held)).all()
    db.session.rollback()
    assert (accounts["provider"], "closed", 0) in statuses
    assert (accounts["volunteer"], "open", 2) in statuses


def test_postgresql_checks_the_shape_only_when_its_columns_change(app, backend):
    if backend != "postgresql":
        pytest.skip("SQLite keeps CHECK constraints (migration 0007)")
    columns = db.session.scalars(
        text(
            "SELECT a.attname FROM pg_trigger t JOIN pg_attribute a "
            "ON a.attrelid = t.tgrelid AND a.attnum = ANY (t.tgattr::int2[]) "
            "WHERE t.tgname = 'accounts_shape' ORDER BY a.attname"
        )
    ).all()
    checks = db.session.scalars(
        text(
            "SELECT conname FROM pg_constraint WHERE contype = 'c' "
            "AND conrelid = 'accounts'::regclass ORDER BY conname"
        )
    ).all()
    db.session.rollback()
    # A balance update, what every earn and redemption does, fires nothing.
    assert columns == ["held", "kind", "provider_id", "status", "volunteer_id"]
    assert checks == ["ck_accounts_cached_balance", "ck_accounts_non_negative"]


def test_the_migration_goes_down_and_up_over_accounts(scratch_url):
    app = create_app(_config(scratch_url))
    with app.app_context():
        upgrade()
        volunteer, barber = seed_scratch_ledger()
        ledger.redeem(volunteer, 4, provider_id=barber, actor="kiosk", reason="理发")
        db.session.remove()

        downgrade(revision="0006")
        before = _shape_rules()
        upgrade()
        after = _shape_rules()
        ledger.redeem(volunteer, 1, provider_id=barber, actor="kiosk", reason="理发")
        ledger.seal()
        from points.verify import verify

        report = verify()
        assert report.ok, report.problems
        assert ledger.balance(volunteer).balance == 5
        db.session.remove()
        db.engine.dispose()
    assert set(SHAPE_CHECKS) <= before["checks"]
    if scratch_url.startswith("postgresql"):
        assert not before["trigger"] and after["trigger"]
        assert not set(SHAPE_CHECKS) & after["checks"]
    else:
        assert set(SHAPE_CHECKS) <= after["checks"]


def _shape_rules() -> dict:
    connection = db.session.connection()
    if connection.dialect.name == "sqlite":
        table = connection.execute(
            text("SELECT sql FROM sqlite_master WHERE name = 'accounts'")
        ).scalar()
        checks = {name for name in SHAPE_CHECKS if f"CONSTRAINT {name} CHECK" in table}
        trigger = False
    else:
        checks = set(
            connection.execute(
                text(
                    "SELECT conname FROM pg_constraint WHERE contype = 'c' "
                    "AND conrelid = 'accounts'::regclass"
                )
            ).scalars()
        )
        trigger = bool(
            connection.execute(
                text("SELECT count(*) FROM pg_trigger WHERE tgname = 'accounts_shape'")
            ).scalar()
        )
    db.session.rollback()
    return {"checks": checks, "trigger": trigger}


def _accounts() -> list:
    rows = db.session.execute(text("SELECT * FROM accounts ORDER BY id")).all()
    db.session.rollback()
    return [tuple(row) for row in rows]


def _now(connection) -> str:
    return "now()" if connection.dialect.name == "postgresql" else "CURRENT_TIMESTAMP"


def test_verify_finds_an_account_that_got_past_the_rules(app, accounts):
    """A replica-mode session skips the trigger (SQLite: checks switched off); `verify`
    still names the account."""
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("SET LOCAL session_replication_role = replica"))
    else:
        db.session.execute(text("PRAGMA ignore_check_constraints = ON"))
    db.session.execute(text("UPDATE accounts SET status = 'frozen' WHERE id = :provider"), accounts)
    db.session.commit()
    if db.engine.dialect.name == "sqlite":
        db.session.execute(text("PRAGMA ignore_check_constraints = OFF"))
    from points.verify import verify

    problems = verify().problems
    assert [p.check for p in problems] == ["accounts"]
    assert problems[0].rows[0][:3] == (accounts["provider"], "provider", "frozen")

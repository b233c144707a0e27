"""Keys that name their district (migration 0006): on PostgreSQL the database itself
refuses a posting, lot, lot use, hold or queued entry outside its entry's or account's
district; enumerations are checked against one constant; and the migration goes down
and up again over a ledger with rows in it, on both databases."""

from __future__ import annotations

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from points import ledger
from points.app import create_app
from points.extensions import db
from points.models import Account, Hold, Lot
from points.verify import verify
from tests.conftest import _config, seed_scratch_ledger


@pytest.fixture
def postgres(backend):
    if backend != "postgresql":
        pytest.skip("SQLite keeps a key per column (migration 0006)")


@pytest.fixture
def ledger_rows(app, volunteer, far_volunteer, provider):
    """An earn and a redemption in xizhaosi; the account of a volunteer in zuoanmen."""
    ledger.earn(volunteer, 10, actor="office", reason="巡查")
    redeemed = ledger.redeem(volunteer, 3, provider_id=provider, actor="kiosk", reason="理发")
    ledger.seal()  # out of the sealer's queue, where a second row would be a duplicate
    rows = {
        "entry": redeemed.id,
        "district": redeemed.district_id,
        "far_account": ledger.balance(far_volunteer).account_id,
        "far_district": db.session.scalar(
            select(Account.district_id).where(Account.volunteer_id == far_volunteer)
        ),
        "account": ledger.balance(volunteer).account_id,
        "hold": db.session.scalar(select(Hold.id)),
        "lot": db.session.scalar(select(Lot.id)),
    }
    db.session.remove()
    return rows


# Each writes one row that names a row of another district, as a bug or a hand-made
# correction might. Values: the ledger_rows above.
OUTSIDE = {
    "posting on an account of another district": (
        "INSERT INTO postings (entry_id, district_id, account_id, amount) "
        "VALUES (:entry, :district, :far_account, 1)"
    ),
    "posting naming its entry under another district": (
        "INSERT INTO postings (entry_id, district_id, account_id, amount) "
        "VALUES (:entry, :far_district, :far_account, 1)"
    ),
    "lot of an entry in another district": (
        "INSERT INTO lots (district_id, account_id, entry_id, amount, remaining, created_at) "
        "VALUES (:far_district, :far_account, :entry, 1, 1, now())"
    ),
    "lot on an account of another district": (
        "INSERT INTO lots (district_id, account_id, entry_id, amount, remaining, created_at) "
        "VALUES (:district, :far_account, :entry, 1, 1, now())"
    ),
    "lot use of an entry in another district": (
        "INSERT INTO lot_uses (district_id, lot_id, entry_id, amount) "
        "VALUES (:far_district, :lot, :entry, 1)"
    ),
    "hold on an account of another district": (
        "INSERT INTO holds (district_id, account_id, destination_id, amount, status, "
        "expires_at, actor, reason, created_at) VALUES (:district, :far_account, "
        ":far_account, 1, 'pending', now(), 'test', 'test', now())"
    ),
    "hold paying an account of another district": (
        "INSERT INTO holds (district_id, account_id, destination_id, amount, status, "
        "expires_at, actor, reason, created_at) VALUES (:district, :account, "
        ":far_account, 1, 'pending', now(), 'test', 'test', now())"
    ),
    "queued entry under another district": (
        "INSERT INTO unsealed_entries (entry_id, district_id) VALUES (:entry, :far_district)"
    ),
}


@pytest.mark.parametrize("case", sorted(OUTSIDE))
def test_the_database_refuses_a_row_outside_its_district(app, postgres, ledger_rows, case):
    counts = _row_counts()
    refused = pytest.raises(IntegrityError, match="foreign key")
    with db.engine.connect() as connection, refused, connection.begin():
        connection.execute(text(OUTSIDE[case]), ledger_rows)
    assert _row_counts() == counts
    ledger.seal()
    assert verify().ok


def test_enumerations_are_one_constant_and_still_refuse_other_values(app, postgres, ledger_rows):
    definitions = db.session.execute(
        text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE contype = 'c' AND conname IN ('ck_entries_kind', 'ck_holds_status')"
        )
    ).all()
    assert dict(definitions) == {
        "ck_entries_kind": "CHECK (((kind)::text = ANY "
        "('{earn,redeem,transfer,expire,reversal,settle}'::text[])))",
        "ck_holds_status": "CHECK (((status)::text = ANY "
        "('{pending,posted,voided,timed_out}'::text[])))",
    }
    db.session.rollback()
    refused = pytest.raises(IntegrityError, match="ck_holds_status")
    with db.engine.connect() as connection, refused, connection.begin():
        connection.execute(text("UPDATE holds SET status = 'lost' WHERE id = :hold"), ledger_rows)


def test_redemptions_use_the_generic_plan_of_their_lot_query(app, postgres):
    """A later CREATE OR REPLACE of points_redeem would drop the setting silently."""
    settings = db.session.scalar(
        text("SELECT proconfig FROM pg_proc WHERE proname = 'points_redeem'")
    )
    assert settings == ["plan_cache_mode=force_generic_plan"]


def _row_counts() -> dict[str, int]:
    tables = ("postings", "lots", "lot_uses", "holds", "unsealed_entries")
    counts = {t: db.session.scalar(text(f"SELECT count(*) FROM {t}")) for t in tables}
    db.session.rollback()
    return counts


# -- the migration, down and up over a ledger with rows in it ---------------------------


def test_the_migration_goes_down_and_up_over_a_ledger(scratch_url):
    app = create_app(_config(scratch_url))
    with app.app_context():
        upgrade()
        volunteer, barber = seed_scratch_ledger()
        ledger.redeem(volunteer, 4, provider_id=barber, actor="kiosk", reason="理发")
        db.session.remove()

        downgrade(revision="0005")
        before = _schema_facts()
        upgrade()
        after = _schema_facts()
        ledger.redeem(volunteer, 1, provider_id=barber, actor="kiosk", reason="理发")
        ledger.seal()
        report = verify()
        assert report.ok, report.problems
        assert ledger.balance(volunteer).balance == 5
        db.session.remove()
        db.engine.dispose()
    assert "uq_entries_district_id_id" not in before["indexes"]
    assert {"uq_entries_district_id_id", "uq_accounts_district_id_id"} <= after["indexes"]
    if scratch_url.startswith("postgresql"):
        assert before["posting keys"] == [
            "FOREIGN KEY (account_id) REFERENCES accounts(id)",
            "FOREIGN KEY (district_id) REFERENCES districts(id)",
            "FOREIGN KEY (entry_id) REFERENCES entries(id)",
        ]
        assert after["posting keys"] == [
            "FOREIGN KEY (account_id, district_id) REFERENCES accounts(id, district_id)",
            "FOREIGN KEY (entry_id, district_id) REFERENCES entries(id, district_id)",
            "FOREIGN KEY (lot_id) REFERENCES lots(id)",  # from 0008
        ]
        assert "ARRAY[" in before["kind check"] and "ARRAY[" not in after["kind check"]


def test_the_models_and_the_migrations_agree(scratch_url):
    """An autogenerate on a migrated database finds nothing to do, on either database
    (on SQLite, ledger keys aside: migrations/env.py)."""
    from flask_migrate import check

    app = create_app(_config(scratch_url))
    with app.app_context():
        upgrade()
        check()  # raises when the models and the schema differ
        db.engine.dispose()


def _schema_facts() -> dict:
    connection = db.session.connection()
    facts = {"indexes": set()}
    if connection.dialect.name == "sqlite":
        rows = connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'index'"))
        facts["indexes"] = set(rows.scalars())
    else:
        rows = connection.execute(text("SELECT indexname FROM pg_indexes"))
        facts["indexes"] = set(rows.scalars())
        facts["posting keys"] = sorted(
            connection.execute(
                text(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE contype = 'f' AND conrelid = 'postings'::regclass"
                )
            ).scalars()
        )
        facts["kind check"] = connection.execute(
            text(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conname = 'ck_entries_kind'"
            )
        ).scalar()
    db.session.rollback()
    return facts

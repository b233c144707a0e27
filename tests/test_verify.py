"""`verify` and `points ledger verify`: a clean ledger passes, each kind of tampering is caught."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from points import ledger
from points.extensions import db
from points.verify import verify


@pytest.fixture
def busy_ledger(volunteer, other_volunteer, far_volunteer, provider):
    """A sealed ledger with every kind of entry."""
    first = ledger.earn(volunteer, 100, actor="office", reason="patrol")
    ledger.earn(other_volunteer, 50, actor="office", reason="visit")
    ledger.redeem(volunteer, 30, provider_id=provider, actor="kiosk", reason="haircut")
    ledger.hold(volunteer, 10, provider_id=provider, actor="kiosk", reason="meal")
    ledger.transfer(volunteer, far_volunteer, 5, actor="v", reason="family")
    ledger.transfer(other_volunteer, volunteer, 5, actor="v", reason="family")
    correction = ledger.earn(other_volunteer, 3, actor="office", reason="typo")
    ledger.reverse(correction.id, actor="office", reason="logged twice")
    ledger.add_service_minutes(volunteer, 120, actor="office", reason="patrol")
    ledger.seal()
    return first


def tamper(statement: str) -> None:
    """Run raw SQL as someone with database access would, past our triggers."""
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("SET LOCAL session_replication_role = replica"))
        db.session.execute(text(statement))
    else:
        for table in ("entries", "postings", "lot_uses", "seals", "service_minutes"):
            for action in ("update", "delete"):
                db.session.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_{action}"))
        db.session.execute(text(statement))
    db.session.commit()


def checks_failing() -> set[str]:
    return {problem.check for problem in verify().problems}


def test_verify_passes_a_clean_ledger(busy_ledger):
    report = verify()
    assert report.ok, report.problems
    assert report.summary().startswith("ledger OK")
    assert report.counts["awaiting seal"] == 0


def test_verify_counts_unsealed_entries_without_failing(volunteer):
    ledger.earn(volunteer, 5, actor="office", reason="fix")
    report = verify()
    assert report.ok and report.counts["awaiting seal"] == 1


def test_verify_catches_an_edited_posting(busy_ledger):
    tamper(
        f"UPDATE postings SET amount = amount + 7 WHERE entry_id = {busy_ledger.id} AND amount > 0"
    )
    assert {"zero-sum", "cached-balance", "hash"} <= checks_failing()


def test_verify_catches_a_balanced_edit_through_the_hash(busy_ledger):
    # Moving 7 points between the entry's own postings keeps every sum right.
    tamper(
        f"UPDATE postings SET amount = amount + 7 WHERE entry_id = {busy_ledger.id} AND amount > 0"
    )
    tamper(
        f"UPDATE postings SET amount = amount - 7 WHERE entry_id = {busy_ledger.id} AND amount < 0"
    )
    tamper(
        "UPDATE accounts SET balance = balance + 7 WHERE id = "
        f"(SELECT account_id FROM postings WHERE entry_id = {busy_ledger.id} AND amount > 0)"
    )
    tamper(
        "UPDATE lots SET amount = amount + 7, remaining = remaining + 7 "
        f"WHERE entry_id = {busy_ledger.id}"
    )
    # The postings moved, so the volunteer's ledger hour differs too.
    assert checks_failing() == {"hash", "rollups"}


# The ledger hours summed over their stripes (a rebuild writes stripe 0 only).
HOURS = (
    "SELECT district_id, hour, kind, activity, plugin, rule, provider_id, sku, "
    "sum(credits), sum(debits), sum(postings) AS postings FROM ledger_hours "
    "GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8"
)


def test_verify_catches_a_wrong_rollup_and_the_command_rebuilds_it(busy_ledger, runner):
    before = db.session.execute(text(HOURS)).all()
    assert before and sum(row.postings for row in before) == 9  # volunteer postings
    tamper("UPDATE ledger_hours SET credits = credits + 1 WHERE kind = 'earn'")
    assert checks_failing() == {"rollups"}
    result = runner.invoke(args=["ledger", "verify"])
    assert result.exit_code == 1 and "ledger hours" in result.output
    tamper("DELETE FROM ledger_hours WHERE kind = 'transfer'")
    result = runner.invoke(args=["ledger", "rollups"])
    assert result.exit_code == 0 and "rebuilt " in result.output and "ledger hours" in result.output
    assert db.session.execute(text(HOURS)).all() == before
    assert checks_failing() == set()


def test_verify_catches_a_deleted_posting(busy_ledger):
    tamper(f"DELETE FROM postings WHERE entry_id = {busy_ledger.id} AND amount < 0")
    assert {"zero-sum", "hash"} <= checks_failing()


def test_verify_catches_a_wrong_cached_balance(busy_ledger, volunteer):
    tamper(f"UPDATE accounts SET balance = balance + 1 WHERE volunteer_id = {volunteer}")
    assert {"cached-balance", "lots"} <= checks_failing()


def test_verify_catches_a_broken_chain(busy_ledger):
    # Change the first hex digit, whatever it was (a fixed 'f' would miss 1 time in 16).
    tamper(
        "UPDATE seals SET hash = CASE WHEN substr(hash, 1, 1) = 'f' THEN '0' ELSE 'f' END "
        "|| substr(hash, 2) WHERE seq = 2"
    )
    assert checks_failing() == {"chain"}


def test_verify_catches_a_deleted_entry(busy_ledger):
    # Remove the newest entry with everything that points at it: only the chain notices.
    last = db.session.scalar(text("SELECT max(id) FROM entries WHERE kind = 'transfer'"))
    for statement in (
        f"DELETE FROM lot_uses WHERE entry_id = {last}",
        f"DELETE FROM lots WHERE entry_id = {last}",
        f"DELETE FROM postings WHERE entry_id = {last}",
        f"DELETE FROM seals WHERE entry_id = {last}",
        f"DELETE FROM entries WHERE id = {last}",
    ):
        tamper(statement)
    assert "chain" in checks_failing()


def test_verify_command_exits_nonzero_naming_rows(busy_ledger, runner):
    result = runner.invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output
    assert "ledger OK" in result.output
    tamper(
        f"UPDATE postings SET amount = amount + 7 WHERE entry_id = {busy_ledger.id} AND amount > 0"
    )
    result = runner.invoke(args=["ledger", "verify"])
    assert result.exit_code == 1
    assert "ledger BROKEN" in result.output
    assert f"({busy_ledger.id}," in result.output

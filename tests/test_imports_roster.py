"""A roster import: stewards registered with their paper reference, a PIN or a one-time
activation code for the card sheet; bad rows refused by line; a second run registers
nobody twice; the card sheet carries the codes and the codes work once."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from points import auth, errors, imports
from points.extensions import db
from points.imports import roster
from points.models import AuditEvent, ImportKey, Volunteer
from points.policy import district_info

HEADER = "编号,姓名,电话,社区,卡号,密码"


def _run(content: bytes, *, dry_run=False, node="longtan"):
    where = district_info(node)

    def opener():
        return io.BytesIO(content)

    registered: list = []
    run = imports.run_file(
        where,
        "roster",
        "roster.csv",
        opener,
        actor="office",
        dry_run=dry_run,
        registered=registered,
    )
    return run, registered


def _csv(*rows: str) -> bytes:
    return ("\n".join([HEADER, *rows]) + "\n").encode()


ROSTER = _csv(
    "XZS-001,王秀英,13900000101,xizhaosi,,",
    "XZS-002,李桂兰,,xizhaosi,,204857",
    "ZAM-001,张建国,13900000103,zuoanmen,,",
    "XZS-003,,13900000104,xizhaosi,,",  # no name
    "XZS-004,赵大爷,13900000105,nowhere,,",  # no such node
    "XZS-005,钱阿姨,,xizhaosi,,111111",  # a trivial PIN
    "XZS-001,王秀英,13900000101,xizhaosi,,",  # the same reference again
)


def _volunteers() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(Volunteer))


def test_a_dry_run_registers_nobody(tree):
    run, registered = _run(ROSTER, dry_run=True)
    assert (run.rows_total, run.posted, run.refused) == (7, 3, 4)
    assert _volunteers() == 0
    assert all(not r.code for r in registered)


def test_a_roster_registers_stewards_with_codes_or_pins_once(tree):
    run, registered = _run(ROSTER)
    assert (run.posted, run.refused, run.duplicates) == (3, 4, 0)
    problems = {p.line: p.reason for p in imports.problems_of(run.id)}
    assert sorted(problems) == [5, 6, 7, 8]
    assert "name" in problems[5] and "nowhere" in problems[6]
    assert "PIN" in problems[7] and "line 2" in problems[8]
    by_reference = {v.external_id: v for v in db.session.scalars(select(Volunteer)).all()}
    assert set(by_reference) == {"XZS-001", "XZS-002", "ZAM-001"}
    wang = by_reference["XZS-001"]
    assert wang.district_id == district_info("xizhaosi").id and wang.phone == "13900000101"
    assert wang.activation_hash is not None and wang.pin_hash == "!"
    codes = {r.volunteer_id: r.code for r in registered}
    assert codes[by_reference["XZS-002"].id] is None  # the roster gave a PIN
    assert by_reference["XZS-002"].activation_hash is None
    # The PIN works; the code leads to choosing a PIN, once.
    assert auth.verify_card(None, by_reference["XZS-002"].card_code, "204857")
    with pytest.raises(errors.ActivationRequiredError):
        auth.verify_card(None, wang.card_code, codes[wang.id])
    auth.activate(None, wang.card_code, codes[wang.id], "530917")
    assert auth.verify_card(None, wang.card_code, "530917").volunteer_id == wang.id
    # Each registration is audited and keyed; a second run registers nobody.
    assert db.session.scalar(select(func.count()).select_from(ImportKey)) == 3
    registrations = db.session.scalar(
        select(func.count()).where(AuditEvent.action == "volunteer.register")
    )
    assert registrations == 3
    again, none = _run(ROSTER)
    assert (again.posted, again.duplicates, none) == (0, 3, [])
    assert _volunteers() == 3


def test_the_card_sheet_carries_each_code(tree):
    from points.web.cards import activation_sheet

    _run_result, registered = _run(_csv("XZS-010,孙奶奶,,xizhaosi,,"))
    (steward,) = registered
    sheet = activation_sheet("xizhaosi", {steward.volunteer_id: steward.code})
    grouped = " ".join(steward.code[i : i + 4] for i in range(0, 12, 4))
    assert grouped in sheet and "孙奶奶" in sheet


def test_a_large_roster_hashes_in_a_pool(tree, monkeypatch):
    monkeypatch.setattr(roster, "POOL_FROM", 4)
    rows = [f"XZS-{n:04d},志愿者{n},,xizhaosi,," for n in range(12)]
    run, registered = _run(_csv(*rows))
    assert run.posted == 12 and len({r.code for r in registered}) == 12
    volunteer = db.session.get(Volunteer, registered[0].volunteer_id)
    with pytest.raises(errors.ActivationRequiredError):
        auth.verify_card(None, volunteer.card_code, registered[0].code)


def test_the_cli_writes_the_card_sheet(runner, tree, tmp_path):
    path = tmp_path / "roster.csv"
    path.write_bytes(_csv("XZS-020,周大姐,,xizhaosi,,"))
    done = runner.invoke(args=["import", "roster", str(path), "--node", "longtan"])
    assert done.exit_code == 0, done.output
    assert "posted 1" in done.output
    sheet = (tmp_path / "roster.cards.html").read_text(encoding="utf-8")
    assert "周大姐" in sheet

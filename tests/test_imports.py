"""Imports of paper records and opening balances: a dry run writes nothing, a file posts
once however often it runs, any order of one file gives the same points, imported
points carry the service date and expire from it, bad rows are refused by line with
nothing of them written; and the CLI's progress, refused-rows file and one-line errors."""

from __future__ import annotations

import io
import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from points import errors, imports, ledger
from points.directory import register_volunteer
from points.extensions import db
from points.models import (
    AuditEvent,
    Entry,
    ImportKey,
    ImportProblem,
    ImportRun,
    Lot,
    Posting,
    ServiceMinutes,
    ServiceRecord,
    Volunteer,
)
from points.policy import district_info, set_policy
from points.verify import verify

ZONE = ZoneInfo("Asia/Shanghai")
LAST_YEAR = date.today().year - 1


def _csv(*rows: str, header: str = "volunteer,kind,date,minutes,details.households") -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def _run(
    content: bytes, *, kind="records", dry_run=False, node="longtan", mapping=None, name="f.csv"
):
    where = district_info(node)

    def opener():
        return io.BytesIO(content)

    return imports.run_file(where, kind, name, opener, mapping, actor="office", dry_run=dry_run)


def _card(volunteer_id: int) -> str:
    return db.session.get(Volunteer, volunteer_id).card_code


def _counts() -> dict[str, int]:
    return {
        model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
        for model in (Entry, Posting, Lot, ServiceRecord, ServiceMinutes, ImportKey)
    }


def test_a_dry_run_writes_nothing_and_says_what_the_real_run_posts(volunteer):
    card = _card(volunteer)
    content = _csv(
        f"{card},patrol,{LAST_YEAR}-03-14,60,",
        f"{card},visit,{LAST_YEAR}-03-15,30,3",
        f"{card},巡查,{LAST_YEAR}-03-16,60,",  # an unknown kind until mapped
        f"NOBODY,patrol,{LAST_YEAR}-03-16,60,",
    )
    before = _counts()
    dry = _run(content, dry_run=True)
    assert _counts() == before
    assert (dry.rows_total, dry.posted, dry.refused) == (4, 2, 2)
    assert dry.status == "done" and dry.dry_run
    real = _run(content)
    assert (real.posted, real.points, real.minutes) == (dry.posted, dry.points, dry.minutes)
    assert real.points > 0 and real.minutes == 90
    assert not verify().problems
    actions = db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.target_id == str(real.id))
    ).all()
    assert sorted(actions) == ["import.finish", "import.start"]


def test_the_same_file_twice_posts_once_and_a_reference_column_keys_rows(volunteer):
    card = _card(volunteer)
    content = _csv(f"{card},patrol,{LAST_YEAR}-03-14,60,", f"{card},patrol,{LAST_YEAR}-03-15,60,")
    first = _run(content)
    again = _run(content)
    assert (first.posted, again.posted, again.duplicates) == (2, 0, 2)
    # With a reference column, a row is known by it in the node, whatever file holds it.
    header = "volunteer,kind,date,minutes,reference"
    _run(_csv(f"{card},patrol,{LAST_YEAR}-04-01,30,B-17", header=header))
    moved = _run(_csv("", f"{card},patrol,{LAST_YEAR}-04-01,30,B-17", header=header))
    assert (moved.posted, moved.duplicates) == (0, 1)
    assert db.session.scalar(select(func.count()).select_from(ServiceRecord)) == 3


def test_imported_points_carry_the_service_date_and_expire_from_it(volunteer):
    # The policy in force on the service date applies: set it from before then.
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    set_policy(
        "longtan", "expiry", {"rule": "months", "months": 12}, author="t", effective_from=long_ago
    )
    card = _card(volunteer)
    _run(_csv(f"{card},patrol,{LAST_YEAR}-03-14,60,"))
    record = db.session.scalars(select(ServiceRecord)).one()
    served = datetime(LAST_YEAR, 3, 14, 12, tzinfo=ZONE)
    assert record.started_at == served and record.status == "approved"
    assert "imported paper record" in record.decision_reason
    entry = db.session.scalars(select(Entry).where(Entry.kind == "earn")).one()
    assert entry.effective_at == served and entry.service_record_id == record.id
    lot = db.session.scalars(select(Lot)).one()
    assert lot.expires_at == datetime(LAST_YEAR + 1, 3, 14, 12, tzinfo=ZONE)
    minutes = db.session.scalars(select(ServiceMinutes)).one()
    assert minutes.created_at == served and minutes.minutes == 60
    assert db.session.get(Volunteer, volunteer).service_minutes == 60


def test_old_service_expires_at_the_next_expiry_run_and_recent_service_stays(volunteer):
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    set_policy(
        "longtan", "expiry", {"rule": "months", "months": 12}, author="t", effective_from=long_ago
    )
    card = _card(volunteer)
    today = datetime.now(ZONE).date()
    recent, old = today - timedelta(days=30), today - timedelta(days=3 * 365)
    _run(_csv(f"{card},patrol,{recent},60,", f"{card},patrol,{old},120,"))
    assert ledger.balance(volunteer).available == 15
    ledger.expire_lots()
    assert ledger.balance(volunteer).available == 5


def test_bad_rows_are_refused_by_line_and_nothing_of_them_is_written(volunteer):
    card = _card(volunteer)
    content = _csv(
        f"{card},patrol,{LAST_YEAR}-03-14,60,",
        f"{card},patrol,not a date,60,",
        f"{card},patrol,2999-01-01,60,",
        f"{card},visit,{LAST_YEAR}-03-14,30,",  # households missing
        f"{card},patrol,{LAST_YEAR}-03-14,9999,",
        f"{card},checkin,{LAST_YEAR}-03-20,,",
        f"{card},checkin,{LAST_YEAR}-03-20,,",  # a second check-in that day
    )
    run = _run(content)
    assert (run.posted, run.refused) == (2, 5)
    problems = {p.line: p.reason for p in imports.problems_of(run.id)}
    assert sorted(problems) == [3, 4, 5, 6, 8]
    assert "not a date" in problems[3]
    assert "future" in problems[4]
    assert "households" in problems[5]
    assert "minutes" in problems[6].lower()
    assert "Already a checkin" in problems[8]
    stored = db.session.scalars(select(ImportProblem).where(ImportProblem.line == 3)).one()
    assert stored.row["date"] == "not a date"
    assert db.session.scalar(select(func.count()).select_from(ServiceRecord)) == 2


def test_a_mapping_names_columns_and_values_as_on_paper(volunteer):
    card = _card(volunteer)
    content = _csv(f"{card},巡街,{LAST_YEAR}年3月14日,60", header="卡号,服务类型,服务日期,时长")
    with pytest.raises(errors.InvalidInputError) as missing:
        _run(content)
    assert "kind" in missing.value.errors["columns"][0]
    mapping = imports.check_mapping(
        "records",
        {"volunteer": "卡号", "kind": "服务类型", "date": "服务日期", "minutes": "时长"},
        {"kind": {"巡街": "patrol"}},
    )
    imports.save_mapping(district_info("longtan").id, mapping, actor="office")
    saved = imports.saved_mapping(district_info("longtan").id, "records")
    run = _run(content, mapping=saved)
    assert (run.posted, run.minutes) == (1, 60)
    with pytest.raises(errors.InvalidInputError):
        imports.check_mapping("records", {"nonsense": "x"}, {})


def test_volunteers_are_found_by_card_phone_or_paper_reference(volunteer, far_volunteer):
    db.session.get(Volunteer, far_volunteer).external_id = "ZAM-0042"
    db.session.commit()
    content = _csv(
        f"{_card(volunteer).lower()},patrol,{LAST_YEAR}-03-14,60,",
        f"139-0000-0001,patrol,{LAST_YEAR}-03-15,60,",
        f"ZAM-0042,patrol,{LAST_YEAR}-03-16,60,",
    )
    run = _run(content)
    assert run.posted == 3, imports.problems_of(run.id)
    # A node sees only its own: the street's other community is outside xizhaosi.
    outside = _run(_csv(f"ZAM-0042,patrol,{LAST_YEAR}-03-17,60,"), node="xizhaosi")
    assert outside.refused == 1


def test_opening_balances_post_one_earn_each_dated_the_book(volunteer):
    card = _card(volunteer)
    content = _csv(
        f"{card},120,{LAST_YEAR}-12-31,存折-001", header="volunteer,points,date,reference"
    )
    dry = _run(content, kind="balances", dry_run=True)
    assert (dry.posted, dry.points) == (1, 120)
    assert db.session.scalar(select(func.count()).select_from(Entry)) == 0
    _run(content, kind="balances")
    again = _run(content, kind="balances")
    assert again.duplicates == 1
    entry = db.session.scalars(select(Entry)).one()
    assert (entry.plugin, entry.rule) == ("import", "opening_balance")
    assert entry.effective_at == datetime(LAST_YEAR, 12, 31, 12, tzinfo=ZONE)
    assert "存折-001" in entry.reason
    assert not verify().problems


def test_xlsx_and_gb18030_files_read_like_utf8(volunteer):
    openpyxl = pytest.importorskip("openpyxl")
    card = _card(volunteer)
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["volunteer", "kind", "date", "minutes"])
    sheet.append([card, "每日巡", datetime(LAST_YEAR, 5, 1), 45])
    out = io.BytesIO()
    book.save(out)
    assert _run(out.getvalue(), name="book.xlsx").posted == 1
    gbk = f"志愿者,类型,日期,分钟\n{card},每日巡,{LAST_YEAR}-05-02,45\n".encode("gb18030")
    assert _run(gbk).posted == 1
    with pytest.raises(errors.InvalidInputError):
        _run(b"")
    with pytest.raises(errors.InvalidInputError):
        _run(b"PK\x03\x04 not really a workbook", name="x.xlsx")


ROWS = [
    ("patrol", 1, 120),
    ("patrol", 1, 120),
    ("patrol", 1, 60),
    ("patrol", 2, 90),
    ("visit", 2, 30),
    ("patrol", 3, 180),
    ("patrol", 3, 120),
]


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(order=st.permutations(list(range(len(ROWS)))))
def test_any_order_of_one_file_gives_the_same_points(tree, order):
    """A daily cap that binds: the points each record gets depend on the ones before it
    in service order, never on the order of the file."""
    set_policy(
        "longtan",
        "caps",
        {"overall": {"day": 12}},
        author="t",
        effective_from=datetime(2020, 1, 1, tzinfo=UTC),
    )
    who = register_volunteer("顺序", "xizhaosi", "204857").id
    card = _card(who)
    lines = [
        f"{card},{kind},{LAST_YEAR}-06-0{day} 0{n}:00,{minutes},{'2' if kind == 'visit' else ''}"
        for n, (kind, day, minutes) in enumerate(ROWS)
    ]
    run = _run(_csv(*(lines[i] for i in order)))
    assert run.posted == len(ROWS)
    got = dict(
        db.session.execute(
            select(ServiceRecord.started_at, ServiceRecord.points).where(
                ServiceRecord.volunteer_id == who
            )
        ).all()
    )
    # Compared with the same rows in file order, for a second volunteer.
    reference = register_volunteer("参照", "xizhaosi", "204857").id
    ref_card = _card(reference)
    _run(_csv(*(line.replace(card, ref_card) for line in lines)))
    expected = dict(
        db.session.execute(
            select(ServiceRecord.started_at, ServiceRecord.points).where(
                ServiceRecord.volunteer_id == reference
            )
        ).all()
    )
    assert got == expected
    by_day: dict[date, int] = {}
    for started, points in got.items():
        day = started.astimezone(ZONE).date()
        by_day[day] = by_day.get(day, 0) + points
    # Day 1 serves 300 minutes of patrol (25 points) under a cap of 12: it binds.
    assert by_day[date(LAST_YEAR, 6, 1)] == 12 and max(by_day.values()) <= 12


def test_a_large_shuffled_file_posts_every_row_once(tree):
    who = [register_volunteer(f"v{i}", "xizhaosi", "204857").id for i in range(5)]
    cards = [_card(v) for v in who]
    start = datetime(LAST_YEAR, 1, 1, 8, tzinfo=UTC)
    lines = [
        f"{cards[n % 5]},patrol,{(start + timedelta(hours=n)).strftime('%Y-%m-%d %H:%M')},30,"
        for n in range(1200)
    ]
    random.Random(3).shuffle(lines)
    run = _run(_csv(*lines))
    assert (run.posted, run.refused) == (1200, 0)
    assert db.session.scalar(select(func.sum(Volunteer.service_minutes))) == 1200 * 30
    assert not verify().problems


def test_the_cli_imports_with_a_dry_run_and_writes_the_refused_rows(runner, volunteer, tmp_path):
    card = _card(volunteer)
    path = tmp_path / "book.csv"
    path.write_bytes(_csv(f"{card},patrol,{LAST_YEAR}-03-14,60,", f"{card},patrol,bad,60,"))
    dry = runner.invoke(args=["import", "records", str(path), "--node", "longtan", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would post 1" in dry.output and "1 refused" in dry.output
    assert db.session.scalar(select(func.count()).select_from(ServiceRecord)) == 0
    refused = (tmp_path / "book.refused.csv").read_text(encoding="utf-8-sig")
    assert refused.splitlines()[0].startswith("行 / line,原因 / reason,volunteer")
    assert refused.splitlines()[1].startswith("3,")
    done = runner.invoke(args=["import", "records", str(path), "--node", "longtan"])
    assert done.exit_code == 0 and "posted 1" in done.output
    missing = runner.invoke(args=["import", "records", str(path), "--node", "nowhere"])
    assert missing.exit_code == 1 and "Error:" in missing.output
    bad = tmp_path / "bad.csv"
    bad.write_text("who,when\nx,y\n", encoding="utf-8")
    lacking = runner.invoke(args=["import", "records", str(bad), "--node", "longtan"])
    assert lacking.exit_code == 1 and "No column for volunteer" in lacking.output


def test_two_runs_of_one_file_at_once_post_each_row_once(app, tree):
    from tests.test_concurrency import run_together

    who = [register_volunteer(f"v{i}", "xizhaosi", "204857").id for i in range(3)]
    cards = [_card(v) for v in who]
    content = _csv(
        *(f"{cards[n % 3]},patrol,{LAST_YEAR}-02-{1 + n // 3:02d} 08:00,30," for n in range(60))
    )
    runs = run_together(app, 2, lambda i: _run(content).id)
    assert all(isinstance(run, int) for run in runs), runs
    assert db.session.scalar(select(func.count()).select_from(ServiceRecord)) == 60
    assert db.session.scalar(select(func.count()).select_from(ImportKey)) == 60
    assert db.session.scalar(select(func.sum(Volunteer.service_minutes))) == 60 * 30
    assert not verify().problems


def test_bytes_that_are_no_text_are_a_file_error(volunteer):
    with pytest.raises(errors.InvalidInputError) as refused:
        _run(b"\x00\x01\x02\xff\xfe\x9e\x80 not text")
    assert "file" in refused.value.errors


def test_the_same_rows_saved_again_post_nothing_and_twin_rows_post_twice(volunteer):
    card = _card(volunteer)
    rows = [f"{card},visit,{LAST_YEAR}-03-14,30,2", f"{card},visit,{LAST_YEAR}-03-14,30,2"]
    first = _run(_csv(*rows))
    assert first.posted == 2  # two visits that day: two rows, two records
    # Saved again by a spreadsheet (CRLF, another order, a row fixed below): nothing new.
    resaved = _csv(f"{card},patrol,{LAST_YEAR}-03-15,60,", *rows).replace(b"\n", b"\r\n")
    again = _run(resaved)
    assert (again.posted, again.duplicates) == (1, 2)
    assert db.session.scalar(select(func.count()).select_from(ServiceRecord)) == 3


def test_a_reference_is_the_volunteers_and_repeating_it_in_a_file_is_refused(
    volunteer, other_volunteer
):
    header = "volunteer,kind,date,minutes,reference"
    mine, theirs = _card(volunteer), _card(other_volunteer)
    content = _csv(
        f"{mine},patrol,{LAST_YEAR}-03-14,30,1",
        f"{theirs},patrol,{LAST_YEAR}-03-14,30,1",  # each steward's book numbers from 1
        f"{mine},patrol,{LAST_YEAR}-03-15,30,1",  # the same book line twice: refused
        header=header,
    )
    dry = _run(content, dry_run=True)
    real = _run(content)
    assert (dry.posted, dry.refused) == (real.posted, real.refused) == (2, 1)
    (problem,) = imports.problems_of(real.id)
    assert problem.line == 4 and "line 2" in problem.reason
    balances = _csv(
        f"{mine},100,{LAST_YEAR}-12-31,B-1",
        f"{theirs},100,{LAST_YEAR}-12-31,B-1",
        f"{mine},50,{LAST_YEAR}-12-31,B-1",
        header="volunteer,points,date,reference",
    )
    dry = _run(balances, kind="balances", dry_run=True)
    real = _run(balances, kind="balances")
    assert (dry.posted, dry.points, dry.refused) == (real.posted, real.points, real.refused)
    assert (real.posted, real.points, real.refused) == (2, 200, 1)


def test_a_balances_file_unreadable_further_down_posts_nothing(volunteer):
    card = _card(volunteer)
    good = [f"{card},10,{LAST_YEAR}-03-14,B-{i}" for i in range(3)]
    huge = f'{card},10,{LAST_YEAR}-03-14,"' + "x" * 200_000 + '"'
    content = _csv(*good, huge, header="volunteer,points,date,reference")
    with pytest.raises(errors.InvalidInputError):
        _run(content, kind="balances")
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Entry)) == 0
    assert db.session.scalars(select(ImportRun.status)).all() == ["failed"]


def _xlsx_with(sheet_xml: bytes) -> bytes:
    import zipfile

    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.active.append(["volunteer", "kind", "date", "minutes"])
    made = io.BytesIO()
    book.save(made)
    source = zipfile.ZipFile(io.BytesIO(made.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = sheet_xml
            target.writestr(item, data)
    return out.getvalue()


@pytest.mark.parametrize("sheet", [b"<worksheet><sheetData><row", b"not xml at all", b""])
def test_a_broken_workbook_is_a_file_error(tree, sheet):
    with pytest.raises(errors.InvalidInputError) as refused:
        _run(_xlsx_with(sheet), name="book.xlsx")
    assert "file" in refused.value.errors

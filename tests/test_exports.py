"""Exports over the API and the console: re-read, they equal the database; times in the
node's zone; auditors get phones masked and no card or voucher codes; formulas defused;
siblings kept out; bad requests answered with field messages; every export audited."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import openpyxl
from sqlalchemy import func, select

from points import directory, service
from points.extensions import db
from points.models import AuditEvent, District, Posting, ServiceRecord, Volunteer
from tests.office_fixtures import sign_in
from tests.test_api_service_records_list import _record


def _csv(response) -> list[list[str]]:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    text = response.get_data().decode("utf-8")
    assert text.startswith("\ufeff")  # Excel reads the Chinese headers right
    return list(csv.reader(io.StringIO(text[1:])))


def _xlsx(response) -> list[tuple]:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    book = openpyxl.load_workbook(io.BytesIO(response.get_data()), read_only=True)
    return list(book.active.iter_rows(values_only=True))


def _subtree(code: str) -> list[int]:
    path = db.session.scalar(select(District.path).where(District.code == code))
    return list(db.session.scalars(select(District.id).where(District.path.startswith(path))))


def test_records_as_csv_equal_the_database(api, world):
    made = [_record(world, "self", 30 + 6 * n) for n in range(3)]
    service.reject(made[0], actor="office:test", reason="=SUM(A1:A9) 重复")
    rows = _csv(api.get("exports/records?format=csv", world.tokens["office_in"]))
    header, body = rows[0], rows[1:]
    assert header[0] == "记录号 / record" and "(Asia/Shanghai)" in header[5]
    stored = db.session.execute(
        select(ServiceRecord.id, ServiceRecord.status, ServiceRecord.points)
        .where(ServiceRecord.district_id.in_(_subtree("xizhaosi")))
        .order_by(ServiceRecord.id)
    ).all()
    assert [(int(r[0]), r[7], int(r[8])) for r in body] == [tuple(s) for s in stored]
    rejected = next(r for r in body if int(r[0]) == made[0])
    assert rejected[13] == "'=SUM(A1:A9) 重复"  # a formula is text, not run
    started = service.get_record(made[1]).started_at.replace(tzinfo=UTC)
    local = started.astimezone(directory_zone()).strftime("%Y-%m-%d %H:%M:%S")
    assert next(r for r in body if int(r[0]) == made[1])[5] == local


def directory_zone():
    from zoneinfo import ZoneInfo

    return ZoneInfo("Asia/Shanghai")


def test_entries_as_xlsx_balance_and_equal_the_postings(api, world):
    _record(world, "self", 30)
    rows = _xlsx(api.get("exports/entries?format=xlsx", world.tokens["office_above"]))
    header, body = rows[0], rows[1:]
    assert header[7] == "积分 / points"
    postings = db.session.execute(
        select(func.count(), func.sum(Posting.amount)).where(
            Posting.district_id.in_(_subtree("longtan"))
        )
    ).one()
    assert len(body) == postings[0]
    assert sum(row[7] for row in body) == postings[1] == 0  # double entry
    assert isinstance(body[0][1], datetime)


def test_a_period_keeps_to_its_column(api, world):
    made = [_record(world, "self", 30 + 24 * n) for n in range(3)]  # 30 h, 54 h, 78 h ago
    since = quote((datetime.now(UTC) - timedelta(hours=60)).isoformat())
    until = quote((datetime.now(UTC) - timedelta(hours=40)).isoformat())
    rows = _csv(api.get(f"exports/records?since={since}&until={until}", world.tokens["office_in"]))
    assert [int(r[0]) for r in rows[1:]] == [made[1]]


def test_auditors_get_phones_masked_and_no_codes(api, world):
    db.session.execute(
        Volunteer.__table__.update()
        .where(Volunteer.id == world.volunteers["self"])
        .values(phone="13912345678")
    )
    db.session.commit()
    office = _csv(api.get("exports/volunteers", world.tokens["office_in"]))
    auditor = _csv(api.get("exports/volunteers", world.tokens["auditor_in"]))
    assert "卡号 / card code" in office[0] and "卡号 / card code" not in auditor[0]
    assert any("13912345678" in row for row in office)
    assert not any("13912345678" in cell for row in auditor for cell in row)
    assert any("139****5678" in row for row in auditor)
    assert world.cards["self"] not in str(auditor)


def test_every_export_is_audited(api, world):
    before = db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "export.download")
    )
    _csv(api.get("exports/audit", world.tokens["auditor_in"]))
    after = db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "export.download")
    )
    assert after == before + 1


def test_bad_requests_and_other_nodes(api, world):
    office = world.tokens["office_in"]
    assert api.get("exports/passwords", office).status_code == 404
    for query, field in (
        ("format=pdf", "format"),
        ("since=2026-01-01T00:00:00", "since"),
        ("since=2026-02-01T00:00:00%2B08:00&until=2026-01-01T00:00:00%2B08:00", "until"),
    ):
        response = api.get(f"exports/records?{query}", office)
        assert response.status_code == 422, query
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert field in response.get_json()["errors"], (query, response.get_json())
    assert api.get("exports/records?district=zuoanmen", office).status_code == 403
    assert api.get("exports/records?district=nowhere", office).status_code == 404
    assert api.get("exports/records", world.tokens["volunteer_self"]).status_code == 403
    assert api.get("exports/records", world.tokens["kiosk_in"]).status_code == 403


def test_the_console_downloads_what_the_form_says(client, accounts):
    _record(accounts, "self", 30)
    assert sign_in(client, "xizhaosi").status_code == 302
    page = client.get("/office/exports")
    assert page.status_code == 200 and 'name="dataset"' in page.text
    rows = _csv(
        client.get("/office/exports?download=1&dataset=records&district=xizhaosi&format=csv")
    )
    assert len(rows) == 2
    book = client.get("/office/exports?download=1&dataset=volunteers&format=xlsx")
    assert len(_xlsx(book)) == 3  # the header, self and peer
    refused = client.get("/office/exports?download=1&dataset=records&since=someday")
    assert refused.status_code == 422 and "日期" in refused.text
    sibling = client.get("/office/exports?download=1&dataset=records&district=zuoanmen")
    assert sibling.status_code == 422
    assert directory.district_by_code("zuoanmen")  # still there, nothing read

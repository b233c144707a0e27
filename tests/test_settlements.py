"""Provider settlement: a provider's fulfilled vouchers of a period, the money owed where
items carry a price, and settling: the points leave the provider's accounts for the
nodes' settled accounts, once, whatever is asked twice or at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from points import errors, ledger, redemptions, settlements
from points.extensions import db
from points.models import Account, AuditEvent, Posting, Redemption
from points.policy import set_policy
from points.verify import verify
from tests.api_fixtures import CATALOG

pytest_plugins = ("tests.api_fixtures",)


def _priced_catalog() -> None:
    catalog = {"items": {**CATALOG["items"]}}
    catalog["items"]["haircut"] = {**CATALOG["items"]["haircut"], "unit_price_fen": 1500}
    set_policy(
        "longtan",
        "catalog",
        catalog,
        author="office:test",
        effective_from=datetime.now(UTC) - timedelta(days=1),
    )


def _fulfilled(volunteer: int, sku: str = "haircut") -> str:
    made = redemptions.create_redemption(volunteer, sku, actor="kiosk:test")
    redemptions.fulfil_redemption(made.id, actor="provider:test")
    return made.voucher_code


def _balance(kind: str) -> int:
    return int(
        db.session.scalar(
            select(func.coalesce(func.sum(Posting.amount), 0))
            .join(Account, Account.id == Posting.account_id)
            .where(Account.kind == kind)
        )
    )


def _period():
    now = datetime.now(UTC)
    return now - timedelta(days=1), now + timedelta(hours=1)


def test_statement_and_settling_once(world):
    _priced_catalog()
    me, far = world.volunteers["self"], world.volunteers["far"]
    codes = [_fulfilled(me), _fulfilled(me), _fulfilled(far)]
    redemptions.create_redemption(me, "haircut", actor="kiosk:test")  # held: not settled
    start, end = _period()
    found = settlements.statement("barber-wang", "longtan", start, end)
    assert [line.voucher_code for line in found.lines] == codes
    assert (found.vouchers, found.points, found.amount_fen, found.unpriced) == (3, 90, 4500, 0)
    assert found.unpaid_points == 90
    assert settlements.money(found.amount_fen) == "45.00"
    # A community's statement covers only its own volunteers' vouchers.
    assert settlements.statement("barber-wang", "xizhaosi", start, end).vouchers == 2

    made, created = settlements.settle("barber-wang", "longtan", start, end)
    assert created and (made.vouchers, made.points, made.amount_fen) == (3, 90, 4500)
    assert _balance("provider") == 0 and _balance("settled") == 90
    again, created_again = settlements.settle("barber-wang", "longtan", start, end)
    assert not created_again and again.id == made.id
    assert _balance("settled") == 90
    after = settlements.statement("barber-wang", "longtan", start, end)
    assert after.unpaid_points == 0 and not after.to_settle
    assert [s.id for s in after.settlements] == [made.id]
    # Another period with nothing in it, and an entry of a settlement is not reversed.
    with pytest.raises(errors.ConflictError):
        settlements.settle("barber-wang", "longtan", start - timedelta(days=9), start)
    settle_entry = db.session.scalar(select(func.max(Posting.entry_id)))
    with pytest.raises(errors.ConflictError):
        ledger.reverse(settle_entry, actor="office:test", reason="oops")
    assert (
        db.session.scalar(select(func.count()).where(AuditEvent.action == "settlement.create")) == 1
    )
    assert verify().ok


def test_a_voucher_fulfilled_later_is_settled_by_the_next_settlement(world):
    me = world.volunteers["self"]
    _fulfilled(me)
    start, end = _period()
    first, _ = settlements.settle("barber-wang", "xizhaosi", start, end)
    _fulfilled(me)
    second, created = settlements.settle("barber-wang", "xizhaosi", start, end)
    assert created and second.id != first.id and second.vouchers == 1
    assert second.unpriced == 1 and second.amount_fen == 0  # the test catalog has no price
    assert _balance("provider") == 0 and _balance("settled") == 60


def test_bad_input_is_refused(world):
    start, end = _period()
    with pytest.raises(errors.NotFoundError):
        settlements.statement("nobody", "longtan", start, end)
    with pytest.raises(errors.InvalidInputError):
        settlements.statement("barber-wang", "longtan", end, start)
    with pytest.raises(errors.ConflictError):
        settlements.settle("barber-wang", "longtan", start, end)


def test_offices_settling_at_once_settle_each_voucher_once(app, world):
    from tests.test_concurrency import run_together

    me, far = world.volunteers["self"], world.volunteers["far"]
    for _ in range(3):
        _fulfilled(me)
    _fulfilled(far)
    start, end = _period()
    # Longtan's office and xizhaosi's at once, eight times over: overlapping reaches.
    results = run_together(
        app,
        8,
        lambda i: settlements.settle("barber-wang", "longtan" if i % 2 else "xizhaosi", start, end),
    )
    made = [r for r in results if isinstance(r, tuple) and r[1]]
    assert all(isinstance(r, tuple | errors.ConflictError) for r in results), results
    assert sum(settlement.vouchers for settlement, _ in made) == 4
    assert _balance("provider") == 0 and _balance("settled") == 120
    assert verify().ok


def test_the_api_statement_downloads_and_settling(api, world):
    import io

    from openpyxl import load_workbook

    _priced_catalog()
    office = world.tokens["office_above"]
    code = _fulfilled(world.volunteers["self"])
    start, end = _period()
    period = {"district": "longtan", "since": start.isoformat(), "until": end.isoformat()}
    query = "&".join(f"{k}={v.replace('+', '%2B')}" for k, v in period.items())
    body = api.get(f"providers/barber-wang/statement?{query}", office).get_json()
    assert body["vouchers"] == 1 and body["amount_fen"] == 1500
    assert body["lines"][0]["voucher_code"] == code and body["to_settle"]["points"] == 30
    csv_text = api.get(f"providers/barber-wang/statement?{query}&format=csv", office)
    assert csv_text.mimetype == "text/csv" and code in csv_text.get_data(as_text=True)
    assert "15.00" in csv_text.get_data(as_text=True)
    xlsx = api.get(f"providers/barber-wang/statement?{query}&format=xlsx", office)
    book = load_workbook(io.BytesIO(xlsx.get_data()), read_only=True)
    assert [row[0] for row in book["Vouchers"].iter_rows(min_row=3, values_only=True)] == [code]
    first = api.post("providers/barber-wang/settlements", office, period)
    assert first.status_code == 201 and first.get_json()["amount_fen"] == 1500
    again = api.post("providers/barber-wang/settlements", office, period)
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    assert api.post("providers/nobody/settlements", office, period).status_code == 404
    auditor = api.get(f"providers/barber-wang/statement?{query}", world.tokens["auditor_in"])
    assert auditor.status_code == 403  # an auditor of xizhaosi does not reach longtan
    seen = api.get(
        f"providers/barber-wang/statement?{query.replace('longtan', 'xizhaosi')}",
        world.tokens["auditor_in"],
    ).get_json()
    assert seen["lines"][0]["voucher_code"] == "******" + code[-4:]
    bad = api.post("providers/barber-wang/settlements", office, {"district": "longtan"})
    assert bad.status_code == 422 and "month" in bad.get_json()["errors"]


def test_the_console_statement_and_settle_button(app, client, world):
    from flask import g

    from points import staff
    from tests.office_fixtures import PASSWORD, post, sign_in

    _priced_catalog()
    staff.create_staff("longtan", "王芳", "office", "longtan", PASSWORD)
    staff.create_staff("shenji", "孙审计", "auditor", "longtan", PASSWORD)
    code = _fulfilled(world.volunteers["self"])
    assert sign_in(client, "longtan").status_code == 302
    page = client.get("/office/providers/barber-wang/statement?district=longtan")
    assert page.status_code == 200 and code in page.text and "15.00" in page.text
    download = client.get("/office/providers/barber-wang/statement?district=longtan&format=csv")
    assert download.status_code == 200 and code in download.get_data(as_text=True)
    month = page.text.split('name="month" value="')[1].split('"')[0]
    settled = post(
        client,
        "/office/providers/barber-wang/settle",
        {"district": "longtan", "month": month},
        page="/office/providers/barber-wang/statement",
    )
    assert settled.status_code == 302 and "settled=" in settled.headers["Location"]
    after = client.get(settled.headers["Location"])
    assert 'data-figure="to_settle">0<' in after.text and 'role="status"' in after.text
    again = post(
        client,
        "/office/providers/barber-wang/settle",
        {"district": "longtan", "month": "2020-01"},
        page="/office/providers/barber-wang/statement",
    )
    assert again.status_code == 409
    assert client.get("/office/providers/barber-wang/statement?month=2026-13").status_code == 422
    g.pop("csrf_token", None)
    auditor = app.test_client()
    assert sign_in(auditor, "shenji").status_code == 302
    seen = auditor.get("/office/providers/barber-wang/statement?district=longtan")
    assert seen.status_code == 200 and code not in seen.text and code[-4:] in seen.text
    refused = post(
        auditor,
        "/office/providers/barber-wang/settle",
        {"district": "longtan", "month": month},
        page="/office/providers/barber-wang/statement",
    )
    assert refused.status_code == 403


def test_a_refunded_voucher_is_not_owed_and_a_settled_one_is_not_refunded(world):
    me = world.volunteers["self"]
    made = redemptions.create_redemption(me, "haircut", actor="kiosk:test")
    done = redemptions.fulfil_redemption(made.id, actor="provider:test")
    entry = db.session.scalar(select(Redemption.entry_id).where(Redemption.id == done.id))
    ledger.reverse(entry, actor="office:test", reason="haircut not given after all")
    start, end = _period()
    assert settlements.statement("barber-wang", "longtan", start, end).vouchers == 0
    with pytest.raises(errors.ConflictError):
        settlements.settle("barber-wang", "longtan", start, end)
    _fulfilled(me)
    settlements.settle("barber-wang", "longtan", start, end)
    settled_entry = db.session.scalar(
        select(Redemption.entry_id).where(Redemption.settlement_id.is_not(None))
    )
    with pytest.raises(errors.ConflictError):
        ledger.reverse(settled_entry, actor="office:test", reason="too late")
    assert _balance("provider") == 0 and verify().ok

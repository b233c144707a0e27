"""The office console through the test client: staff sign-in, lockout and session rules,
each screen, auditors who change nothing, and offices that reach only their nodes."""

from __future__ import annotations

import re

from sqlalchemy import select

from points import staff
from points.extensions import db
from points.models import AuditEvent, Volunteer
from tests.office_fixtures import csrf, post, sign_in


def test_sign_in_sets_a_private_cookie_and_a_new_session(client, accounts):
    before = csrf(client.get("/office/sign-in"))
    response = sign_in(client, "xizhaosi", next_url="/office/volunteers")
    assert response.status_code == 302 and response.headers["Location"] == "/office/volunteers"
    assert "HttpOnly" in response.headers["Set-Cookie"]
    assert "SameSite=Lax" in response.headers["Set-Cookie"]
    assert csrf(client.get("/office/volunteers")) != before


def test_a_page_without_a_session_sends_to_sign_in(client, accounts):
    response = client.get("/office/volunteers?q=王")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/office/sign-in?next=")


def test_wrong_passwords_show_the_form_again_then_lock(client, accounts):
    for _ in range(4):
        response = sign_in(client, "xizhaosi", "wrong-password-1")
        assert response.status_code == 422
        assert "Wrong username or password" in response.get_data(
            as_text=True
        ) or "用户名或密码" in (response.get_data(as_text=True))
    locked = sign_in(client, "xizhaosi", "wrong-password-1")
    assert locked.status_code == 422
    assert sign_in(client, "xizhaosi").status_code == 422  # locked: even the right one
    failures = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "staff.sign_in_failed")
    ).all()
    assert len(failures) == 6


def test_a_form_without_csrf_is_refused(office):
    response = office.post("/office/volunteers/new", data={"name": "x"})
    assert response.status_code == 400


def test_sign_out_revokes_the_session(office):
    assert post(office, "/office/sign-out").status_code == 302
    assert office.get("/office").status_code == 302


def test_a_reset_password_must_be_changed_first(client, accounts):
    account = staff.staff_info(
        db.session.scalar(select(staff.Staff.id).where(staff.Staff.username == "xizhaosi"))
    )
    temporary = staff.reset_password(account.id)
    response = sign_in(client, "xizhaosi", temporary)
    assert response.headers["Location"] == "/office/password"
    assert client.get("/office/volunteers").headers["Location"] == "/office/password"
    mismatch = post(
        client,
        "/office/password",
        {"old_password": temporary, "new_password": "a-new-long-phrase", "confirm_password": "x"},
        page="/office/password",
    )
    assert mismatch.status_code == 422
    done = post(
        client,
        "/office/password",
        {
            "old_password": temporary,
            "new_password": "a-new-long-phrase",
            "confirm_password": "a-new-long-phrase",
        },
        page="/office/password",
    )
    assert done.status_code == 302
    assert client.get("/office/volunteers").status_code == 200


def test_today_counts_what_waits(office, accounts):
    from points import service

    service.record_service(
        accounts.volunteers["self"],
        "patrol",
        __import__("datetime").datetime.fromisoformat(accounts.started(60)),
        300,
        actor="office:test",
    )
    response = office.get("/office")
    assert response.status_code == 200
    figures = re.findall(r"<dd>(?:<a [^>]*>)?(\d+)", response.get_data(as_text=True))
    assert figures[:4] == ["1", "0", "0", "0"]


def test_today_charts_the_same_months_as_the_reports(office, accounts):
    from datetime import datetime

    from points import service

    record = service.record_service(
        accounts.volunteers["self"],
        "patrol",
        datetime.fromisoformat(accounts.started(60)),
        300,
        actor="office:test",
    )
    service.approve(record.id, actor="office:test")

    def cells(page: str, tag: str) -> dict[tuple[str, str], str]:
        pattern = tag + r' data-series="(\w+)" data-month="([\d-]+)">([\d.]+)<'
        return {(series, month): value for series, month, value in re.findall(pattern, page)}

    today = office.get("/office").get_data(as_text=True)
    report = office.get("/office/reports").get_data(as_text=True)
    table = cells(today, '<td class="number"')
    assert len(table) == 12 * 5 and table == cells(report, '<td class="number"')
    assert sum(float(value) for (series, _), value in table.items() if series == "issued") > 0
    bars = re.findall(r'data-month="([\d-]+)" data-value="([\d.]+)"', today)
    assert len(bars) == 12 * 5
    assert 'data-series="issued_by_kind"' in today and 'data-kind="patrol"' in today


def test_register_shows_the_drawn_pin_once_and_the_card(office, accounts):
    response = post(
        office,
        "/office/volunteers/new",
        {"name": "赵志强", "phone": "13811112222", "district": "xizhaosi", "pin": ""},
        page="/office/volunteers/new",
    )
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    pin = re.search(r"data-pin>(\d{6})<", text).group(1)
    code = re.search(r"data-card-code>([0-9A-Z]{10})<", text).group(1)
    volunteer = db.session.scalar(select(Volunteer).where(Volunteer.card_code == code))
    assert volunteer.name == "赵志强" and pin not in volunteer.pin_hash
    card = office.get(f"/office/volunteers/{volunteer.id}/card")
    assert card.status_code == 200 and code in card.get_data(as_text=True)


def test_register_with_bad_input_gets_the_form_back(office):
    response = post(
        office,
        "/office/volunteers/new",
        {"name": "", "district": "zuoanmen", "pin": "123456"},
        page="/office/volunteers/new",
    )
    assert response.status_code == 422
    assert "error-summary" in response.get_data(as_text=True)


def test_search_finds_by_name_start_and_card(office, accounts):
    page = office.get("/office/volunteers?q=李").get_data(as_text=True)
    assert "李桂兰" in page and "王秀英" not in page
    page = office.get(f"/office/volunteers?q={accounts.cards['self']}").get_data(as_text=True)
    assert "王秀英" in page


def test_volunteer_page_pin_reset_unlock_reissue_and_edit(office, accounts):
    peer = accounts.volunteers["peer"]
    show = office.get(f"/office/volunteers/{peer}")
    assert show.status_code == 200 and "李桂兰" in show.get_data(as_text=True)
    reset = post(office, f"/office/volunteers/{peer}/pin-reset", page=f"/office/volunteers/{peer}")
    assert re.search(r"data-pin>(\d{6})<", reset.get_data(as_text=True))
    reissued = post(
        office, f"/office/volunteers/{peer}/reissue-card", page=f"/office/volunteers/{peer}"
    )
    code = re.search(r"data-card-code>([0-9A-Z]{10})<", reissued.get_data(as_text=True)).group(1)
    assert code != accounts.cards["peer"]
    edited = post(
        office,
        f"/office/volunteers/{peer}/edit",
        {"name": "李桂芳", "phone": "13700000009"},
        page=f"/office/volunteers/{peer}/edit",
    )
    assert edited.status_code == 302
    suspended = post(
        office,
        f"/office/volunteers/{peer}/status",
        {"status": "suspended", "reason": "搬家"},
        page=f"/office/volunteers/{peer}",
    )
    assert suspended.status_code == 302
    actions = db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.target_id == str(peer)).order_by(AuditEvent.id)
    ).all()
    assert actions[-4:] == [
        "volunteer.pin_reset",
        "volunteer.reissue_card",
        "volunteer.edit",
        "volunteer.suspend",
    ]
    actor = db.session.scalar(select(AuditEvent.actor).order_by(AuditEvent.id.desc()))
    assert actor.startswith("staff:")


def test_a_correction_from_the_history(office, accounts):
    from points import ledger

    entry = ledger.earn(accounts.volunteers["self"], 7, actor="office:test", reason="巡查")
    self_id = accounts.volunteers["self"]
    form = office.get(f"/office/volunteers/{self_id}/entries/{entry.id}/reverse")
    assert form.status_code == 200
    missing = post(
        office, f"/office/volunteers/{self_id}/entries/{entry.id}/reverse", {"reason": ""}
    )
    assert missing.status_code == 422
    done = post(
        office, f"/office/volunteers/{self_id}/entries/{entry.id}/reverse", {"reason": "记重了"}
    )
    assert done.status_code == 302
    assert ledger.balance(self_id).balance == 1000
    again = post(
        office, f"/office/volunteers/{self_id}/entries/{entry.id}/reverse", {"reason": "again"}
    )
    assert again.status_code == 422


def test_an_office_cannot_reach_a_sibling_community(office, accounts):
    far = accounts.volunteers["far"]
    assert office.get(f"/office/volunteers/{far}").status_code == 403
    assert post(office, f"/office/volunteers/{far}/pin-reset").status_code == 403
    assert "张建国" not in office.get("/office/volunteers").get_data(as_text=True)
    assert office.get("/office/volunteers?district=zuoanmen").status_code == 422


def test_an_auditor_reads_and_changes_nothing(client, accounts):
    assert sign_in(client, "shenji").status_code == 302
    peer = accounts.volunteers["peer"]
    page = client.get(f"/office/volunteers/{peer}").get_data(as_text=True)
    assert "李桂兰" in page and "pin-reset" not in page
    for url in (
        f"/office/volunteers/{peer}/pin-reset",
        f"/office/volunteers/{peer}/unlock",
        "/office/providers",
        "/office/tokens",
        "/office/staff",
    ):
        assert post(client, url, {"name": "x"}).status_code == 403, url
    for url in (
        "/office",
        "/office/volunteers",
        "/office/providers",
        "/office/tokens",
        "/office/staff",
        "/office/audit",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        # The only form an auditor is shown is the sign-out button's.
        assert response.get_data(as_text=True).count('method="post"') == 1, url


def test_providers_tokens_and_staff_screens(office, client, accounts):
    made = post(
        office,
        "/office/providers",
        {"name": "李师傅家电维修", "code": "repair-li", "district": "xizhaosi"},
    )
    assert made.status_code == 302
    assert "repair-li" in office.get("/office/providers").get_data(as_text=True)
    kiosk = post(office, "/office/tokens/kiosk", {"name": "服务站大厅", "district": "xizhaosi"})
    assert re.search(r"data-pairing-code>([0-9A-Z]{8})<", kiosk.get_data(as_text=True))
    secret = post(
        office, "/office/tokens", {"name": "接口", "role": "volunteer", "district": "xizhaosi"}
    )
    assert secret.status_code == 422  # a volunteer token needs a volunteer
    post(office, "/office/sign-out")
    assert sign_in(client, "longtan").status_code == 302
    account = post(
        client,
        "/office/staff",
        {"name": "周敏", "username": "zhoumin", "role": "office", "district": "xizhaosi"},
    )
    temporary = re.search(r"data-password>([a-z0-9-]+)<", account.get_data(as_text=True)).group(1)
    assert staff.sign_in("zhoumin", temporary).staff.must_change_password
    refused = post(
        client,
        "/office/staff",
        {"name": "x", "username": "someone", "role": "office", "district": "longtan"},
    )
    assert refused.status_code == 422  # not below longtan's own node
    audit = client.get("/office/audit?action=staff").get_data(as_text=True)
    assert "staff.create" in audit and temporary not in audit

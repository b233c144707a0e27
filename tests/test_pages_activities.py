"""Activity pages through the test client: an office posts an activity, a volunteer signs
up on /me and checks in by the QR code's page, the organiser checks a card in, closes,
cancels, downloads the attendance list; auditors and other nodes change nothing."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import g
from sqlalchemy import select

from points import activities
from points.extensions import db
from points.models import Volunteer
from tests.office_fixtures import csrf, post, sign_in
from tests.test_pages_volunteer import sign_in as volunteer_sign_in

pytest_plugins = ("tests.api_fixtures",)

ZONE = ZoneInfo("Asia/Shanghai")


def _local(moment: datetime) -> str:
    return moment.astimezone(ZONE).strftime("%Y-%m-%dT%H:%M")


def _form(**changes) -> dict:
    now = datetime.now(UTC)
    form = {
        "district": "xizhaosi",
        "title_zh": "周六清扫胡同",
        "title_en": "Saturday alley sweep",
        "place": "西草市 12 号门口",
        "description_zh": "带手套",
        "description_en": "Bring gloves",
        "starts_at": _local(now + timedelta(minutes=20)),
        "ends_at": _local(now + timedelta(minutes=110)),
        "signup_until": _local(now + timedelta(minutes=10)),
        "kind": "patrol",
        "places": "2",
        "min_star_level": "0",
    }
    return form | changes


def _posted(office) -> int:
    response = post(office, "/office/activities/new", _form(), page="/office/activities/new")
    assert response.status_code == 302, response.get_data(as_text=True)
    return int(re.search(r"/office/activities/(\d+)$", response.headers["Location"]).group(1))


class _Own:
    """A test client whose requests start with an empty `g`: the test's app context
    outlives each request, so the office's g.principal would reach the volunteer's."""

    def __init__(self, client):
        self.client = client

    def __getattr__(self, name):
        method = getattr(self.client, name)

        def call(*args, **kwargs):
            vars(g).clear()
            return method(*args, **kwargs)

        return call


def _volunteer(office, world, name="self"):
    client = _Own(office.client.application.test_client())
    assert volunteer_sign_in(client, world.cards[name], world.pins[name]).status_code == 302
    return client


def test_office_posts_and_a_volunteer_signs_up_and_checks_in_by_qr(office, accounts):
    office = _Own(office)
    activity_id = _posted(office)
    page = office.get(f"/office/activities/{activity_id}").get_data(as_text=True)
    assert "周六清扫胡同" in page and 'data-count="signed">0 / 2' in page

    me = _volunteer(office, accounts)
    listed = me.get("/me/activities").get_data(as_text=True)
    assert f'data-activity="{activity_id}"' in listed
    signed = me.post(
        f"/me/activities/{activity_id}/signup", data={"csrf_token": csrf(me.get("/me/activities"))}
    )
    assert signed.status_code == 302
    assert 'data-state="signed"' in me.get("/me/activities").get_data(as_text=True)

    qr_page = office.get(f"/office/activities/{activity_id}/qr").get_data(as_text=True)
    scan_url = re.search(r"data-scan-url>([^<]+)<", qr_page).group(1).replace("&amp;", "&")
    path = scan_url.split("localhost", 1)[1]
    confirm = me.get(path)
    assert confirm.status_code == 200
    done = me.post(path.split("?")[0], data={"csrf_token": csrf(confirm), "c": path.split("c=")[1]})
    assert done.status_code == 200 and 'data-direction="in"' in done.get_data(as_text=True)
    attendance = office.get(f"/office/activities/{activity_id}").get_data(as_text=True)
    volunteer_id = accounts.volunteers["self"]
    assert f'data-volunteer="{volunteer_id}" data-state="here"' in attendance


def test_an_old_code_is_refused_with_a_clear_message(office, accounts):
    office = _Own(office)
    activity_id = _posted(office)
    me = _volunteer(office, accounts)
    me.post(
        f"/me/activities/{activity_id}/signup", data={"csrf_token": csrf(me.get("/me/activities"))}
    )
    old = activities.qr_code(activity_id, now=datetime.now(UTC) - timedelta(seconds=90))
    response = me.get(f"/me/activities/{activity_id}/scan?c={old}")
    assert response.status_code == 422
    assert 'data-testid="scan-error"' in response.get_data(as_text=True)
    refused = me.post(
        f"/me/activities/{activity_id}/scan",
        data={"csrf_token": csrf(me.get("/me/activities")), "c": old},
    )
    assert refused.status_code == 422
    assert activities.attendance(activity_id)[0].state == "signed"


def test_bad_input_gets_the_form_back_with_messages(office, accounts):
    office = _Own(office)
    response = post(
        office,
        "/office/activities/new",
        _form(title_zh="", places="lots", starts_at="tomorrow"),
        page="/office/activities/new",
    )
    text = response.get_data(as_text=True)
    assert response.status_code == 422 and "error-summary" in text
    assert 'href="#places"' in text and 'href="#starts_at"' in text


def test_organiser_checks_a_card_in_and_a_wrong_pin_counts(office, accounts):
    office = _Own(office)
    activity_id = _posted(office)
    card = accounts.cards["peer"]
    signed = post(
        office,
        f"/office/activities/{activity_id}/signup",
        {"card_code": card},
        page=f"/office/activities/{activity_id}",
    )
    assert signed.status_code == 302
    wrong = post(
        office,
        f"/office/activities/{activity_id}/card",
        {"card_code": card, "pin": "000000"},
        page=f"/office/activities/{activity_id}",
    )
    assert wrong.status_code == 422
    peer = db.session.scalar(select(Volunteer).where(Volunteer.card_code == card))
    db.session.refresh(peer)
    assert peer.failed_pins == 1
    right = post(
        office,
        f"/office/activities/{activity_id}/card",
        {"card_code": card, "pin": accounts.pins["peer"]},
        page=f"/office/activities/{activity_id}",
    )
    assert right.status_code == 302 and right.headers["Location"].endswith("done=in")
    assert activities.attendance(activity_id)[0].signup.checked_in_via == "card"


def test_a_cancellation_is_shown_to_the_signed_up(office, accounts):
    office = _Own(office)
    activity_id = _posted(office)
    me = _volunteer(office, accounts)
    me.post(
        f"/me/activities/{activity_id}/signup", data={"csrf_token": csrf(me.get("/me/activities"))}
    )
    cancelled = post(
        office,
        f"/office/activities/{activity_id}/cancel",
        {"reason": "大雨，改期"},
        page=f"/office/activities/{activity_id}",
    )
    assert cancelled.status_code == 302
    page = me.get("/me/activities").get_data(as_text=True)
    assert 'data-state="cancelled"' in page and "大雨，改期" in page


def test_attendance_downloads_name_who_came(office, accounts):
    office = _Own(office)
    activity_id = _posted(office)
    post(
        office,
        f"/office/activities/{activity_id}/signup",
        {"card_code": accounts.cards["peer"]},
        page=f"/office/activities/{activity_id}",
    )
    csv = office.get(f"/office/activities/{activity_id}?format=csv")
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    name = db.session.get(Volunteer, accounts.volunteers["peer"]).name
    assert name in csv.get_data(as_text=True)
    xlsx = office.get(f"/office/activities/{activity_id}?format=xlsx")
    assert xlsx.status_code == 200 and xlsx.get_data()[:2] == b"PK"


def test_stale_edit_saves_nothing(office, accounts):
    office = _Own(office)
    activity_id = _posted(office)
    form = office.get(f"/office/activities/{activity_id}/edit")
    token = csrf(form)
    version = re.search(r'name="version" value="(\d+)"', form.get_data(as_text=True)).group(1)
    first = office.post(
        f"/office/activities/{activity_id}/edit",
        data=_form(csrf_token=token, version=version, places="5"),
    )
    assert first.status_code == 302
    second = office.post(
        f"/office/activities/{activity_id}/edit",
        data=_form(csrf_token=token, version=version, places="9"),
    )
    assert second.status_code == 409
    assert activities.get_activity(activity_id).places == 5


def test_auditors_and_other_nodes_change_nothing(client, accounts):
    assert sign_in(client, "xizhaosi").status_code == 302
    activity_id = _posted(client)
    client.post("/office/sign-out", data={"csrf_token": csrf(client.get("/office"))})
    assert sign_in(client, "zuoanmen").status_code == 302
    assert client.get(f"/office/activities/{activity_id}").status_code == 404
    closed = post(client, f"/office/activities/{activity_id}/close", page="/office")
    assert closed.status_code == 404
    client.post("/office/sign-out", data={"csrf_token": csrf(client.get("/office"))})
    assert sign_in(client, "shenji").status_code == 302
    assert client.get(f"/office/activities/{activity_id}").status_code == 200
    refused = post(client, "/office/activities/new", _form(), page="/office/activities")
    assert refused.status_code == 403
    assert activities.get_activity(activity_id).status == "open"


def test_kiosk_checks_a_card_in_then_out(office, accounts):
    from points import kiosks
    from tests.test_pages_kiosk import pair, token_id

    office = _Own(office)
    activity_id = _posted(office)
    post(
        office,
        f"/office/activities/{activity_id}/signup",
        {"card_code": accounts.cards["self"]},
        page=f"/office/activities/{activity_id}",
    )
    kiosk = _Own(office.client.application.test_client())
    assert pair(kiosk, kiosks.issue_pairing_code(token_id("kiosk_in")).code).status_code == 302
    listed = kiosk.get("/kiosk/activities").get_data(as_text=True)
    assert f'data-activity="{activity_id}"' in listed
    page = kiosk.get(f"/kiosk/activities/{activity_id}")
    wrong = kiosk.post(
        f"/kiosk/activities/{activity_id}",
        data={"csrf_token": csrf(page), "card_code": accounts.cards["self"], "pin": "000000"},
    )
    assert wrong.status_code == 422
    done = kiosk.post(
        f"/kiosk/activities/{activity_id}",
        data={
            "csrf_token": csrf(page),
            "card_code": accounts.cards["self"],
            "pin": accounts.pins["self"],
        },
    )
    text = done.get_data(as_text=True)
    assert done.status_code == 200 and 'data-direction="in"' in text
    name = db.session.get(Volunteer, accounts.volunteers["self"]).name
    assert name not in text  # the kiosk shows a masked name only
    out = kiosk.post(
        f"/kiosk/activities/{activity_id}",
        data={
            "csrf_token": csrf(page),
            "card_code": accounts.cards["self"],
            "pin": accounts.pins["self"],
        },
    )
    # Within a minute of the check-in there is nothing to record: refused, in Chinese.
    assert out.status_code == 409 and "不到一分钟" in out.get_data(as_text=True)
    assert activities.attendance(activity_id)[0].state == "here"
    # A card of another node is unknown here.
    far = kiosk.post(
        f"/kiosk/activities/{activity_id}",
        data={"csrf_token": csrf(page), "card_code": accounts.cards["far"], "pin": "123456"},
    )
    assert far.status_code == 422

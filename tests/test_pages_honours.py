"""Honours through the pages: an office proposes a list from the rankings page, the public
notice shows masked names and takes objections (rate-limited), the office answers and
finalises, and the volunteer sees the honour on /me and in their history."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from flask import Flask, g
from sqlalchemy import update

from points import honours, ledger
from points.extensions import db
from points.models import Honour
from tests.office_fixtures import csrf, post, sign_in
from tests.test_pages_volunteer import sign_in as volunteer_sign_in

pytest_plugins = ("tests.office_fixtures",)


def _new_client(app: Flask):
    """Another browser. The tests' requests share the app context pushed by the `app`
    fixture, where Flask-WTF caches the last CSRF token: forget it, or the new browser's
    page would carry the previous browser's token."""
    g.pop("csrf_token", None)
    return app.test_client()


def test_an_honour_from_ranking_to_the_volunteers_page(app, client, accounts):
    world = accounts
    me = world.volunteers["self"]
    ledger.add_service_minutes(me, 240, actor="t", reason="patrol")
    ledger.add_service_minutes(world.volunteers["peer"], 60, actor="t", reason="patrol")
    assert sign_in(client, "longtan").status_code == 302
    ranking = client.get("/office/rankings?district=longtan")
    assert "Propose an honour list" in ranking.text or "根据此排名提名荣誉名单" in ranking.text
    # A title is required: the ranking comes back with the error.
    refused = post(
        client,
        "/office/honours",
        {"district": "longtan", "by": "hours", "period": "month", "title": "", "size": "10"},
        page="/office/rankings",
    )
    assert refused.status_code == 422 and 'id="propose"' in refused.text
    made = post(
        client,
        "/office/honours",
        {
            "district": "longtan",
            "by": "hours",
            "period": "month",
            "title": "十佳小巷管家",
            "size": "1",
        },
        page="/office/rankings",
    )
    assert made.status_code == 302
    shown = client.get(made.headers["Location"])
    assert "王秀英" in shown.text and "李桂兰" not in shown.text  # one place
    honour_id = int(re.search(r"/office/honours/(\d+)", made.headers["Location"]).group(1))
    code = db.session.get(Honour, honour_id).public_code
    assert f"/honours/{code}" in shown.text

    # The public notice, without signing in: masked, nothing personal.
    public = _new_client(app)
    page = public.get(f"/honours/{code}")
    assert page.status_code == 200
    assert "王*英" in page.text and "王秀英" not in page.text
    assert "13900000001" not in page.text and world.cards["self"] not in page.text
    assert code in public.get("/honours/").text
    for n in range(honours.OBJECTIONS_PER_HOUR):
        sent = public.post(f"/honours/{code}", data={"csrf_token": csrf(page), "text": f"异议 {n}"})
        assert sent.status_code == 302
        assert "sent=1" in sent.headers["Location"]
    too_many = public.post(f"/honours/{code}", data={"csrf_token": csrf(page), "text": "再一条"})
    assert too_many.status_code == 429
    empty = public.post(f"/honours/{code}", data={"csrf_token": csrf(page), "text": " "})
    assert empty.status_code in (422, 429)

    # The office answers each objection, and may finalise only after the notice.
    g.pop("csrf_token", None)  # back to the office's browser
    shown = client.get(f"/office/honours/{honour_id}")
    assert "异议 0" in shown.text
    early = post(client, f"/office/honours/{honour_id}/decision", {"decision": "finalise"})
    assert early.status_code == 409
    for objection in honours.get(honour_id).objections:
        answered = post(
            client,
            f"/office/honours/{honour_id}/objections/{objection.id}",
            {f"answer-{objection.id}": "已核实，维持。"},
        )
        assert answered.status_code == 302
    db.session.execute(
        update(Honour)
        .where(Honour.id == honour_id)
        .values(notice_until=datetime.now(UTC) - timedelta(seconds=1))
    )
    db.session.commit()
    final = post(client, f"/office/honours/{honour_id}/decision", {"decision": "finalise"})
    assert final.status_code == 302
    assert honours.get(honour_id).status == "final"
    assert "十佳小巷管家" in client.get("/office/honours").text

    # The volunteer sees it on their page and in their history.
    volunteer = _new_client(app)
    assert volunteer_sign_in(volunteer, world.cards["self"], world.pins["self"]).status_code == 302
    assert "十佳小巷管家" in volunteer.get("/me/").text
    assert "十佳小巷管家" in volunteer.get("/me/history").text


def test_another_communitys_office_and_auditors_cannot_decide(app, client, accounts):
    world = accounts
    ledger.add_service_minutes(world.volunteers["self"], 60, actor="t", reason="patrol")
    now = datetime.now(UTC)
    found = honours.propose("xizhaosi", "好邻居", "hours", now - timedelta(days=1), now, 3)
    assert sign_in(client, "zuoanmen").status_code == 302
    assert client.get(f"/office/honours/{found.id}").status_code == 404
    refused = post(
        client, f"/office/honours/{found.id}/decision", {"decision": "withdraw", "reason": "x"}
    )
    assert refused.status_code == 404
    auditor = _new_client(app)
    assert sign_in(auditor, "shenji").status_code == 302
    assert auditor.get(f"/office/honours/{found.id}").status_code == 200
    refused = post(
        auditor, f"/office/honours/{found.id}/decision", {"decision": "withdraw", "reason": "x"}
    )
    assert refused.status_code == 403
    assert honours.get(found.id).status == "notice"


def test_text_no_database_stores_is_refused_on_every_form(app, client, accounts):
    world = accounts
    ledger.add_service_minutes(world.volunteers["self"], 60, actor="t", reason="patrol")
    now = datetime.now(UTC)
    found = honours.propose("xizhaosi", "好邻居", "hours", now - timedelta(days=1), now, 3)
    code = found.public_code
    public = _new_client(app)
    page = public.get(f"/honours/{code}")
    refused = public.post(f"/honours/{code}", data={"csrf_token": csrf(page), "text": "a\x00b"})
    assert refused.status_code == 422 and not honours.get(found.id).objections
    assert public.get(f"/honours/{code}?x=%00").status_code == 422
    g.pop("csrf_token", None)
    assert sign_in(client, "longtan").status_code == 302
    priced = post(
        client,
        "/office/catalog",
        {
            "district": "longtan",
            "sku": "tea",
            "name_zh": "茶",
            "name_en": "tea",
            "cost": "5",
            "provider": "barber-wang",
            "unit_price": "Infinity",
        },
        page="/office/catalog",
    )
    assert priced.status_code == 422

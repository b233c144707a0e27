"""The activities API: posting and editing with versions, sign-up by a volunteer's own
token, the QR code and a scan, office check-out, attendance downloads, close; the CLI's
closing job."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from points import activities
from points.extensions import db

pytest_plugins = ("tests.api_fixtures",)

NOW = datetime.now(UTC).replace(microsecond=0)


def _body(**changes):
    start = NOW + timedelta(days=2)
    body = {
        "district": "xizhaosi",
        "title_zh": "清理楼道",
        "title_en": "Stairwell clean-up",
        "place": "3号楼",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=2)).isoformat(),
        "kind": "patrol",
        "places": 2,
        "signup_until": (start - timedelta(hours=1)).isoformat(),
    }
    body.update(changes)
    return body


def _running(world, places=5):
    """A patrol running now (started an hour ago), self signed up."""
    # The real now, not the import's: a check-out counts minutes to the clock, and the
    # suite reaches this test minutes after it imported the module.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    info = activities.post_activity(
        "xizhaosi",
        title_zh="巡查",
        title_en="Patrol",
        place="夕照寺中街",
        starts_at=start,
        ends_at=start + timedelta(hours=2),
        kind="patrol",
        places=places,
        signup_until=start,
        actor="office:test",
    )
    activities.sign_up(
        info.id, world.volunteers["self"], actor="office:test", now=start - timedelta(hours=1)
    )
    return info


def test_post_edit_with_versions(api, world):
    office = world.tokens["office_in"]
    made = api.post("activities", office, _body())
    assert made.status_code == 201, made.get_json()
    shown = made.get_json()
    assert shown["district"] == "xizhaosi" and shown["version"] == 1
    assert made.headers["ETag"] == '"1"'
    path = f"activities/{shown['id']}"
    edited = api.patch(path, office, {"places": 3}, headers={"If-Match": '"1"'})
    assert edited.status_code == 200 and edited.get_json()["version"] == 2
    stale = api.patch(path, office, {"places": 4}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412 and stale.content_type == "application/problem+json"
    stale = api.patch(path, office, {"places": 4, "version": 1})
    assert stale.status_code == 409
    bad = api.patch(path, office, {"places": 4}, headers={"If-Match": "nope"})
    assert bad.status_code == 412
    assert api.get(path, office).headers["ETag"] == '"2"'
    refused = api.post("activities", office, _body(kind="checkin"))
    assert refused.status_code == 422 and "kind" in refused.get_json()["errors"]
    refused = api.post("activities", office, _body(kind="fix"))
    assert "record_details.description" in refused.get_json()["errors"]
    missing = api.post("activities", office, {"district": "xizhaosi"})
    assert missing.status_code == 422 and "title_zh" in missing.get_json()["errors"]
    unknown = api.patch(path, office, {"status": "closed"})
    assert unknown.status_code == 422
    listed = api.get("activities?district=xizhaosi&limit=1", office).get_json()
    assert [a["id"] for a in listed["items"]] == [shown["id"]] and listed["next_cursor"]
    rest = api.get(f"activities?district=xizhaosi&cursor={listed['next_cursor']}", office)
    assert rest.get_json()["items"] == []


def test_a_volunteer_signs_up_and_withdraws_only_themselves(api, world):
    office, me = world.tokens["office_in"], world.tokens["volunteer_self"]
    activity = api.post("activities", office, _body(places=1)).get_json()
    path = f"activities/{activity['id']}/signups"
    signed = api.post(path, me, {})
    assert signed.status_code == 201, signed.get_json()
    assert signed.get_json()["volunteer_id"] == world.volunteers["self"]
    assert api.post(path, me, {"volunteer_id": world.volunteers["peer"]}).status_code == 403
    full = api.post(path, office, {"volunteer_id": world.volunteers["peer"]})
    assert full.status_code == 409
    mine = api.get("activities/mine", me).get_json()["items"]
    assert [(i["activity"]["id"], i["signup"]["status"]) for i in mine] == [
        (activity["id"], "signed")
    ]
    gone = api.post(f"{path}/{world.volunteers['self']}/withdraw", me)
    assert gone.status_code == 200 and gone.get_json()["status"] == "withdrawn"
    assert api.post(path, world.tokens["volunteer_far"], {}).status_code == 403


def test_qr_scan_check_out_attendance_and_close(api, world):
    office, me = world.tokens["office_in"], world.tokens["volunteer_self"]
    info = _running(world)
    qr = api.get(f"activities/{info.id}/qr", office)
    assert qr.status_code == 200 and qr.headers["Cache-Control"] == "no-store"
    code = qr.get_json()["code"]
    assert qr.get_json()["scan_url"] == f"/me/activities/{info.id}/scan?c={code}"
    assert api.get(f"activities/{info.id}/qr", world.tokens["auditor_in"]).status_code == 403
    wrong = api.post(f"activities/{info.id}/scan", me, {"code": "A" * 12})
    assert wrong.status_code == 409 and "code" in wrong.get_json()["errors"]
    scanned = api.post(f"activities/{info.id}/scan", me, {"code": code})
    assert scanned.status_code == 200 and scanned.get_json()["way"] == "in"
    # The office checks them out (a check-in of a minute ago would be refused: the
    # activity started an hour ago, so real minutes count from check-in, here ~0).
    early = api.post(
        f"activities/{info.id}/check-out", office, {"volunteer_id": world.volunteers["self"]}
    )
    assert early.status_code == 409
    rows = api.get(f"activities/{info.id}/attendance", world.tokens["auditor_in"]).get_json()
    assert [r["state"] for r in rows["items"]] == ["here"]
    assert "*" in rows["items"][0]["card_code_masked"]
    as_csv = api.get(f"activities/{info.id}/attendance?format=csv", office)
    assert as_csv.status_code == 200 and as_csv.content_type.startswith("text/csv")
    lines = list(csv.reader(io.StringIO(as_csv.get_data(as_text=True).lstrip("\ufeff"))))
    assert any("姓名 / Name" in line for line in lines)
    as_xlsx = api.get(f"activities/{info.id}/attendance?format=xlsx", office)
    assert as_xlsx.status_code == 200 and as_xlsx.get_data()[:2] == b"PK"
    closed = api.post(f"activities/{info.id}/close", office)
    assert closed.status_code == 200, closed.get_json()
    result = closed.get_json()
    assert result["records_made"] == 1 and result["no_shows"] == 0
    assert result["activity"]["status"] == "closed"
    rows = api.get(f"activities/{info.id}/attendance", office).get_json()["items"]
    assert rows[0]["record_status"] == "pending" and rows[0]["signup"]["minutes"] == 120
    assert api.get(f"activities/{info.id}/qr", office).status_code == 409


def test_office_check_in_and_out_make_the_record(api, world):
    office = world.tokens["office_in"]
    info = _running(world)
    activities.check_in(
        info.id,
        world.volunteers["self"],
        actor="office:test",
        via="office",
        now=info.starts_at + timedelta(minutes=5),
    )
    out = api.post(
        f"activities/{info.id}/check-out", office, {"volunteer_id": world.volunteers["self"]}
    )
    assert out.status_code == 200, out.get_json()
    signup = out.get_json()
    assert signup["checked_out_via"] == "office" and 54 <= signup["minutes"] <= 56
    again = api.post(
        f"activities/{info.id}/check-out", office, {"volunteer_id": world.volunteers["self"]}
    )
    assert again.get_json()["service_record_id"] == signup["service_record_id"]
    missing = api.post(f"activities/{info.id}/check-in", office, {})
    assert missing.status_code == 422


def test_close_due_command(runner, world):
    start = NOW - timedelta(hours=8)
    info = activities.post_activity(
        "xizhaosi",
        title_zh="巡查",
        title_en="Patrol",
        place="x",
        starts_at=start,
        ends_at=start + timedelta(hours=2),
        kind="patrol",
        places=1,
        signup_until=start,
        actor="office:test",
    )
    db.session.remove()
    result = runner.invoke(args=["activities", "close-due"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "closed 1 activities"
    db.session.rollback()
    assert activities.get_activity(info.id).status == "closed"
    again = runner.invoke(args=["activities", "close-due"])
    assert again.output.strip() == "closed 0 activities"
    bad = runner.invoke(args=["activities", "close-due", "--as-of", "yesterday"])
    assert bad.exit_code != 0

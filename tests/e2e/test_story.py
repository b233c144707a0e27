"""The whole story over HTTP through gunicorn: register, serve, approve, redeem at a kiosk
with card and PIN, fulfil, cancel, reverse; then the ledger checks out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

HAIRCUT = {"names": {"zh-CN": "理发", "en": "haircut"}, "cost": 30, "provider": "barber-wang"}


PHONE = "13900000001"


def at_kiosk(reply):
    """A reply a kiosk saw: it must carry no phone number."""
    assert PHONE not in str(reply.body)
    return reply


def ok(reply, status=200):
    assert reply.status == status, (reply.status, reply.body)
    return reply.body


def hours_ago(hours: float) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).isoformat()


def test_e2e_story_from_registration_to_correction(live):
    http, admin = live.http, live.admin
    assert ok(http.get("health")) == {"status": "ok", "database": "ok"}
    assert "paths" in ok(http.get("openapi.json"))

    # The admin adds a community and a token for Longtan's street office.
    ok(
        http.post(
            "districts", admin, {"code": "xizhaosi", "name": "夕照寺社区", "parent": "longtan"}
        ),
        201,
    )
    office = ok(
        http.post("tokens", admin, {"role": "office", "district": "longtan", "name": "office"}), 201
    )["token"]

    # The office registers a volunteer, a kiosk and a phone token, and sets up the catalog.
    steward = ok(
        http.post(
            "volunteers",
            office,
            {"name": "王秀英", "phone": PHONE, "district": "xizhaosi", "pin": "204857"},
        ),
        201,
    )
    me = steward["id"]
    kiosk = ok(
        http.post("tokens", office, {"role": "kiosk", "district": "xizhaosi", "name": "kiosk"}), 201
    )["token"]
    phone = ok(
        http.post(
            "tokens",
            office,
            {"role": "volunteer", "district": "xizhaosi", "volunteer_id": me, "name": "phone"},
        ),
        201,
    )["token"]
    ok(
        http.put(
            "districts/longtan/policy/catalog", office, {"config": {"items": {"haircut": HAIRCUT}}}
        )
    )
    # Stewards of Longtan report their own patrols (by default only fixes, reports, logs).
    ok(
        http.put(
            "districts/longtan/policy/approval",
            office,
            {"config": {"volunteer_kinds": ["patrol", "fix", "report", "log"]}},
        )
    )

    # Service, recorded by the office (volunteers report only approval.volunteer_kinds
    # themselves): a short patrol is approved at once, a long one waits for approval.
    short = {"volunteer_id": me, "kind": "patrol", "started_at": hours_ago(30), "minutes": 60}
    assert ok(http.post("service-records", office, short), 201)["status"] == "approved"
    long = {"volunteer_id": me, "kind": "patrol", "started_at": hours_ago(5), "minutes": 720}
    waiting = ok(http.post("service-records", office, long), 201)
    assert waiting["status"] == "pending"
    approved = ok(
        http.post(
            f"service-records/{waiting['id']}/approve", office, headers={"Idempotency-Key": "ap-1"}
        )
    )
    assert approved == {"id": waiting["id"], "status": "approved", "points": 60}
    balance = ok(http.get(f"volunteers/{me}/balance", phone))
    assert (balance["balance"], balance["service_minutes"]) == (65, 780)

    # At the kiosk: card and PIN open a session; it reads the balance, the catalog, redeems.
    card = steward["card_code"]
    session = ok(
        at_kiosk(http.post("kiosk/sessions", kiosk, {"card_code": card, "pin": "204857"})), 201
    )
    token = session["token"]
    assert session["display_name"] == "王*英"
    assert ok(at_kiosk(http.get(f"volunteers/{me}/balance", token)))["available"] == 65
    catalog = ok(at_kiosk(http.get(f"districts/xizhaosi/catalog?volunteer_id={me}", token)))
    assert http.get(f"volunteers/{me}", token).status == 403  # the profile has the phone
    assert catalog["items"][0]["eligible"] is True
    redeem = {"sku": "haircut"}
    first = http.post("redemptions", token, redeem, headers={"Idempotency-Key": "kiosk-1"})
    voucher = ok(at_kiosk(first), 201)
    assert voucher["status"] == "held" and voucher["points"] == 30
    retry = http.post("redemptions", token, redeem, headers={"Idempotency-Key": "kiosk-1"})
    assert retry.status == 201 and retry.replayed and retry.body == voucher
    assert http.get("kiosk/sessions/current", token).status == 401  # ended by the redemption
    fulfilled = ok(
        http.post(f"redemptions/{voucher['id']}/fulfil", kiosk, headers={"Idempotency-Key": "f-1"})
    )
    assert fulfilled["status"] == "fulfilled"

    # A second haircut with card and PIN straight away, then the volunteer cancels it.
    second = ok(
        http.post(
            "redemptions",
            kiosk,
            {"card_code": card, "pin": "204857", "sku": "haircut"},
            headers={"Idempotency-Key": "kiosk-2"},
        ),
        201,
    )
    assert ok(http.get(f"volunteers/{me}/balance", phone))["available"] == 5
    cancelled = ok(http.post(f"redemptions/{second['id']}/cancel", phone, {"reason": "改天再来"}))
    assert cancelled["status"] == "cancelled"
    again = http.post(
        f"redemptions/{second['id']}/fulfil", kiosk, headers={"Idempotency-Key": "f-2"}
    )
    assert again.status == 409 and again.headers["content-type"] == "application/problem+json"

    # The office corrects the short patrol, logged by mistake.
    entries = ok(http.get(f"volunteers/{me}/entries", phone))["items"]
    patrol = next(e for e in entries if e["kind"] == "earn" and e["points"] == 5)
    reversal = ok(http.post(f"entries/{patrol['id']}/reverse", office, {"reason": "重复登记"}), 201)
    assert reversal["reverses_id"] == patrol["id"]

    balance = ok(http.get(f"volunteers/{me}/balance", phone))
    assert (balance["balance"], balance["held"], balance["available"]) == (30, 0, 30)
    assert balance["service_minutes"] == 780  # service time only grows
    history = ok(http.get(f"volunteers/{me}/entries", phone))["items"]
    assert [e["kind"] for e in history] == ["reversal", "redeem", "earn", "earn"]

    # The auditor finds the ledger whole.
    auditor = ok(
        http.post("tokens", admin, {"role": "auditor", "district": "beijing", "name": "audit"}), 201
    )["token"]
    report = ok(http.get("ledger/verify", auditor))
    assert report["ok"], report["problems"]

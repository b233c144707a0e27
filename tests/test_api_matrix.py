"""The authorization matrix: every endpoint, every role, inside and outside its node."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from points import honours, ledger, redemptions, service
from points.directory import create_token
from points.policy import set_policy
from tests.api_fixtures import RawFile

pytest_plugins = ("tests.api_fixtures",)

PRINCIPALS = (
    "admin",
    "office_above",
    "office_in",
    "office_out",
    "auditor_in",
    "auditor_out",
    "kiosk_in",
    "kiosk_out",
    "volunteer_self",
    "volunteer_peer",
    "volunteer_far",
    "provider_in",  # barber-wang's link: the haircut vouchers of self are its own
    "provider_out",  # another provider's link in the same node
    "session",  # last: one case ends it
)
# Offices over xizhaosi (the node of self and peer), and those who may read there.
OFFICES_IN = {"admin", "office_above", "office_in"}
READERS_IN = OFFICES_IN | {"auditor_in"}

_unique = count(1)


@pytest.fixture
def world(world, app):
    """The API tests' world, with two providers' link tokens."""
    from points.directory import create_provider
    from points.providers import issue_link

    create_provider("barber-zhang", "张师傅理发", "longtan")
    world.tokens["provider_in"] = issue_link(None, "barber-wang").token
    world.tokens["provider_out"] = issue_link(None, "barber-zhang").token
    yield world
    # Imports run in threads of their own: let them end before the database goes.
    for thread in list(app.extensions.get("import_threads", {}).values()):
        thread.join(30)


@dataclass(frozen=True)
class Case:
    """One endpoint: how to call it, and who may."""

    name: str
    method: str
    path: str | Callable[[Any], str]
    allowed: frozenset[str]
    # Called with (world, principal): some endpoints take another body per role.
    body: Callable[[Any, str], Any] | None = None
    # Whom a denial answers, and how: 403, except where even that would say too much.
    denied: Callable[[str], int] = lambda principal: 403

    def url(self, world) -> str:
        return self.path(world) if callable(self.path) else self.path


def _fresh_entry(world) -> str:
    entry = ledger.earn(world.volunteers["self"], 5, actor="office:test", reason="visit")
    return f"entries/{entry.id}/reverse"


def _fresh_token(world) -> str:
    token, _ = create_token("kiosk", "xizhaosi", name="spare kiosk")
    return f"tokens/{token.id}"


def _pending_record(world) -> int:
    record = service.record_service(
        world.volunteers["self"],
        "patrol",
        datetime.fromisoformat(world.started(next(_unique) * 5)),
        300,
        actor="office:test",
    )
    assert record.status == "pending"
    return record.id


def _honour(world, *, ended: bool = False) -> int:
    """A new honour list of xizhaosi on notice (or with its notice over), self on it."""
    from sqlalchemy import update

    from points.extensions import db
    from points.models import Honour

    _served(world)
    now = datetime.now(UTC)
    found = honours.propose("xizhaosi", "好邻居", "hours", now - timedelta(days=1), now, 3)
    if ended:
        db.session.execute(update(Honour).where(Honour.id == found.id).values(notice_until=now))
        db.session.commit()
    return found.id


def _import_file(world) -> bytes:
    """A CSV of one patrol of self, on a day of its own (each file is new)."""
    from points.extensions import db
    from points.models import Volunteer

    card = db.session.get(Volunteer, world.volunteers["self"]).card_code
    day = datetime(2025, 1, 1) + timedelta(days=next(_unique))
    return f"volunteer,kind,date,minutes\n{card},patrol,{day:%Y-%m-%d},30\n".encode()


def _import_run(world) -> int:
    """A finished dry run of a new file into xizhaosi."""
    import io

    from points import imports
    from points.imports import jobs
    from points.policy import district_info

    node = district_info("xizhaosi")
    content = _import_file(world)
    jobs.store_file(node, "book.csv", content, actor="office:test")
    run = imports.run_file(
        node, "records", "book.csv", lambda: io.BytesIO(content), actor="office:test", dry_run=True
    )
    return run.id


def _served(world) -> None:
    ledger.add_service_minutes(world.volunteers["self"], 30, actor="office:test", reason="r")


def _objection(world) -> int:
    from points.extensions import db
    from points.models import Honour

    honour = db.session.get(Honour, _honour(world))
    return honours.lodge_objection(honour.public_code, "请核实", f"10.1.{next(_unique)}.1")


def _settling(world) -> dict:
    """A fresh fulfilled haircut of self, and the period that holds it."""
    made = redemptions.create_redemption(world.volunteers["self"], "haircut", actor="office:test")
    redemptions.fulfil_redemption(made.id, actor="provider:test")
    now = datetime.now(UTC)
    return {
        "district": "xizhaosi",
        "since": (now - timedelta(days=1)).isoformat(),
        "until": (now + timedelta(hours=1)).isoformat(),
    }


def _activation_body(world, principal: str) -> dict:
    """A new volunteer of xizhaosi with a pending activation code: its card, code, a PIN."""
    from points.activation import hash_activation, new_activation_code
    from points.directory import register_volunteer

    code = new_activation_code()
    made = register_volunteer(
        f"赵{next(_unique)}", "xizhaosi", activation_hash=hash_activation(code)
    )
    return {"card_code": made.card_code, "code": code, "new_pin": "736150"}


def _webhook(world) -> int:
    """A new webhook endpoint of xizhaosi (nothing is sent in these tests)."""
    from points import webhooks

    made, _secret = webhooks.create_endpoint(
        "xizhaosi", "https://receiver.example/hook", ["entry.posted"]
    )
    return made.id


def _failed_delivery(world) -> int:
    """A delivery of a new xizhaosi webhook that was given up on."""
    from points.extensions import db
    from points.models import WebhookDelivery

    endpoint = _webhook(world)
    ledger.earn(world.volunteers["self"], 1, actor="office:test", reason="visit")
    delivery = db.session.scalar(
        select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint)
    )
    delivery.status, delivery.attempts, delivery.last_status = "failed", 12, 500
    db.session.commit()
    return delivery.id


def _held_redemption(world) -> int:
    made = redemptions.create_redemption(world.volunteers["self"], "haircut", actor="office:test")
    return made.id


def _held_voucher(world) -> str:
    """The voucher of a new held redemption of self, typed as a person might: lower case."""
    made = redemptions.create_redemption(world.volunteers["self"], "haircut", actor="office:test")
    return made.voucher_code.lower()


def _voucher_unknown_outside(principal: str) -> int:
    """Another node's office or kiosk, or another provider, is told "no such voucher":
    codes cannot be probed."""
    return 404 if principal in ("office_out", "kiosk_out", "provider_out") else 403


def _pending_gift(world) -> int:
    """A gift of 1 point from self to peer (a listed household in need): it waits."""
    giver, receiver = world.volunteers["self"], world.volunteers["peer"]
    if not redemptions.check_transfer(giver, receiver, 1, "household_in_need").allowed:
        set_policy(
            "longtan",
            "transfers",
            {"households_in_need": [receiver]},
            author="office:test",
            effective_from=datetime.now(UTC) - timedelta(days=1),
        )
    gift = redemptions.give_points(
        giver, receiver, 1, "household_in_need", actor="office:test", reason="帮扶"
    )
    assert gift.status == "pending"
    return gift.request_id


def _caps_draft(world) -> str:
    """A saved draft of caps at xizhaosi that changes nothing (activating it stores an
    empty layer): its address."""
    from points.auth import Principal
    from points.policy import district_info
    from points.policy_drafts import save_draft

    node = district_info("xizhaosi")
    clerk = Principal(0, "office", node.id, node.path, name="test")
    save_draft(clerk, "xizhaosi", "caps", {})
    return "districts/xizhaosi/policy/caps/draft"


def _stars_version() -> int:
    """A version of the stars policy set at xizhaosi: its number."""
    return set_policy("xizhaosi", "stars", {}, author="office:test").version


def _fresh_staff(world) -> int:
    from points import staff

    return staff.create_staff(
        f"clerk{next(_unique)}", "社区干事", "office", "xizhaosi", "lantern-harbour-42"
    ).id


def _service_body(world, principal: str) -> dict:
    """A patrol the office records; a volunteer reports a kind of their own (a fix)."""
    if principal.startswith("volunteer"):
        kind, details = "fix", {"description": "扶正倒伏的共享单车"}
    else:
        kind, details = "patrol", {"route": "夕照寺中街"}
    return {
        "volunteer_id": world.volunteers["self"],
        "kind": kind,
        "started_at": world.started(next(_unique) * 3),
        "minutes": 60 if kind == "patrol" else 15,
        "details": details,
    }


def _redemption_body(world, principal: str) -> dict:
    if principal.startswith("kiosk"):
        return {"card_code": world.cards["self"], "pin": world.pins["self"], "sku": "haircut"}
    if principal == "session":
        return {"sku": "haircut"}
    return {"volunteer_id": world.volunteers["self"], "sku": "haircut"}


def _activity(world, *, running: bool = False, signed: bool = False, here: bool = False) -> int:
    """A new patrol activity of xizhaosi: upcoming, or running now (started an hour ago);
    with self signed up, and checked in at its start."""
    from points import activities

    now = datetime.now(UTC).replace(microsecond=0)
    starts = now - timedelta(hours=1) if running else now + timedelta(days=1)
    info = activities.post_activity(
        "xizhaosi",
        title_zh="清理楼道",
        title_en="Stairwell clean-up",
        place="3号楼",
        starts_at=starts,
        ends_at=starts + timedelta(hours=2),
        kind="patrol",
        places=5,
        signup_until=starts + timedelta(hours=1, minutes=30),
        actor="office:test",
    )
    if signed or here:
        activities.sign_up(
            info.id, world.volunteers["self"], actor="office:test", now=starts - timedelta(hours=1)
        )
    if here:
        activities.check_in(
            info.id, world.volunteers["self"], actor="office:test", via="office", now=starts
        )
    return info.id


# The activity a scan's body made its code for (the body is built before the path).
_scanned: dict[str, int] = {}


def _scan_body(world, principal: str) -> dict:
    from points import activities

    _scanned["id"] = _activity(world, running=True, signed=True)
    return {"code": activities.qr_code(_scanned["id"])}


def _activity_body(world, principal: str) -> dict:
    start = datetime.now(UTC) + timedelta(days=2)
    return {
        "district": "xizhaosi",
        "title_zh": "走访独居老人",
        "title_en": "Visiting elders living alone",
        "place": "夕照寺中街",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=2)).isoformat(),
        "kind": "visit",
        "record_details": {"households": 3},
        "places": 4,
        "signup_until": (start - timedelta(hours=12)).isoformat(),
    }


EVERYONE = frozenset(PRINCIPALS)
# Offices and auditors anywhere: each sees what lies in its own reach.
STAFF_ANYWHERE = frozenset(
    {"admin", "office_above", "office_in", "office_out", "auditor_in", "auditor_out"}
)
# Longtan's office (and admin): over barber-wang and over staff of xizhaosi.
OFFICES_ABOVE = frozenset({"admin", "office_above"})
PROVIDERS = frozenset({"provider_in", "provider_out"})
READERS_OF_XIZHAOSI = frozenset(
    READERS_IN | {"kiosk_in", "volunteer_self", "volunteer_peer", "session"}
)


CASES = [
    Case(
        "create district below xizhaosi",
        "POST",
        "districts",
        frozenset(OFFICES_IN),
        lambda w, p: {"code": f"grid-{next(_unique)}", "name": "第一网格", "parent": "xizhaosi"},
    ),
    Case(
        "read district xizhaosi",
        "GET",
        "districts/xizhaosi",
        frozenset(READERS_IN | {"kiosk_in", "volunteer_self", "volunteer_peer", "session"}),
    ),
    Case("read district longtan", "GET", "districts/longtan", frozenset({"admin", "office_above"})),
    Case(
        "register volunteer in xizhaosi",
        "POST",
        "volunteers",
        frozenset(OFFICES_IN),
        lambda w, p: {
            "name": "赵志强",
            # One registration per phone number in a node: another number per principal.
            "phone": f"138{(*PRINCIPALS, 'anonymous').index(p):08d}",
            "district": "xizhaosi",
            "pin": "222333",
        },
    ),
    Case(
        "read profile of self",
        "GET",
        lambda w: f"volunteers/{w.volunteers['self']}",
        frozenset(READERS_IN | {"volunteer_self"}),
    ),
    Case(
        "read balance of self",
        "GET",
        lambda w: f"volunteers/{w.volunteers['self']}/balance",
        frozenset(READERS_IN | {"volunteer_self", "session"}),
    ),
    Case(
        "read the statement of self",
        "GET",
        lambda w: (
            f"volunteers/{w.volunteers['self']}/statement"
            "?since=2026-01-01T00:00:00%2B08:00&until=2027-01-01T00:00:00%2B08:00"
        ),
        frozenset(READERS_IN | {"volunteer_self", "session"}),
    ),
    Case(
        "read entries of self",
        "GET",
        lambda w: f"volunteers/{w.volunteers['self']}/entries",
        frozenset(READERS_IN | {"volunteer_self"}),
    ),
    Case(
        "read balance of far",
        "GET",
        lambda w: f"volunteers/{w.volunteers['far']}/balance",
        frozenset({"admin", "office_above", "office_out", "auditor_out", "volunteer_far"}),
    ),
    Case(
        "transfer from self to peer",
        "POST",
        "transfers",
        frozenset(OFFICES_IN | {"volunteer_self"}),
        lambda w, p: {
            "from_volunteer_id": w.volunteers["self"],
            "to_volunteer_id": w.volunteers["peer"],
            "points": 1,
            "memo": "赠与家人",
        },
    ),
    Case(
        "list gift requests of xizhaosi",
        "GET",
        "transfers/requests?district=xizhaosi&status=pending",
        frozenset(READERS_IN),
    ),
    Case(
        "list pending records of xizhaosi",
        "GET",
        "service-records?district=xizhaosi&status=pending&kind=patrol",
        frozenset(READERS_IN),
    ),
    Case(
        "list records of longtan",
        "GET",
        "service-records?district=longtan",
        frozenset({"admin", "office_above"}),
    ),
    Case(
        "list gift requests of longtan",
        "GET",
        "transfers/requests?district=longtan",
        frozenset({"admin", "office_above"}),
    ),
    Case(
        "approve a gift request of self",
        "POST",
        lambda w: f"transfers/requests/{_pending_gift(w)}/approve",
        frozenset(OFFICES_IN),
    ),
    Case(
        "reject a gift request of self",
        "POST",
        lambda w: f"transfers/requests/{_pending_gift(w)}/reject",
        frozenset(OFFICES_IN),
        lambda w, p: {"reason": "不在名单 / not on the list"},
    ),
    Case(
        "reverse an entry of self",
        "POST",
        _fresh_entry,
        frozenset(OFFICES_IN),
        lambda w, p: {"reason": "logged twice"},
    ),
    Case(
        "verify the ledger",
        "GET",
        "ledger/verify",
        frozenset({"admin", "auditor_in", "auditor_out"}),
    ),
    Case(
        "open a kiosk session for self",
        "POST",
        "kiosk/sessions",
        frozenset({"kiosk_in"}),
        lambda w, p: {"card_code": w.cards["self"], "pin": w.pins["self"]},
        # Another node's kiosk is told "unknown card": it learns nothing of cards elsewhere.
        lambda principal: 422 if principal == "kiosk_out" else 403,
    ),
    Case("read the current session", "GET", "kiosk/sessions/current", frozenset({"session"})),
    Case(
        "activate a new card of xizhaosi at a kiosk",
        "POST",
        "kiosk/activate",
        frozenset({"kiosk_in"}),
        _activation_body,
        lambda principal: 422 if principal == "kiosk_out" else 403,
    ),
    Case(
        "create a kiosk token in xizhaosi",
        "POST",
        "tokens",
        frozenset(OFFICES_IN),
        lambda w, p: {"role": "kiosk", "district": "xizhaosi", "name": f"kiosk {next(_unique)}"},
    ),
    Case("revoke a kiosk token of xizhaosi", "DELETE", _fresh_token, frozenset(OFFICES_IN)),
    Case(
        "issue a pairing code for a kiosk of xizhaosi",
        "POST",
        lambda w: _fresh_token(w) + "/pairing-code",
        frozenset(OFFICES_IN),
    ),
    Case(
        "issue a link for barber-wang of longtan",
        "POST",
        "providers/barber-wang/links",
        frozenset({"admin", "office_above"}),
    ),
    Case(
        "record service of self",
        "POST",
        "service-records",
        frozenset(OFFICES_IN | {"volunteer_self"}),
        lambda w, p: _service_body(w, p),
    ),
    Case(
        "approve a record of self",
        "POST",
        lambda w: f"service-records/{_pending_record(w)}/approve",
        frozenset(OFFICES_IN),
    ),
    Case(
        "reject a record of self",
        "POST",
        lambda w: f"service-records/{_pending_record(w)}/reject",
        frozenset(OFFICES_IN),
        lambda w, p: {"reason": "no such patrol"},
    ),
    Case(
        "decide records of self in bulk",
        "POST",
        "service-records/decide",
        frozenset(OFFICES_IN),
        # Rejected, not approved: approvals fill self's monthly cap, and a record the cap
        # clips to nothing is approved at once, so later cases would find none pending.
        lambda w, p: {
            "ids": [_pending_record(w), _pending_record(w)],
            "decision": "reject",
            "reason": "重复 / twice",
        },
    ),
    Case(
        "verify a record of self",
        "POST",
        lambda w: f"service-records/{_pending_record(w)}/verify",
        frozenset(OFFICES_IN),
    ),
    Case(
        "decide gift requests of self in bulk",
        "POST",
        "transfers/requests/decide",
        frozenset(OFFICES_IN),
        lambda w, p: {"ids": [_pending_gift(w)], "decision": "reject", "reason": "重复 / twice"},
    ),
    Case("list the catalog of xizhaosi", "GET", "districts/xizhaosi/catalog", READERS_OF_XIZHAOSI),
    Case(
        "list the catalog for self",
        "GET",
        lambda w: f"districts/xizhaosi/catalog?volunteer_id={w.volunteers['self']}",
        frozenset(READERS_IN | {"volunteer_self", "session"}),
    ),
    Case(
        "redeem for self",
        "POST",
        "redemptions",
        frozenset(OFFICES_IN | {"kiosk_in", "session"}),
        _redemption_body,
        # A kiosk sends card and PIN: another node's kiosk is told "unknown card".
        lambda principal: 422 if principal == "kiosk_out" else 403,
    ),
    Case(
        "fulfil a redemption of self",
        "POST",
        lambda w: f"redemptions/{_held_redemption(w)}/fulfil",
        frozenset(OFFICES_IN | {"kiosk_in"}),
    ),
    Case(
        "read a redemption of self",
        "GET",
        lambda w: f"redemptions/{_held_redemption(w)}",
        frozenset(READERS_IN | {"kiosk_in", "volunteer_self", "session"}),
    ),
    Case(
        "find a redemption of self by voucher",
        "GET",
        lambda w: f"redemptions?voucher_code={_held_voucher(w)}",
        frozenset(OFFICES_IN | {"kiosk_in", "provider_in"}),
        denied=_voucher_unknown_outside,
    ),
    Case(
        "fulfil a redemption of self by voucher",
        "POST",
        "redemptions/fulfil",
        frozenset(OFFICES_IN | {"kiosk_in", "provider_in"}),
        lambda w, p: {"voucher_code": _held_voucher(w)},
        _voucher_unknown_outside,
    ),
    Case(
        "cancel a redemption of self",
        "POST",
        lambda w: f"redemptions/{_held_redemption(w)}/cancel",
        frozenset(OFFICES_IN | {"kiosk_in", "volunteer_self", "session"}),
        lambda w, p: {"reason": "changed my mind"},
    ),
    Case("list the plugins", "GET", "plugins", EVERYONE - PROVIDERS),
    Case(
        "list the service records of self",
        "GET",
        lambda w: f"volunteers/{w.volunteers['self']}/service-records",
        frozenset(READERS_IN | {"volunteer_self"}),
    ),
    Case(
        "list the vouchers of self",
        "GET",
        lambda w: f"volunteers/{w.volunteers['self']}/redemptions",
        frozenset(READERS_IN | {"volunteer_self"}),
    ),
    Case(
        "change the PIN of self",
        "PUT",
        lambda w: f"volunteers/{w.volunteers['self']}/pin",
        frozenset({"volunteer_self"}),
        lambda w, p: {"old_pin": w.pins["self"], "new_pin": "730519"},
    ),
    Case("read the policy of xizhaosi", "GET", "districts/xizhaosi/policy", READERS_OF_XIZHAOSI),
    Case(
        "set the stars policy of xizhaosi",
        "PUT",
        "districts/xizhaosi/policy/stars",
        frozenset(OFFICES_IN),
        lambda w, p: {"config": {"levels_hours": [50, 200]}, "comment": "earlier stars"},
    ),
    Case(
        "read what xizhaosi sets for stars",
        "GET",
        "districts/xizhaosi/policy/stars",
        frozenset(READERS_IN),
    ),
    Case(
        "patch the caps policy of xizhaosi",
        "PATCH",
        "districts/xizhaosi/policy/caps",
        frozenset(OFFICES_IN),
        lambda w, p: {"config": {"per_kind": {"visit": {"day": 40}}}},
    ),
    Case(
        "list the stars versions of xizhaosi",
        "GET",
        "districts/xizhaosi/policy/stars/versions",
        frozenset(READERS_IN),
    ),
    Case(
        "read a stars version of xizhaosi",
        "GET",
        lambda w: f"districts/xizhaosi/policy/stars/versions/{_stars_version()}",
        frozenset(READERS_IN),
    ),
    Case(
        "compare two stars versions of xizhaosi",
        "GET",
        lambda w: f"districts/xizhaosi/policy/stars/diff?from=0&to={_stars_version()}",
        frozenset(READERS_IN),
    ),
    Case(
        "preview a steward draft for xizhaosi",
        "POST",
        "districts/xizhaosi/policy/steward/preview",
        frozenset(OFFICES_IN),
        lambda w, p: {
            "config": {"patrol": {"points_per_hour": 6}},
            "since": w.started(24 * 30),
            "until": w.started(0),
        },
    ),
    Case(
        "save a caps draft for xizhaosi",
        "PUT",
        "districts/xizhaosi/policy/caps/draft",
        frozenset(OFFICES_IN),
        lambda w, p: {"config": {"per_kind": {"log": {"day": 2}}}, "comment": "日志每天两次"},
    ),
    Case("read the caps draft of xizhaosi", "GET", _caps_draft, frozenset(READERS_IN)),
    Case(
        "preview the caps draft of xizhaosi",
        "POST",
        lambda w: _caps_draft(w) + "/preview",
        frozenset(OFFICES_IN),
        lambda w, p: {"since": w.started(24 * 30), "until": w.started(0)},
    ),
    Case(
        "activate the caps draft of xizhaosi",
        "POST",
        lambda w: _caps_draft(w) + "/activate",
        frozenset(OFFICES_IN),
        lambda w, p: {},
    ),
    Case("discard the caps draft of xizhaosi", "DELETE", _caps_draft, frozenset(OFFICES_IN)),
    Case("report on xizhaosi", "GET", "reports?district=xizhaosi&month=2026-11", READERS_IN),
    Case(
        "rank the volunteers of xizhaosi",
        "GET",
        "rankings?district=xizhaosi&since=2026-01-01T00:00:00%2B08:00"
        "&until=2027-01-01T00:00:00%2B08:00",
        READERS_IN,
    ),
    Case("export the records of xizhaosi", "GET", "exports/records?district=xizhaosi", READERS_IN),
    Case(
        "export the entries of longtan as xlsx",
        "GET",
        "exports/entries?district=longtan&format=xlsx",
        frozenset({"admin", "office_above"}),
    ),
    Case("end the current session", "DELETE", "kiosk/sessions/current", frozenset({"session"})),
    Case("say who I am", "GET", "me", EVERYONE),
    Case("list the district tree", "GET", "districts", STAFF_ANYWHERE),
    Case("search volunteers of xizhaosi", "GET", "volunteers?district=xizhaosi&q=王", READERS_IN),
    Case(
        "edit peer",
        "PATCH",
        lambda w: f"volunteers/{w.volunteers['peer']}",
        frozenset(OFFICES_IN),
        lambda w, p: {"phone": f"137{next(_unique):08d}"},
    ),
    Case(
        "reset the PIN of peer",
        "POST",
        lambda w: f"volunteers/{w.volunteers['peer']}/pin-reset",
        frozenset(OFFICES_IN),
    ),
    Case(
        "issue an activation code to peer",
        "POST",
        lambda w: f"volunteers/{w.volunteers['peer']}/activation",
        frozenset(OFFICES_IN),
    ),
    Case(
        "unlock the card of peer",
        "POST",
        lambda w: f"volunteers/{w.volunteers['peer']}/unlock",
        frozenset(OFFICES_IN),
    ),
    Case(
        "reissue the card of peer",
        "POST",
        lambda w: f"volunteers/{w.volunteers['peer']}/reissue-card",
        frozenset(OFFICES_IN),
    ),
    Case("list providers", "GET", "providers", STAFF_ANYWHERE),
    Case(
        "add a provider in xizhaosi",
        "POST",
        "providers",
        frozenset(OFFICES_IN),
        lambda w, p: {
            "code": f"repair-{next(_unique)}",
            "name": "李师傅家电维修",
            "district": "xizhaosi",
        },
    ),
    Case("read provider barber-wang", "GET", "providers/barber-wang", OFFICES_ABOVE),
    Case(
        "rename provider barber-wang",
        "PATCH",
        "providers/barber-wang",
        OFFICES_ABOVE,
        lambda w, p: {"name": f"王师傅便民理发 {next(_unique)}"},
    ),
    Case("list staff", "GET", "staff", STAFF_ANYWHERE),
    Case(
        "create a staff account in xizhaosi",
        "POST",
        "staff",
        OFFICES_ABOVE,
        lambda w, p: {
            "username": f"clerk{next(_unique)}",
            "name": "社区干事",
            "role": "office",
            "district": "xizhaosi",
        },
    ),
    Case(
        "disable a staff account of xizhaosi",
        "PATCH",
        lambda w: f"staff/{_fresh_staff(w)}",
        OFFICES_ABOVE,
        lambda w, p: {"status": "disabled"},
    ),
    Case(
        "reset the password of a staff account of xizhaosi",
        "POST",
        lambda w: f"staff/{_fresh_staff(w)}/password-reset",
        OFFICES_ABOVE,
    ),
    Case("list tokens", "GET", "tokens", STAFF_ANYWHERE),
    Case("read the audit log", "GET", "audit", STAFF_ANYWHERE),
    Case("read today's summary", "GET", "today", STAFF_ANYWHERE),
    Case(
        "read barber-wang's statement at xizhaosi",
        "GET",
        lambda w: (
            "providers/barber-wang/statement?district=xizhaosi&month="
            + datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
        ),
        READERS_IN,
    ),
    Case(
        "settle barber-wang at xizhaosi",
        "POST",
        "providers/barber-wang/settlements",
        frozenset(OFFICES_IN),
        lambda w, p: _settling(w),
    ),
    Case("list the imports of xizhaosi", "GET", "imports?district=xizhaosi", READERS_IN),
    Case(
        "import records into xizhaosi",
        "POST",
        "imports?district=xizhaosi&kind=records",
        frozenset(OFFICES_IN),
        lambda w, p: RawFile(_import_file(w)),
    ),
    Case(
        "read an import run of xizhaosi", "GET", lambda w: f"imports/{_import_run(w)}", READERS_IN
    ),
    Case(
        "read the refused rows of an import run of xizhaosi",
        "GET",
        lambda w: f"imports/{_import_run(w)}/problems",
        READERS_IN,
    ),
    Case(
        "post a previewed import into xizhaosi",
        "POST",
        lambda w: f"imports/{_import_run(w)}/post",
        frozenset(OFFICES_IN),
    ),
    Case(
        "read the records mapping of xizhaosi",
        "GET",
        "imports/mappings/records?district=xizhaosi",
        READERS_IN,
    ),
    Case(
        "set the records mapping of xizhaosi",
        "PUT",
        "imports/mappings/records?district=xizhaosi",
        frozenset(OFFICES_IN),
        lambda w, p: {"columns": {"kind": "类型"}, "values": {"kind": {"巡街": "patrol"}}},
    ),
    Case("list the honours of xizhaosi", "GET", "honours?district=xizhaosi", READERS_IN),
    Case(
        "propose an honour for xizhaosi",
        "POST",
        "honours",
        frozenset(OFFICES_IN),
        lambda w, p: (
            _served(w),
            {
                "district": "xizhaosi",
                "title": "十佳小巷管家",
                "since": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
                "until": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            },
        )[1],
    ),
    Case("read an honour of xizhaosi", "GET", lambda w: f"honours/{_honour(w)}", READERS_IN),
    Case(
        "finalise an honour of xizhaosi",
        "POST",
        lambda w: f"honours/{_honour(w, ended=True)}/finalise",
        frozenset(OFFICES_IN),
    ),
    Case(
        "withdraw an honour of xizhaosi",
        "POST",
        lambda w: f"honours/{_honour(w)}/withdraw",
        frozenset(OFFICES_IN),
        lambda w, p: {"reason": "统计有误"},
    ),
    Case(
        "answer an objection to an honour of xizhaosi",
        "POST",
        lambda w: f"honours/objections/{_objection(w)}/answer",
        frozenset(OFFICES_IN),
        lambda w, p: {"answer": "已核实"},
    ),
    Case("list the webhooks of xizhaosi", "GET", "webhooks?district=xizhaosi", READERS_IN),
    Case(
        "register a webhook for xizhaosi",
        "POST",
        "webhooks",
        frozenset(OFFICES_IN),
        lambda w, p: {
            "district": "xizhaosi",
            "url": "https://receiver.example/hook",
            "events": ["entry.posted", "record.approved"],
        },
    ),
    Case("read a webhook of xizhaosi", "GET", lambda w: f"webhooks/{_webhook(w)}", READERS_IN),
    Case(
        "disable a webhook of xizhaosi",
        "POST",
        lambda w: f"webhooks/{_webhook(w)}/disable",
        frozenset(OFFICES_IN),
    ),
    Case(
        "read the deliveries of a webhook of xizhaosi",
        "GET",
        lambda w: f"webhooks/{_webhook(w)}/deliveries",
        READERS_IN,
    ),
    Case(
        "replay a delivery of a webhook of xizhaosi",
        "POST",
        lambda w: f"webhooks/deliveries/{_failed_delivery(w)}/replay",
        frozenset(OFFICES_IN),
    ),
    Case("list the activities of xizhaosi", "GET", "activities?district=xizhaosi", READERS_IN),
    Case(
        "post an activity for xizhaosi",
        "POST",
        "activities",
        frozenset(OFFICES_IN),
        _activity_body,
    ),
    Case(
        "list my activities",
        "GET",
        "activities/mine",
        frozenset({"volunteer_self", "volunteer_peer", "volunteer_far"}),
    ),
    Case(
        "read an activity of xizhaosi",
        "GET",
        lambda w: f"activities/{_activity(w)}",
        READERS_IN | {"volunteer_self", "volunteer_peer"},
    ),
    Case(
        "edit an activity of xizhaosi",
        "PATCH",
        lambda w: f"activities/{_activity(w)}",
        frozenset(OFFICES_IN),
        lambda w, p: {"place": "4号楼", "places": 8},
    ),
    Case(
        "cancel an activity of xizhaosi",
        "POST",
        lambda w: f"activities/{_activity(w, signed=True)}/cancel",
        frozenset(OFFICES_IN),
        lambda w, p: {"reason": "下雨改期"},
    ),
    Case(
        "sign self up for an activity of xizhaosi",
        "POST",
        lambda w: f"activities/{_activity(w)}/signups",
        OFFICES_IN | {"volunteer_self"},
        lambda w, p: {"volunteer_id": w.volunteers["self"]},
    ),
    Case(
        "withdraw self from an activity of xizhaosi",
        "POST",
        lambda w: f"activities/{_activity(w, signed=True)}/signups/{w.volunteers['self']}/withdraw",
        OFFICES_IN | {"volunteer_self"},
    ),
    Case(
        "show the QR code of an activity of xizhaosi",
        "GET",
        lambda w: f"activities/{_activity(w, running=True)}/qr",
        frozenset(OFFICES_IN),
    ),
    Case(
        "scan the QR code of an activity of xizhaosi",
        "POST",
        lambda w: f"activities/{_scanned.get('id', 1)}/scan",
        frozenset({"volunteer_self"}),
        _scan_body,
        # peer may see the activity but never signed up for it.
        lambda principal: 409 if principal == "volunteer_peer" else 403,
    ),
    Case(
        "check self in at an activity of xizhaosi",
        "POST",
        lambda w: f"activities/{_activity(w, running=True, signed=True)}/check-in",
        frozenset(OFFICES_IN),
        lambda w, p: {"volunteer_id": w.volunteers["self"]},
    ),
    Case(
        "check self out of an activity of xizhaosi",
        "POST",
        lambda w: f"activities/{_activity(w, running=True, here=True)}/check-out",
        frozenset(OFFICES_IN),
        lambda w, p: {"volunteer_id": w.volunteers["self"]},
    ),
    Case(
        "read the attendance of an activity of xizhaosi",
        "GET",
        lambda w: f"activities/{_activity(w, signed=True)}/attendance",
        READERS_IN,
    ),
    Case(
        "close an activity of xizhaosi",
        "POST",
        lambda w: f"activities/{_activity(w, running=True, here=True)}/close",
        frozenset(OFFICES_IN),
    ),
]


# The operation (as in the OpenAPI document) each case exercises.
OPERATION_OF = {
    "create district below xizhaosi": "POST /api/v1/districts",
    "read district xizhaosi": "GET /api/v1/districts/{code}",
    "read district longtan": "GET /api/v1/districts/{code}",
    "register volunteer in xizhaosi": "POST /api/v1/volunteers",
    "read profile of self": "GET /api/v1/volunteers/{volunteer_id}",
    "read balance of self": "GET /api/v1/volunteers/{volunteer_id}/balance",
    "read the statement of self": "GET /api/v1/volunteers/{volunteer_id}/statement",
    "read entries of self": "GET /api/v1/volunteers/{volunteer_id}/entries",
    "read balance of far": "GET /api/v1/volunteers/{volunteer_id}/balance",
    "transfer from self to peer": "POST /api/v1/transfers",
    "list gift requests of xizhaosi": "GET /api/v1/transfers/requests",
    "list gift requests of longtan": "GET /api/v1/transfers/requests",
    "list pending records of xizhaosi": "GET /api/v1/service-records",
    "list records of longtan": "GET /api/v1/service-records",
    "approve a gift request of self": "POST /api/v1/transfers/requests/{request_id}/approve",
    "reject a gift request of self": "POST /api/v1/transfers/requests/{request_id}/reject",
    "reverse an entry of self": "POST /api/v1/entries/{entry_id}/reverse",
    "verify the ledger": "GET /api/v1/ledger/verify",
    "open a kiosk session for self": "POST /api/v1/kiosk/sessions",
    "read the current session": "GET /api/v1/kiosk/sessions/current",
    "activate a new card of xizhaosi at a kiosk": "POST /api/v1/kiosk/activate",
    "create a kiosk token in xizhaosi": "POST /api/v1/tokens",
    "revoke a kiosk token of xizhaosi": "DELETE /api/v1/tokens/{token_id}",
    "issue a pairing code for a kiosk of xizhaosi": "POST /api/v1/tokens/{token_id}/pairing-code",
    "issue a link for barber-wang of longtan": "POST /api/v1/providers/{code}/links",
    "end the current session": "DELETE /api/v1/kiosk/sessions/current",
    "record service of self": "POST /api/v1/service-records",
    "change the PIN of self": "PUT /api/v1/volunteers/{volunteer_id}/pin",
    "approve a record of self": "POST /api/v1/service-records/{record_id}/approve",
    "reject a record of self": "POST /api/v1/service-records/{record_id}/reject",
    "decide records of self in bulk": "POST /api/v1/service-records/decide",
    "verify a record of self": "POST /api/v1/service-records/{record_id}/verify",
    "decide gift requests of self in bulk": "POST /api/v1/transfers/requests/decide",
    "list the catalog of xizhaosi": "GET /api/v1/districts/{code}/catalog",
    "list the catalog for self": "GET /api/v1/districts/{code}/catalog",
    "redeem for self": "POST /api/v1/redemptions",
    "fulfil a redemption of self": "POST /api/v1/redemptions/{redemption_id}/fulfil",
    "cancel a redemption of self": "POST /api/v1/redemptions/{redemption_id}/cancel",
    "read a redemption of self": "GET /api/v1/redemptions/{redemption_id}",
    "find a redemption of self by voucher": "GET /api/v1/redemptions",
    "fulfil a redemption of self by voucher": "POST /api/v1/redemptions/fulfil",
    "list the plugins": "GET /api/v1/plugins",
    "list the service records of self": "GET /api/v1/volunteers/{volunteer_id}/service-records",
    "list the vouchers of self": "GET /api/v1/volunteers/{volunteer_id}/redemptions",
    "read the policy of xizhaosi": "GET /api/v1/districts/{code}/policy",
    "set the stars policy of xizhaosi": "PUT /api/v1/districts/{code}/policy/{plugin}",
    "preview a steward draft for xizhaosi": (
        "POST /api/v1/districts/{code}/policy/{plugin}/preview"
    ),
    "read what xizhaosi sets for stars": "GET /api/v1/districts/{code}/policy/{plugin}",
    "patch the caps policy of xizhaosi": "PATCH /api/v1/districts/{code}/policy/{plugin}",
    "list the stars versions of xizhaosi": "GET /api/v1/districts/{code}/policy/{plugin}/versions",
    "read a stars version of xizhaosi": (
        "GET /api/v1/districts/{code}/policy/{plugin}/versions/{number}"
    ),
    "compare two stars versions of xizhaosi": "GET /api/v1/districts/{code}/policy/{plugin}/diff",
    "export the records of xizhaosi": "GET /api/v1/exports/{dataset}",
    "rank the volunteers of xizhaosi": "GET /api/v1/rankings",
    "report on xizhaosi": "GET /api/v1/reports",
    "export the entries of longtan as xlsx": "GET /api/v1/exports/{dataset}",
    "save a caps draft for xizhaosi": "PUT /api/v1/districts/{code}/policy/{plugin}/draft",
    "read the caps draft of xizhaosi": "GET /api/v1/districts/{code}/policy/{plugin}/draft",
    "preview the caps draft of xizhaosi": (
        "POST /api/v1/districts/{code}/policy/{plugin}/draft/preview"
    ),
    "activate the caps draft of xizhaosi": (
        "POST /api/v1/districts/{code}/policy/{plugin}/draft/activate"
    ),
    "discard the caps draft of xizhaosi": "DELETE /api/v1/districts/{code}/policy/{plugin}/draft",
    "say who I am": "GET /api/v1/me",
    "list the district tree": "GET /api/v1/districts",
    "search volunteers of xizhaosi": "GET /api/v1/volunteers",
    "edit peer": "PATCH /api/v1/volunteers/{volunteer_id}",
    "reset the PIN of peer": "POST /api/v1/volunteers/{volunteer_id}/pin-reset",
    "issue an activation code to peer": "POST /api/v1/volunteers/{volunteer_id}/activation",
    "unlock the card of peer": "POST /api/v1/volunteers/{volunteer_id}/unlock",
    "reissue the card of peer": "POST /api/v1/volunteers/{volunteer_id}/reissue-card",
    "list providers": "GET /api/v1/providers",
    "add a provider in xizhaosi": "POST /api/v1/providers",
    "read provider barber-wang": "GET /api/v1/providers/{code}",
    "rename provider barber-wang": "PATCH /api/v1/providers/{code}",
    "list staff": "GET /api/v1/staff",
    "create a staff account in xizhaosi": "POST /api/v1/staff",
    "disable a staff account of xizhaosi": "PATCH /api/v1/staff/{staff_id}",
    "reset the password of a staff account of xizhaosi": (
        "POST /api/v1/staff/{staff_id}/password-reset"
    ),
    "list tokens": "GET /api/v1/tokens",
    "read the audit log": "GET /api/v1/audit",
    "read today's summary": "GET /api/v1/today",
    "read barber-wang's statement at xizhaosi": "GET /api/v1/providers/{code}/statement",
    "settle barber-wang at xizhaosi": "POST /api/v1/providers/{code}/settlements",
    "list the imports of xizhaosi": "GET /api/v1/imports",
    "import records into xizhaosi": "POST /api/v1/imports",
    "read an import run of xizhaosi": "GET /api/v1/imports/{run_id}",
    "read the refused rows of an import run of xizhaosi": ("GET /api/v1/imports/{run_id}/problems"),
    "post a previewed import into xizhaosi": "POST /api/v1/imports/{run_id}/post",
    "read the records mapping of xizhaosi": "GET /api/v1/imports/mappings/{kind}",
    "set the records mapping of xizhaosi": "PUT /api/v1/imports/mappings/{kind}",
    "list the honours of xizhaosi": "GET /api/v1/honours",
    "propose an honour for xizhaosi": "POST /api/v1/honours",
    "read an honour of xizhaosi": "GET /api/v1/honours/{honour_id}",
    "finalise an honour of xizhaosi": "POST /api/v1/honours/{honour_id}/finalise",
    "withdraw an honour of xizhaosi": "POST /api/v1/honours/{honour_id}/withdraw",
    "answer an objection to an honour of xizhaosi": (
        "POST /api/v1/honours/objections/{objection_id}/answer"
    ),
    "list the webhooks of xizhaosi": "GET /api/v1/webhooks",
    "register a webhook for xizhaosi": "POST /api/v1/webhooks",
    "read a webhook of xizhaosi": "GET /api/v1/webhooks/{endpoint_id}",
    "disable a webhook of xizhaosi": "POST /api/v1/webhooks/{endpoint_id}/disable",
    "read the deliveries of a webhook of xizhaosi": "GET /api/v1/webhooks/{endpoint_id}/deliveries",
    "replay a delivery of a webhook of xizhaosi": (
        "POST /api/v1/webhooks/deliveries/{delivery_id}/replay"
    ),
    "list the activities of xizhaosi": "GET /api/v1/activities",
    "post an activity for xizhaosi": "POST /api/v1/activities",
    "list my activities": "GET /api/v1/activities/mine",
    "read an activity of xizhaosi": "GET /api/v1/activities/{activity_id}",
    "edit an activity of xizhaosi": "PATCH /api/v1/activities/{activity_id}",
    "cancel an activity of xizhaosi": "POST /api/v1/activities/{activity_id}/cancel",
    "sign self up for an activity of xizhaosi": "POST /api/v1/activities/{activity_id}/signups",
    "withdraw self from an activity of xizhaosi": (
        "POST /api/v1/activities/{activity_id}/signups/{volunteer_id}/withdraw"
    ),
    "show the QR code of an activity of xizhaosi": "GET /api/v1/activities/{activity_id}/qr",
    "scan the QR code of an activity of xizhaosi": "POST /api/v1/activities/{activity_id}/scan",
    "check self in at an activity of xizhaosi": "POST /api/v1/activities/{activity_id}/check-in",
    "check self out of an activity of xizhaosi": (
        "POST /api/v1/activities/{activity_id}/check-out"
    ),
    "read the attendance of an activity of xizhaosi": (
        "GET /api/v1/activities/{activity_id}/attendance"
    ),
    "close an activity of xizhaosi": "POST /api/v1/activities/{activity_id}/close",
}

# Changes that write no audit row, and why. Point movements a volunteer, a kiosk or a
# provider makes (or an office makes for them) are recorded by the ledger itself: each
# entry names its actor and sits in the hash chain, and the record or redemption row
# names who made it. Opening and ending a kiosk session changes nothing but the session.
AUDITED_BY_THE_LEDGER = {
    "POST /api/v1/service-records",
    "POST /api/v1/redemptions",
    "POST /api/v1/redemptions/{redemption_id}/fulfil",
    "POST /api/v1/redemptions/fulfil",
    "POST /api/v1/redemptions/{redemption_id}/cancel",
    "POST /api/v1/transfers",
    "POST /api/v1/kiosk/sessions",
    "DELETE /api/v1/kiosk/sessions/current",
    # A preview writes nothing.
    "POST /api/v1/districts/{code}/policy/{plugin}/preview",
    "POST /api/v1/districts/{code}/policy/{plugin}/draft/preview",
}


def test_api_matrix_covers_every_operation(api, app):
    paths = api.get("openapi.json").get_json()["paths"]
    documented = {
        f"{method.upper()} {path}"
        for path, operations in paths.items()
        for method in operations
        if method != "parameters"
    }
    assert set(OPERATION_OF) == {case.name for case in CASES}
    # Health is for everyone, token or not: test_api_health_needs_no_token.
    health = {"GET /api/v1/health", "GET /api/v1/health/live", "GET /api/v1/health/ready"}
    # A public notice and its objections are for everyone too: tests/test_honours.py.
    notices = {"GET /api/v1/notices/{code}", "POST /api/v1/notices/{code}/objections"}
    assert documented - set(OPERATION_OF.values()) == health | notices


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_api_roles_reach_only_their_nodes(api, world, case):
    outcomes = {}
    audited = _audit_rows()
    for principal in PRINCIPALS:
        body = case.body(world, principal) if case.body else None
        response = api.call(
            case.method,
            case.url(world),
            world.tokens[principal],
            body,
            headers={"Idempotency-Key": world.key()},
        )
        outcomes[principal] = response.status_code
        if principal in case.allowed:
            assert response.status_code < 300, (principal, response.get_json())
            if case.method != "GET" and OPERATION_OF[case.name] not in AUDITED_BY_THE_LEDGER:
                assert _audit_rows() > audited, f"{case.name} by {principal} wrote no audit row"
                audited = _audit_rows()
        else:
            assert response.status_code == case.denied(principal), (
                principal,
                response.get_json(),
            )
            assert response.content_type == "application/problem+json"
    anonymous = api.call(
        case.method, case.url(world), None, case.body(world, "anonymous") if case.body else None
    )
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")


def _audit_rows() -> int:
    from sqlalchemy import func, select

    from points.extensions import db
    from points.models import AuditEvent

    count = db.session.scalar(select(func.count()).select_from(AuditEvent))
    db.session.rollback()
    return count


def test_api_health_needs_no_token(api, app):
    for path in ("health", "health/ready"):
        response = api.get(path)
        assert response.status_code == 200
        assert response.get_json() == {"status": "ok", "database": "ok"}
    assert api.get("health/live").get_json() == {"status": "ok"}


def test_api_kiosk_never_sees_a_phone_number(api, world):
    phone = "13900000001"  # self's, from the conftest fixture
    for principal in ("kiosk_in", "session"):
        for path in [
            f"volunteers/{world.volunteers['self']}",
            f"volunteers/{world.volunteers['self']}/balance",
            f"volunteers/{world.volunteers['self']}/entries",
            "kiosk/sessions/current",
            "districts/xizhaosi",
        ]:
            response = api.get(path, world.tokens[principal])
            assert phone not in response.get_data(as_text=True), (principal, path)
    opened = api.post(
        "kiosk/sessions",
        world.tokens["kiosk_in"],
        {"card_code": world.cards["self"], "pin": world.pins["self"]},
    )
    assert opened.status_code == 201
    assert phone not in opened.get_data(as_text=True)
    assert opened.get_json()["display_name"] == "王*英"


def test_api_volunteer_never_sees_another_volunteer(api, world):
    me = world.tokens["volunteer_self"]
    for other in ("peer", "far"):
        volunteer_id = world.volunteers[other]
        for path in ("", "/balance", "/entries"):
            response = api.get(f"volunteers/{volunteer_id}{path}", me)
            assert response.status_code == 403, (other, path)
    # Not even whether an id exists.
    assert api.get("volunteers/99999", me).status_code == 403


def test_api_phone_is_masked_except_for_offices(api, world):
    path = f"volunteers/{world.volunteers['self']}"
    assert api.get(path, world.tokens["office_in"]).get_json()["phone"] == "13900000001"
    assert api.get(path, world.tokens["admin"]).get_json()["phone"] == "13900000001"
    for principal in ("auditor_in", "volunteer_self"):
        assert api.get(path, world.tokens[principal]).get_json()["phone"] == "139****0001"
    assert api.get(path, world.tokens["auditor_in"]).get_json()["card_code"] is None

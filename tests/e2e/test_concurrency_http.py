"""Concurrency over HTTP: parallel kiosk redemptions of one balance never overdraw, a
request retried with the same Idempotency-Key posts once, parallel PIN guesses get five."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from points import ledger
from points.directory import create_district, create_token, register_volunteer
from points.extensions import db
from points.models import Redemption
from points.policy import set_policy
from points.verify import verify
from tests.e2e.server import seeding

HAIRCUT = {"names": {"zh-CN": "理发", "en": "haircut"}, "cost": 30, "provider": "barber-wang"}
THREADS = 8


@pytest.fixture
def workers() -> int:
    return 4


@pytest.fixture
def kiosk_card(live):
    """A volunteer with 100 points and a card, and a kiosk of their community."""
    with seeding(live.url):
        create_district("xizhaosi", "夕照寺社区", "community", parent="longtan")
        set_policy(
            "longtan",
            "catalog",
            {"items": {"haircut": HAIRCUT}},
            author="office:e2e",
            effective_from=datetime.now(UTC) - timedelta(days=1),
        )
        volunteer = register_volunteer("王秀英", "xizhaosi", "204857")
        ledger.earn(volunteer.id, 100, actor="office:e2e", reason="patrol")
        _, kiosk = create_token("kiosk", "xizhaosi", name="kiosk")
        return volunteer.id, volunteer.card_code, kiosk


def together(task, count: int = THREADS) -> list:
    """Run task(i) in `count` threads released at one moment; return the replies."""
    barrier = threading.Barrier(count)

    def run(i):
        barrier.wait()
        return task(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def _sessions(live, card: str, kiosk: str, count: int) -> list[str]:
    tokens = []
    for _ in range(count):
        reply = live.http.post("kiosk/sessions", kiosk, {"card_code": card, "pin": "204857"})
        assert reply.status == 201, reply.body
        tokens.append(reply.body["token"])
    return tokens


def _check_ledger(url: str, volunteer_id: int) -> ledger.Balance:
    with seeding(url):
        assert verify().ok
        return ledger.balance(volunteer_id)


def test_e2e_parallel_kiosk_redemptions_never_overdraw(live, kiosk_card):
    volunteer_id, card, kiosk = kiosk_card
    sessions = _sessions(live, card, kiosk, THREADS)
    replies = together(
        lambda i: live.http.post(
            "redemptions", sessions[i], {"sku": "haircut"}, headers={"Idempotency-Key": f"p-{i}"}
        )
    )
    statuses = sorted(reply.status for reply in replies)
    assert statuses == [201] * 3 + [409] * (THREADS - 3), [r.body for r in replies]
    assert not any(reply.replayed for reply in replies)
    refused = [reply.body for reply in replies if reply.status == 409]
    assert all(body["type"].endswith("/insufficient-points") for body in refused)
    points = _check_ledger(live.url, volunteer_id)
    assert (points.balance, points.held, points.available) == (100, 90, 10)


def test_e2e_retries_with_one_key_post_once(live, kiosk_card):
    volunteer_id, card, kiosk = kiosk_card
    (session,) = _sessions(live, card, kiosk, 1)
    replies = together(
        lambda i: live.http.post(
            "redemptions", session, {"sku": "haircut"}, headers={"Idempotency-Key": "same"}
        )
    )
    assert [reply.status for reply in replies] == [201] * THREADS, [r.body for r in replies]
    assert sum(not reply.replayed for reply in replies) == 1
    assert len({reply.body["voucher_code"] for reply in replies}) == 1
    points = _check_ledger(live.url, volunteer_id)
    assert points.held == 30
    with seeding(live.url):
        assert db.session.scalar(select(func.count(Redemption.id))) == 1


def test_e2e_parallel_pin_guesses_get_five_tries_in_all(live, kiosk_card):
    _, card, kiosk = kiosk_card
    guesses = 10
    replies = together(
        lambda i: live.http.post("kiosk/sessions", kiosk, {"card_code": card, "pin": f"{i:06d}"}),
        guesses,
    )
    statuses = sorted(reply.status for reply in replies)
    # Each attempt is counted before its PIN is checked: four wrong ones say how many
    # tries are left, the fifth locks the card, and every other is refused unchecked.
    assert statuses == [422] * 4 + [423] * (guesses - 4), [r.body for r in replies]
    assert (
        live.http.post("kiosk/sessions", kiosk, {"card_code": card, "pin": "204857"}).status == 423
    )

"""Property tests: random sequences of ledger operations keep every invariant.

A small model predicts each volunteer's balance and held points and which calls must be
refused; after every step the ledger must agree, and at the end `verify` must pass.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from points import errors, ledger
from points.directory import create_district, create_provider, register_volunteer
from points.verify import verify

BASE = datetime(2026, 1, 1, tzinfo=UTC)
EXPIRIES = [None, BASE + timedelta(days=1), BASE + timedelta(days=2)]

points_st = st.integers(min_value=1, max_value=60)
who = st.integers(min_value=0, max_value=2)
index = st.integers(min_value=0, max_value=30)
operation = st.one_of(
    st.tuples(st.just("earn"), who, points_st, st.integers(0, 2)),
    st.tuples(st.just("hold"), who, points_st),
    st.tuples(st.just("post"), index),
    st.tuples(st.just("void"), index),
    st.tuples(st.just("redeem"), who, points_st),
    st.tuples(st.just("transfer"), who, who, points_st),
    st.tuples(st.just("expire"), st.integers(1, 2)),
    st.tuples(st.just("reverse"), index),
)


class Model:
    """What the ledger should hold: per volunteer balance and held points."""

    def __init__(self, volunteers):
        self.volunteers = volunteers
        self.balance = {v: 0 for v in volunteers}
        self.held = {v: 0 for v in volunteers}
        self.holds = []  # (hold id, volunteer, points, status)
        self.entries = []  # (entry id, {volunteer: delta}, reversed?)

    def available(self, v):
        return self.balance[v] - self.held[v]

    def apply(self, deltas):
        for v, delta in deltas.items():
            self.balance[v] += delta


def entry_deltas(entry, account_owner):
    deltas = {}
    for part in [entry] + (
        [ledger.load_entry(entry.related_entry_id)] if entry.related_entry_id else []
    ):
        for account_id, amount in part.postings:
            if account_id in account_owner:
                owner = account_owner[account_id]
                deltas[owner] = deltas.get(owner, 0) + amount
    return deltas


def run(model, provider, account_owner, step):
    kind = step[0]
    if kind == "earn":
        _, w, points, expiry = step
        v = model.volunteers[w]
        entry = ledger.earn(
            v,
            points,
            actor="t",
            reason="earn",
            expires_at=EXPIRIES[expiry],
            idempotency_key=str(uuid.uuid4()),
        )
        model.apply({v: points})
        model.entries.append([entry.id, {v: points}, False, "earn"])
    elif kind in ("hold", "redeem"):
        _, w, points = step
        v = model.volunteers[w]
        expected_ok = model.available(v) >= points
        try:
            if kind == "hold":
                hold = ledger.hold(v, points, provider_id=provider, actor="t", reason="hold")
                model.held[v] += points
                model.holds.append([hold.id, v, points, "pending"])
            else:
                entry = ledger.redeem(v, points, provider_id=provider, actor="t", reason="r")
                model.apply({v: -points})
                model.entries.append([entry.id, {v: -points}, False, "redeem"])
            assert expected_ok
        except errors.InsufficientPointsError:
            assert not expected_ok
    elif kind in ("post", "void"):
        if not model.holds:
            return
        hold = model.holds[step[1] % len(model.holds)]
        hold_id, v, points, status = hold
        try:
            if kind == "post":
                entry = ledger.post_hold(hold_id, actor="t")
                model.apply({v: -points})
                model.entries.append([entry.id, {v: -points}, False, "redeem"])
            else:
                ledger.void_hold(hold_id, actor="t", reason="void")
            model.held[v] -= points
            hold[3] = kind
            assert status == "pending"
        except errors.HoldStateError:
            assert status != "pending"
    elif kind == "transfer":
        _, a, b, points = step
        giver, receiver = model.volunteers[a], model.volunteers[b]
        try:
            entry = ledger.transfer(giver, receiver, points, actor="t", reason="gift")
            assert giver != receiver and model.available(giver) >= points
            deltas = entry_deltas(entry, account_owner)
            assert deltas == {giver: -points, receiver: points}
            model.apply(deltas)
            model.entries.append([entry.id, deltas, False, "transfer"])
        except errors.InvalidInputError:
            assert giver == receiver
        except errors.InsufficientPointsError:
            assert model.available(giver) < points
    elif kind == "expire":
        before = {v: model.available(v) for v in model.volunteers}
        for entry in ledger.expire_lots(BASE + timedelta(days=step[1])):
            deltas = entry_deltas(entry, account_owner)
            ((v, delta),) = deltas.items()
            assert 0 < -delta <= before[v]
            model.apply(deltas)
            model.entries.append([entry.id, deltas, False, "expire"])
    elif kind == "reverse":
        if not model.entries:
            return
        record = model.entries[step[1] % len(model.entries)]
        entry_id, deltas, reversed_already, entry_kind = record
        undo = {v: -d for v, d in deltas.items()}
        affordable = all(model.available(v) >= -d for v, d in undo.items() if d < 0)
        try:
            reversal = ledger.reverse(entry_id, actor="t", reason="correction")
            assert not reversed_already and entry_kind != "reversal" and affordable
            model.apply(undo)
            record[2] = True
            model.entries.append([reversal.id, undo, True, "reversal"])
        except errors.AlreadyReversedError:
            assert reversed_already or entry_kind == "reversal"
        except errors.InsufficientPointsError:
            assert not affordable


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(operation, min_size=1, max_size=40))
def test_random_operations_keep_every_invariant(fresh_app, steps):
    with fresh_app():
        create_district("city", "市", "city")
        create_district("east", "东", "community", parent="city")
        create_district("west", "西", "community", parent="city")
        provider = create_provider("shop", "店", "city").id
        volunteers = [
            register_volunteer("甲", "east", "204857").id,
            register_volunteer("乙", "east", "204857").id,
            register_volunteer("丙", "west", "204857").id,
        ]
        account_owner = {ledger.balance(v).account_id: v for v in volunteers}
        model = Model(volunteers)
        for step in steps:
            run(model, provider, account_owner, step)
            for v in volunteers:
                got = ledger.balance(v)
                assert (got.balance, got.held) == (model.balance[v], model.held[v]), step
        ledger.seal()
        report = verify()
        assert report.ok, report.problems

"""Checks of every ledger invariant, each a small function returning problems as data."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select, text

from points import budgets, database, ledger, rollups
from points.extensions import db
from points.ledger.posting import lot_spending
from points.models import (
    ACCOUNT_SHAPE,
    Account,
    ChainHead,
    Entry,
    Hold,
    IdempotencyKey,
    Lot,
    Posting,
    Seal,
    ServiceMinutes,
    UnsealedEntry,
    Volunteer,
)

# Offending rows listed per problem, at most.
SAMPLE = 20


@dataclass(frozen=True)
class Problem:
    """One broken invariant: which check, what is wrong, and the rows concerned."""

    check: str
    message: str
    rows: tuple = ()


@dataclass
class Report:
    """The outcome of `verify`: what was counted and every problem found."""

    counts: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        counted = ", ".join(f"{n} {what}" for what, n in self.counts.items())
        if self.ok:
            return f"ledger OK: {counted}"
        return f"ledger BROKEN: {len(self.problems)} problem(s) in {counted}"


def _rows(query) -> tuple:
    return tuple(tuple(row) for row in db.session.execute(query.limit(SAMPLE)).all())


def check_entries_balance() -> list[Problem]:
    """Every entry's postings sum to zero, every entry has two postings or more."""
    problems = []
    unbalanced = _rows(
        select(Posting.entry_id, func.sum(Posting.amount))
        .group_by(Posting.entry_id)
        .having(func.sum(Posting.amount) != 0)
        .order_by(Posting.entry_id)
    )
    if unbalanced:
        problems.append(Problem("zero-sum", "entries whose postings do not sum to 0", unbalanced))
    thin = _rows(
        select(Entry.id, func.count(Posting.id))
        .outerjoin(Posting, Posting.entry_id == Entry.id)
        .group_by(Entry.id)
        .having(func.count(Posting.id) < 2)
        .order_by(Entry.id)
    )
    if thin:
        problems.append(Problem("zero-sum", "entries with fewer than two postings", thin))
    total = db.session.scalar(select(func.coalesce(func.sum(Posting.amount), 0)))
    if total != 0:
        problems.append(Problem("zero-sum", f"all postings sum to {total}, not 0"))
    return problems


def check_postings_in_entry_district() -> list[Problem]:
    """Every posting is in its entry's district and its account's district."""
    rows = _rows(
        select(Posting.id, Posting.entry_id, Posting.account_id)
        .join(Entry, Entry.id == Posting.entry_id)
        .join(Account, Account.id == Posting.account_id)
        .where(
            (Posting.district_id != Entry.district_id) | (Account.district_id != Entry.district_id)
        )
        .order_by(Posting.id)
    )
    return [Problem("district", "postings outside their entry's district", rows)] if rows else []


def check_non_negative() -> list[Problem]:
    """No volunteer account is below zero in balance, held or available points."""
    rows = _rows(
        select(Account.id, Account.balance, Account.held)
        .where(
            Account.kind == "volunteer",
            (Account.balance < 0) | (Account.held < 0) | (Account.balance < Account.held),
        )
        .order_by(Account.id)
    )
    return [Problem("non-negative", "accounts below zero", rows)] if rows else []


def check_account_shapes() -> list[Problem]:
    """Each account is of a known kind and status, names the owner its kind calls for
    and no other, and holds points only if it is a volunteer's. The database refuses
    such rows (a CHECK on SQLite, a trigger on PostgreSQL that a replica-mode session
    skips); this finds one that got past it."""
    # A condition that is NULL passes, as in a CHECK constraint.
    rows = _rows(
        select(Account.id, Account.kind, Account.status, Account.volunteer_id)
        .where(or_(*(text(f"NOT ({condition})") for _, condition in ACCOUNT_SHAPE)))
        .order_by(Account.id)
    )
    return [Problem("accounts", "accounts of a broken shape", rows)] if rows else []


def check_cached_balances() -> list[Problem]:
    """Cached balances equal the sum of postings; held equals the pending holds."""
    posted = (
        select(Posting.account_id, func.sum(Posting.amount).label("total"))
        .group_by(Posting.account_id)
        .subquery()
    )
    pending = (
        select(Hold.account_id, func.sum(Hold.amount).label("total"))
        .where(Hold.status == "pending")
        .group_by(Hold.account_id)
        .subquery()
    )
    problems = []
    wrong_balance = _rows(
        select(Account.id, Account.balance, func.coalesce(posted.c.total, 0))
        .outerjoin(posted, posted.c.account_id == Account.id)
        .where(Account.kind == "volunteer", Account.balance != func.coalesce(posted.c.total, 0))
        .order_by(Account.id)
    )
    if wrong_balance:
        problems.append(
            Problem(
                "cached-balance",
                "balance differs from postings (account, cached, sum)",
                wrong_balance,
            )
        )
    wrong_held = _rows(
        select(Account.id, Account.held, func.coalesce(pending.c.total, 0))
        .outerjoin(pending, pending.c.account_id == Account.id)
        .where(Account.held != func.coalesce(pending.c.total, 0))
        .order_by(Account.id)
    )
    if wrong_held:
        problems.append(
            Problem(
                "cached-balance",
                "held differs from pending holds (account, cached, sum)",
                wrong_held,
            )
        )
    return problems


def check_lots() -> list[Problem]:
    """Lots' remaining sum to the balance, each lot's remaining is amount less what was
    spent of it (lot uses and the debit postings that name it), and a posting names only
    a lot of its own account."""
    lots = (
        select(Lot.account_id, func.sum(Lot.remaining).label("total"))
        .group_by(Lot.account_id)
        .subquery()
    )
    problems = []
    wrong_sum = _rows(
        select(Account.id, Account.balance, func.coalesce(lots.c.total, 0))
        .outerjoin(lots, lots.c.account_id == Account.id)
        .where(Account.kind == "volunteer", Account.balance != func.coalesce(lots.c.total, 0))
        .order_by(Account.id)
    )
    if wrong_sum:
        problems.append(
            Problem("lots", "lots do not sum to the balance (account, balance, lots)", wrong_sum)
        )
    spending = lot_spending()
    uses = (
        select(spending.c.lot_id, func.sum(spending.c.amount).label("total"))
        .group_by(spending.c.lot_id)
        .subquery()
    )
    wrong_lot = _rows(
        select(Lot.id, Lot.amount, Lot.remaining, func.coalesce(uses.c.total, 0))
        .outerjoin(uses, uses.c.lot_id == Lot.id)
        .where(Lot.remaining != Lot.amount - func.coalesce(uses.c.total, 0))
        .order_by(Lot.id)
    )
    if wrong_lot:
        problems.append(
            Problem(
                "lots",
                "lot remaining is not amount less uses (lot, amount, remaining, used)",
                wrong_lot,
            )
        )
    # A posting names a lot only as the one lot its debit spent: an existing lot of its
    # account (SQLite has no key for it).
    wrong_owner = _rows(
        select(Posting.id, Posting.lot_id, Posting.account_id, Posting.amount)
        .outerjoin(Lot, Lot.id == Posting.lot_id)
        .where(
            Posting.lot_id.is_not(None),
            Lot.id.is_(None) | (Lot.account_id != Posting.account_id) | (Posting.amount >= 0),
        )
        .order_by(Posting.id)
    )
    if wrong_owner:
        problems.append(
            Problem(
                "lots",
                "posting names a lot it did not spend (posting, lot, account, amount)",
                wrong_owner,
            )
        )
    return problems


def check_clearing() -> list[Problem]:
    """Clearing accounts net to zero across the tree: cross-district transfers are whole."""
    total = db.session.scalar(
        select(func.coalesce(func.sum(Posting.amount), 0))
        .join(Account, Account.id == Posting.account_id)
        .where(Account.kind == "clearing")
    )
    return [] if total == 0 else [Problem("clearing", f"clearing accounts net to {total}, not 0")]


def check_service_minutes() -> list[Problem]:
    """Each volunteer's cached service minutes equal the sum of their service rows."""
    rows_sum = (
        select(ServiceMinutes.volunteer_id, func.sum(ServiceMinutes.minutes).label("total"))
        .group_by(ServiceMinutes.volunteer_id)
        .subquery()
    )
    rows = _rows(
        select(Volunteer.id, Volunteer.service_minutes, func.coalesce(rows_sum.c.total, 0))
        .outerjoin(rows_sum, rows_sum.c.volunteer_id == Volunteer.id)
        .where(Volunteer.service_minutes != func.coalesce(rows_sum.c.total, 0))
        .order_by(Volunteer.id)
    )
    return [Problem("service-minutes", "cached minutes differ from rows", rows)] if rows else []


def check_idempotency_keys() -> list[Problem]:
    """Every idempotency key has a result (its unit of work committed whole)."""
    rows = _rows(
        select(IdempotencyKey.scope, IdempotencyKey.key)
        .where(IdempotencyKey.result.is_(None))
        .order_by(IdempotencyKey.scope, IdempotencyKey.key)
    )
    return [Problem("idempotency", "keys without a result", rows)] if rows else []


def check_entry_hashes() -> list[Problem]:
    """Every entry's stored hash matches its content and postings (edits show here)."""
    bad = []
    postings: dict[int, list[tuple[int, int]]] = {}
    columns = [getattr(Entry, name) for name in ledger.HASHED_FIELDS]
    last_id = 0
    # In pages, so that memory stays flat on a large ledger.
    while True:
        entries = db.session.execute(
            select(Entry.id, Entry.hash, *columns)
            .where(Entry.id > last_id)
            .order_by(Entry.id)
            .limit(5000)
        ).all()
        if not entries:
            break
        first, last_id = entries[0].id, entries[-1].id
        postings.clear()
        for entry_id, account_id, amount in db.session.execute(
            select(Posting.entry_id, Posting.account_id, Posting.amount).where(
                Posting.entry_id.between(first, last_id)
            )
        ):
            postings.setdefault(entry_id, []).append((account_id, amount))
        for row in entries:
            fields = {name: getattr(row, name) for name in ledger.HASHED_FIELDS}
            if ledger.entry_hash(fields, postings.get(row.id, [])) != row.hash:
                bad.append((row.id,))
    if bad:
        return [
            Problem(
                "hash", "entries whose content no longer matches their hash", tuple(bad[:SAMPLE])
            )
        ]
    return []


def check_chains() -> list[Problem]:
    """Each district's seals form an unbroken chain over existing entries of that district;
    every entry is sealed or queued for sealing, never both."""
    problems = []
    heads = {row.district_id: row for row in db.session.execute(select(ChainHead)).scalars()}
    districts = db.session.scalars(select(Seal.district_id).distinct()).all()
    for district_id in sorted(set(districts) | set(heads)):
        prev, seq = ledger.GENESIS_HASH, 0
        broken = None
        for link in db.session.execute(
            select(
                Seal.seq, Seal.entry_id, Seal.prev_hash, Seal.hash, Entry.hash, Entry.district_id
            )
            .outerjoin(Entry, Entry.id == Seal.entry_id)
            .where(Seal.district_id == district_id)
            .order_by(Seal.seq)
        ):
            seq += 1
            expected = ledger.seal_hash(prev, district_id, seq, link.entry_id, link[4] or "")
            if (
                link.seq != seq
                or link.prev_hash != prev
                or link[4] is None
                or link[5] != district_id
                or link.hash != expected
            ):
                broken = (district_id, link.seq, link.entry_id)
                break
            prev = link.hash
        if broken:
            problems.append(
                Problem("chain", "hash chain broken at (district, seq, entry)", (broken,))
            )
            continue
        head = heads.get(district_id)
        if head is None or head.seq != seq or head.hash != prev:
            problems.append(Problem("chain", f"chain head of district {district_id} is wrong"))
    orphans = _rows(
        select(Entry.id)
        .outerjoin(Seal, Seal.entry_id == Entry.id)
        .outerjoin(UnsealedEntry, UnsealedEntry.entry_id == Entry.id)
        .where(Seal.entry_id.is_(None), UnsealedEntry.entry_id.is_(None))
        .order_by(Entry.id)
    )
    if orphans:
        problems.append(Problem("chain", "entries neither sealed nor queued", orphans))
    twice = _rows(
        select(UnsealedEntry.entry_id)
        .join(Seal, Seal.entry_id == UnsealedEntry.entry_id)
        .order_by(UnsealedEntry.entry_id)
    )
    if twice:
        problems.append(Problem("chain", "entries both sealed and queued", twice))
    return problems


def check_rollups() -> list[Problem]:
    """The ledger hours (the rollup reports read) equal sums over the postings."""
    differing = rollups.check()
    if not differing:
        return []
    return [
        Problem(
            "rollups",
            "ledger hours that differ from their postings "
            "(key, stored, from postings); `points ledger rollups` rebuilds them",
            tuple(differing[:SAMPLE]),
        )
    ]


def check_budgets() -> list[Problem]:
    """The budget counters equal the awards of each node and period they count (the
    points of earn entries of service records in the node's subtree, dated in the
    period), and each stripe stays within the chunk it reserved."""
    differing = budgets.check()
    if not differing:
        return []
    return [
        Problem(
            "budgets",
            "budget counters that differ from the awards; `points ledger budgets` rebuilds them",
            tuple(differing[:SAMPLE]),
        )
    ]


CHECKS: list[Callable[[], list[Problem]]] = [
    check_entries_balance,
    check_postings_in_entry_district,
    check_non_negative,
    check_account_shapes,
    check_cached_balances,
    check_lots,
    check_clearing,
    check_service_minutes,
    check_idempotency_keys,
    check_entry_hashes,
    check_chains,
    check_rollups,
    check_budgets,
]


def verify(*, unbounded: bool = False) -> Report:
    """Run every check on one snapshot of the ledger and return the report. `unbounded`
    (the CLI's) lifts the statement timeout and reply bound for a large ledger."""
    db.session.rollback()
    if db.engine.dialect.name == "postgresql":
        # One snapshot for every check, so concurrent writers cause no false alarms.
        db.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    with database.unbounded(db.session.connection()) if unbounded else nullcontext():
        report = Report()
        report.counts = {
            "entries": db.session.scalar(select(func.count(Entry.id))),
            "postings": db.session.scalar(select(func.count(Posting.id))),
            "accounts": db.session.scalar(select(func.count(Account.id))),
            "sealed": db.session.scalar(select(func.count(Seal.entry_id))),
            "awaiting seal": db.session.scalar(select(func.count(UnsealedEntry.entry_id))),
        }
        for check in CHECKS:
            report.problems.extend(check())
    db.session.rollback()
    return report

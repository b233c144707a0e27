"""Provider settlement: what a street office owes a provider for the vouchers it fulfilled
in a period, and settling it.

Public: statement(provider, district, start, end) -> Statement;
settle(provider, district, start, end) -> tuple[SettlementView, bool];
tables(statement) -> list[Table] (for CSV and XLSX).

A voucher whose redeem entry was reversed (the volunteer got the points back) is owed
nothing and never settled; a settled voucher's entry cannot be reversed (points.ledger).
A voucher counts in the period it was fulfilled (the redemption's `resolved_at`, which
is its redeem entry's effective time), at the node of the volunteer who redeemed it, so
a street's statement covers its communities. The money is the sum of the vouchers' unit
prices (the catalog item's `unit_price_fen` when the voucher was redeemed); a voucher
whose item had no price counts its points but no money.

Settling claims the period's fulfilled vouchers that no settlement has paid
(`redemptions.settlement_id`), writes a settlement row, and posts one `settle` entry per
node holding the provider's points (provider account -> settled account), all in one
unit of work, with an audit row. The provider's row is locked first, so two offices
settling at once settle each voucher once; settling the same period again claims
nothing and answers the settlement made before (idempotent); a voucher fulfilled late
in a settled period is settled by the next settlement of that period.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import exists, func, select, update

from points import audit, ledger
from points.errors import ConflictError, InvalidInputError, NotFoundError
from points.extensions import db
from points.models import (
    Account,
    District,
    Entry,
    Hold,
    Posting,
    Provider,
    Redemption,
    Settlement,
)
from points.policy import district_info
from points.report_files import Table


@dataclass(frozen=True)
class Line:
    redemption_id: int
    voucher_code: str
    sku: str
    points: int
    unit_price_fen: int | None
    fulfilled_at: datetime
    district_name: str
    settlement_id: int | None


@dataclass(frozen=True)
class SettlementView:
    id: int
    provider: str
    district: str
    period_start: datetime
    period_end: datetime
    vouchers: int
    points: int
    amount_fen: int
    unpriced: int
    settled_by: str
    created_at: datetime

    @property
    def last_day(self) -> datetime:
        return self.period_end - timedelta(microseconds=1)


@dataclass
class Statement:
    provider: str
    provider_name: str
    district: str
    district_name: str
    start: datetime
    end: datetime
    lines: list[Line] = field(default_factory=list)
    # What the provider's accounts of the node and below still hold: fulfilled, unpaid.
    unpaid_points: int = 0
    settlements: list[SettlementView] = field(default_factory=list)

    @property
    def vouchers(self) -> int:
        return len(self.lines)

    @property
    def points(self) -> int:
        return sum(line.points for line in self.lines)

    @property
    def amount_fen(self) -> int:
        return sum(line.unit_price_fen or 0 for line in self.lines)

    @property
    def unpriced(self) -> int:
        return sum(1 for line in self.lines if line.unit_price_fen is None)

    @property
    def to_settle(self) -> list[Line]:
        return [line for line in self.lines if line.settlement_id is None]

    @property
    def to_settle_points(self) -> int:
        return sum(line.points for line in self.to_settle)

    @property
    def to_settle_fen(self) -> int:
        return sum(line.unit_price_fen or 0 for line in self.to_settle)

    def as_dict(self) -> dict:
        return {
            "provider": self.provider,
            "provider_name": self.provider_name,
            "district": self.district,
            "district_name": self.district_name,
            "start": self.start,
            "end": self.end,
            "vouchers": self.vouchers,
            "points": self.points,
            "amount_fen": self.amount_fen,
            "unpriced": self.unpriced,
            "to_settle": {
                "vouchers": len(self.to_settle),
                "points": self.to_settle_points,
                "amount_fen": self.to_settle_fen,
            },
            "unpaid_points": self.unpaid_points,
            "lines": [line.__dict__ for line in self.lines],
            "settlements": [s.__dict__ for s in self.settlements],
        }


def _check(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        raise InvalidInputError("a period is two aware times", errors={"until": ["After since."]})


def _provider(code: str) -> Provider:
    found = db.session.scalar(select(Provider).where(Provider.code == code))
    if found is None:
        raise NotFoundError(f"no provider {code!r}", errors={"provider": ["No such provider."]})
    return found


def _refunded():
    """The redemption's redeem entry was reversed: the volunteer has the points back, so
    the provider is owed nothing for it."""
    return exists(select(Entry.id).where(Entry.reverses_id == Redemption.entry_id))


def _subtree(path: str):
    return select(District.id).where(District.path.startswith(path, autoescape=True))


def _fulfilled(provider_id: int, path: str, start: datetime, end: datetime):
    return (
        select(
            Redemption.id,
            Redemption.voucher_code,
            Redemption.sku,
            Redemption.points,
            Redemption.unit_price_fen,
            Redemption.resolved_at,
            District.name,
            Redemption.settlement_id,
        )
        .join(District, District.id == Redemption.district_id)
        .where(
            Redemption.provider_id == provider_id,
            Redemption.status == "fulfilled",
            ~_refunded(),
            Redemption.district_id.in_(_subtree(path)),
            Redemption.resolved_at >= start,
            Redemption.resolved_at < end,
        )
        .order_by(Redemption.resolved_at, Redemption.id)
    )


def _view(row: Settlement, provider: str, district: str) -> SettlementView:
    return SettlementView(
        row.id,
        provider,
        district,
        row.period_start,
        row.period_end,
        row.vouchers,
        row.points,
        row.amount_fen,
        row.unpriced,
        row.settled_by,
        row.created_at,
    )


def statement(
    provider: str, district: int | str, start: datetime, end: datetime, *, masked: bool = False
) -> Statement:
    """The provider's fulfilled vouchers at the node and below in [start, end), settled
    or not, with the node's settlements of the provider; `masked` (an auditor's) shows
    each voucher code's last four characters only, as exports do. Raises NotFoundError,
    InvalidInputError."""
    _check(start, end)
    found = _provider(provider)
    node = district_info(district)
    result = Statement(found.code, found.name, node.code, node.name, start, end)
    result.lines = [
        Line(*row) for row in db.session.execute(_fulfilled(found.id, node.path, start, end))
    ]
    if masked:
        result.lines = [
            replace(line, voucher_code="*" * 6 + line.voucher_code[-4:]) for line in result.lines
        ]
    result.unpaid_points = int(
        db.session.scalar(
            select(func.coalesce(func.sum(_provider_balance()), 0)).where(
                Account.provider_id == found.id, Account.district_id.in_(_subtree(node.path))
            )
        )
    )
    result.settlements = [
        _view(row, found.code, node.code)
        for row in db.session.scalars(
            select(Settlement)
            .where(Settlement.provider_id == found.id, Settlement.district_id == node.id)
            .order_by(Settlement.id.desc())
            .limit(50)
        )
    ]
    return result


def _provider_balance():
    """The balance of a provider account: the sum of its postings (it caches none)."""
    return (
        select(func.coalesce(func.sum(Posting.amount), 0))
        .where(Posting.account_id == Account.id)
        .correlate(Account)
        .scalar_subquery()
    )


def settle(
    provider: str, district: int | str, start: datetime, end: datetime
) -> tuple[SettlementView, bool]:
    """Settle the provider's fulfilled, unpaid vouchers at the node and below in [start,
    end); return the settlement and whether it is new (False: this period was settled
    before and nothing was left). Raises NotFoundError, InvalidInputError, ConflictError
    (nothing to settle)."""
    _check(start, end)
    found = _provider(provider)
    node = district_info(district)
    actor = audit.current_actor().actor

    def work() -> tuple[int, bool]:
        # One settling of a provider at a time: each voucher is claimed once. NO KEY: new
        # redemptions naming the provider need not wait for it.
        db.session.execute(
            select(Provider.id).where(Provider.id == found.id).with_for_update(key_share=True)
        )
        claimed = db.session.execute(
            select(Redemption.id, Redemption.points, Redemption.unit_price_fen, Hold.destination_id)
            .join(Hold, Hold.id == Redemption.hold_id)
            .where(
                Redemption.provider_id == found.id,
                Redemption.status == "fulfilled",
                Redemption.settlement_id.is_(None),
                ~_refunded(),
                Redemption.district_id.in_(_subtree(node.path)),
                Redemption.resolved_at >= start,
                Redemption.resolved_at < end,
            )
            .order_by(Redemption.id)
        ).all()
        if not claimed:
            before = db.session.scalar(
                select(Settlement.id)
                .where(
                    Settlement.provider_id == found.id,
                    Settlement.district_id == node.id,
                    Settlement.period_start == start,
                    Settlement.period_end == end,
                )
                .order_by(Settlement.id.desc())
                .limit(1)
            )
            if before is None:
                raise ConflictError("no fulfilled voucher is left to settle in this period")
            return before, False
        row = Settlement(
            district_id=node.id,
            provider_id=found.id,
            period_start=start,
            period_end=end,
            vouchers=len(claimed),
            points=sum(c.points for c in claimed),
            amount_fen=sum(c.unit_price_fen or 0 for c in claimed),
            unpriced=sum(1 for c in claimed if c.unit_price_fen is None),
            settled_by=actor,
        )
        db.session.add(row)
        db.session.flush()
        db.session.execute(
            update(Redemption)
            .where(Redemption.id.in_([c.id for c in claimed]))
            .values(settlement_id=row.id)
        )
        by_account: dict[int, int] = {}
        for c in claimed:
            by_account[c.destination_id] = by_account.get(c.destination_id, 0) + c.points
        for account_id, points in sorted(by_account.items()):
            ledger.settle(
                account_id,
                points,
                actor=actor,
                reason=f"结算 {found.name} 兑换券（结算单 {row.id}） / "
                f"settled {found.code}'s vouchers (settlement {row.id})",
            )
        audit.record(
            "settlement.create",
            district_id=node.id,
            target=("settlement", row.id),
            after={
                "provider": found.code,
                "since": start.isoformat(),
                "until": end.isoformat(),
                "vouchers": row.vouchers,
                "points": row.points,
                "amount_fen": row.amount_fen,
            },
        )
        return row.id, True

    settlement_id, created = ledger.atomic(work)
    return _view(db.session.get(Settlement, settlement_id), found.code, node.code), created


def money(fen: int) -> str:
    """Fen as yuan with two decimals: 3000 -> "30.00"."""
    return f"{fen // 100}.{fen % 100:02d}"


def tables(found: Statement, zone) -> list[Table]:
    """The statement as tables for CSV and XLSX: the summary, then a line per voucher."""

    def local(moment: datetime) -> str:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    summary = [
        ("服务商 / Provider", f"{found.provider_name} ({found.provider})"),
        ("节点 / Node", f"{found.district_name} ({found.district})"),
        (f"起 / From ({zone.key})", local(found.start)),
        (f"止（不含） / Until, exclusive ({zone.key})", local(found.end)),
        ("兑换券 / Vouchers", found.vouchers),
        ("积分 / Points", found.points),
        ("应付金额（元） / Owed (yuan)", money(found.amount_fen)),
        ("无单价的兑换券 / Vouchers without a price", found.unpriced),
        ("待结算兑换券 / Vouchers to settle", len(found.to_settle)),
    ]
    lines = [
        (
            line.voucher_code,
            line.sku,
            line.points,
            money(line.unit_price_fen) if line.unit_price_fen is not None else "",
            local(line.fulfilled_at),
            line.district_name,
            line.settlement_id or "",
        )
        for line in found.lines
    ]
    return [
        Table("概况", "Summary", ("项目 / Figure", "数值 / Value"), summary),
        Table(
            "兑换券",
            "Vouchers",
            (
                "兑换券号 / Voucher",
                "项目 / Item",
                "积分 / Points",
                "单价（元） / Unit price (yuan)",
                f"完成时间 / Fulfilled ({zone.key})",
                "社区 / Community",
                "结算单 / Settlement",
            ),
            lines,
        ),
    ]

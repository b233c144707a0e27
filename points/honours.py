"""Honours with a public notice (公示): an office proposes an honour list from a ranking,
anyone may object while it is on notice, the office answers and then finalises.

Public: propose(...) -> HonourView; get(honour_id) -> HonourView; of_node(district);
public(code) -> HonourView; lodge_objection(code, text, source) -> int;
answer(objection_id, text); finalise(honour_id); withdraw(honour_id, reason);
of_volunteer(volunteer_id) -> list[HonourView]; mask_name.

The rules:
- a list is drawn from `points.rankings` (by hours or points, over a period) and holds
  everyone placed within its size: ties at the cut are all on it;
- it is on notice for the node's `stars.notice_days` (default 7) from the proposal;
  during the notice anyone may object (a short text; at most OBJECTIONS_PER_HOUR from one
  place, counted in the rate limit store; every objection is kept and audited, with a
  keyed hash of where it came from, never the address);
- the office answers each objection; it may finalise once the notice is over and every
  objection is answered, or withdraw the list at any time before that;
- the public page shows masked names (王*英), the volunteer's community and figure, no
  phone, no card; a finalised honour shows on the volunteer's pages.
Every step writes an audit row in its own unit of work.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select

from points import audit, ledger, rankings
from points.errors import ConflictError, InvalidInputError, NotFoundError, RateLimitedError
from points.extensions import db
from points.models import District, Honour, HonourMember, HonourObjection, Volunteer, utcnow
from points.policy import district_info, resolve_policy
from points.volunteers import mask_name

TITLE_MAX = 200
SIZE_MAX = 100
OBJECTION_MAX = 500
OBJECTIONS_PER_HOUR = 3


@dataclass(frozen=True)
class Member:
    place: int
    volunteer_id: int
    name: str
    masked_name: str
    community: str
    value: int  # minutes, or points

    @property
    def hours(self) -> float:
        return round(self.value / 60, 1)


@dataclass(frozen=True)
class Objection:
    id: int
    text: str
    created_at: datetime
    answer: str | None
    answered_by: str | None
    answered_at: datetime | None


@dataclass(frozen=True)
class HonourView:
    id: int
    district: str
    district_name: str
    title: str
    ranked_by: str
    period_start: datetime
    period_end: datetime
    public_code: str
    status: str
    notice_until: datetime
    proposed_by: str
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    members: list[Member] = field(default_factory=list)
    objections: list[Objection] = field(default_factory=list)

    @property
    def on_notice(self) -> bool:
        return self.status == "notice" and utcnow() < self.notice_until

    @property
    def unanswered(self) -> int:
        return sum(1 for objection in self.objections if objection.answer is None)

    @property
    def can_finalise(self) -> bool:
        return self.status == "notice" and not self.on_notice and not self.unanswered


def _text(value, name: str, longest: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{name} is required", errors={name: ["Required."]})
    value = value.strip()
    if len(value) > longest:
        raise InvalidInputError(
            f"{name} is too long", errors={name: [f"At most {longest} characters."]}
        )
    return value


def notice_days(district: int | str) -> int:
    """How long the node's honour lists stay on notice (`stars.notice_days`)."""
    return int(resolve_policy(district).config("stars").get("notice_days", 7))


def propose(
    district: int | str,
    title: str,
    ranked_by: str,
    start: datetime,
    end: datetime,
    size: int,
) -> HonourView:
    """Propose an honour list of the node's best `size` (ties at the cut included) and
    open its notice. Raises InvalidInputError (nobody ranked, bad input), NotFoundError."""
    title = _text(title, "title", TITLE_MAX)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= SIZE_MAX:
        raise InvalidInputError("size out of range", errors={"size": [f"1 to {SIZE_MAX}."]})
    node = district_info(district)
    ranked = [row for row in rankings.rank(node.id, ranked_by, start, end) if row.rank <= size]
    if not ranked:
        raise InvalidInputError(
            "nobody is ranked in that period",
            errors={"since": ["Nobody served in this period: there is no one to honour."]},
        )
    days = notice_days(node.id)

    def work() -> int:
        now = utcnow()
        row = Honour(
            district_id=node.id,
            title=title,
            ranked_by=ranked_by,
            period_start=start,
            period_end=end,
            public_code=secrets.token_urlsafe(12),
            status="notice",
            notice_until=now + timedelta(days=days),
            proposed_by=audit.current_actor().actor,
            created_at=now,
        )
        db.session.add(row)
        db.session.flush()
        db.session.add_all(
            HonourMember(honour_id=row.id, volunteer_id=r.volunteer_id, place=r.rank, value=r.value)
            for r in ranked
        )
        audit.record(
            "honour.propose",
            district_id=node.id,
            target=("honour", row.id),
            after={
                "title": title,
                "ranked_by": ranked_by,
                "members": len(ranked),
                "notice_until": row.notice_until.isoformat(),
            },
        )
        return row.id

    return get(ledger.atomic(work))


def _view(row: Honour) -> HonourView:
    node = db.session.get(District, row.district_id)
    community = District.__table__.alias("community")
    members = [
        Member(place, volunteer_id, name, mask_name(name), node_name, int(value))
        for place, volunteer_id, name, node_name, value in db.session.execute(
            select(
                HonourMember.place,
                HonourMember.volunteer_id,
                Volunteer.name,
                community.c.name,
                HonourMember.value,
            )
            .join(Volunteer, Volunteer.id == HonourMember.volunteer_id)
            .join(community, community.c.id == Volunteer.district_id)
            .where(HonourMember.honour_id == row.id)
            .order_by(HonourMember.place, HonourMember.volunteer_id)
        )
    ]
    objections = [
        Objection(o.id, o.text, o.created_at, o.answer, o.answered_by, o.answered_at)
        for o in db.session.scalars(
            select(HonourObjection)
            .where(HonourObjection.honour_id == row.id)
            .order_by(HonourObjection.id)
        )
    ]
    return HonourView(
        row.id,
        node.code,
        node.name,
        row.title,
        row.ranked_by,
        row.period_start,
        row.period_end,
        row.public_code,
        row.status,
        row.notice_until,
        row.proposed_by,
        row.created_at,
        row.decided_by,
        row.decided_at,
        row.reason,
        members,
        objections,
    )


def _row(honour_id: int, *, lock: bool = False) -> Honour:
    query = select(Honour).where(Honour.id == honour_id)
    row = db.session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise NotFoundError(f"no honour {honour_id}")
    return row


def get(honour_id: int) -> HonourView:
    """The honour list with its members and objections. Raises NotFoundError."""
    return _view(_row(honour_id))


def public(code: str) -> HonourView:
    """The honour list behind a public notice's code. Raises NotFoundError; a withdrawn
    list is not shown."""
    row = db.session.scalar(select(Honour).where(Honour.public_code == code))
    if row is None or row.status == "withdrawn":
        raise NotFoundError("no such notice")
    return _view(row)


def of_node(district: int | str, limit: int = 100) -> list[dict]:
    """The node's honour lists and those below it, newest first, with counts."""
    node = district_info(district)
    members = (
        select(func.count())
        .where(HonourMember.honour_id == Honour.id)
        .correlate(Honour)
        .scalar_subquery()
    )
    unanswered = (
        select(func.count())
        .where(HonourObjection.honour_id == Honour.id, HonourObjection.answer.is_(None))
        .correlate(Honour)
        .scalar_subquery()
    )
    rows = db.session.execute(
        select(Honour, District.name, members, unanswered)
        .join(District, District.id == Honour.district_id)
        .where(District.path.startswith(node.path, autoescape=True))
        .order_by(Honour.id.desc())
        .limit(limit)
    ).all()
    return [
        {"honour": row, "district_name": name, "members": count, "unanswered": open_}
        for row, name, count, open_ in rows
    ]


def source_of(address: str | None) -> str:
    """A keyed hash of where a request came from: the same place gives the same value,
    and the value gives nothing back."""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"objection:{address or '-'}".encode(), "sha256").hexdigest()[:32]


def lodge_objection(code: str, text: str, address: str | None) -> int:
    """Lodge an objection to the notice behind `code`; return its id. Raises
    NotFoundError, ConflictError (the notice is over), RateLimitedError, InvalidInputError."""
    text = _text(text, "text", OBJECTION_MAX)
    row = db.session.scalar(select(Honour).where(Honour.public_code == code))
    if row is None or row.status == "withdrawn":
        raise NotFoundError("no such notice")
    if row.status != "notice" or utcnow() >= row.notice_until:
        raise ConflictError("the notice period is over; objections are closed")
    source = source_of(address)
    _count_objection(source)

    def work() -> int:
        objection = HonourObjection(honour_id=row.id, text=text, source=source, created_at=utcnow())
        db.session.add(objection)
        db.session.flush()
        audit.record(
            "honour.object",
            district_id=row.district_id,
            target=("honour", row.id),
            after={"objection": objection.id, "source": source},
            actor=audit.Actor("public", None, None, audit.current_actor().request_id),
        )
        return objection.id

    return ledger.atomic(work)


def _count_objection(source: str) -> None:
    """Refuse a place's objection beyond OBJECTIONS_PER_HOUR, counted where the API's
    rate limits are (every worker sees the same count)."""
    from limits import RateLimitItemPerHour

    limiter = current_app.extensions.get("points.limiter")
    if limiter is None:
        return
    item = RateLimitItemPerHour(OBJECTIONS_PER_HOUR)
    if not limiter.limiter.hit(item, "honour-objection", source):
        reset = limiter.limiter.get_window_stats(item, "honour-objection", source).reset_time
        wait = max(1, int(reset - utcnow().timestamp()))
        raise RateLimitedError(
            "too many objections from one place; try again later", retry_after=wait
        )


def answer(objection_id: int, text: str) -> HonourView:
    """The office's answer to an objection (replaces an earlier answer while the list
    is on notice). Raises NotFoundError, ConflictError, InvalidInputError."""
    text = _text(text, "answer", OBJECTION_MAX * 2)

    def work() -> int:
        objection = db.session.get(HonourObjection, objection_id, with_for_update=True)
        if objection is None:
            raise NotFoundError(f"no objection {objection_id}")
        row = _row(objection.honour_id, lock=True)
        if row.status != "notice":
            raise ConflictError(f"the honour list is {row.status}")
        before = {"answer": objection.answer}
        objection.answer = text
        objection.answered_by = audit.current_actor().actor
        objection.answered_at = utcnow()
        audit.record(
            "honour.answer",
            district_id=row.district_id,
            target=("honour", row.id),
            before=before,
            after={"objection": objection.id, "answer": text},
        )
        return row.id

    return get(ledger.atomic(work))


def objection_honour(objection_id: int) -> int:
    """The honour list an objection belongs to. Raises NotFoundError."""
    found = db.session.scalar(
        select(HonourObjection.honour_id).where(HonourObjection.id == objection_id)
    )
    if found is None:
        raise NotFoundError(f"no objection {objection_id}")
    return found


def _decide(honour_id: int, status: str, reason: str | None) -> HonourView:
    def work() -> int:
        row = _row(honour_id, lock=True)
        if row.status != "notice":
            raise ConflictError(f"the honour list is already {row.status}")
        if status == "final":
            if utcnow() < row.notice_until:
                raise ConflictError("the notice period is not over yet")
            waiting = db.session.scalar(
                select(func.count()).where(
                    HonourObjection.honour_id == row.id, HonourObjection.answer.is_(None)
                )
            )
            if waiting:
                raise ConflictError(f"{waiting} objection(s) still need an answer")
        row.status = status
        row.decided_by = audit.current_actor().actor
        row.decided_at = utcnow()
        row.reason = reason
        audit.record(
            "honour.finalise" if status == "final" else "honour.withdraw",
            district_id=row.district_id,
            target=("honour", row.id),
            before={"status": "notice"},
            after={"status": status, **({"reason": reason} if reason else {})},
        )
        return row.id

    return get(ledger.atomic(work))


def finalise(honour_id: int) -> HonourView:
    """Finalise a list whose notice is over and whose objections are all answered.
    Raises NotFoundError, ConflictError."""
    return _decide(honour_id, "final", None)


def withdraw(honour_id: int, reason: str) -> HonourView:
    """Withdraw a list on notice (its public page disappears). Raises NotFoundError,
    ConflictError, InvalidInputError."""
    return _decide(honour_id, "withdrawn", _text(reason, "reason", OBJECTION_MAX))


def of_volunteer(volunteer_id: int) -> list[dict]:
    """The finalised honours a volunteer is on, newest first: title, place, node, when."""
    rows = db.session.execute(
        select(Honour.title, HonourMember.place, District.name, Honour.decided_at, Honour.id)
        .join(HonourMember, HonourMember.honour_id == Honour.id)
        .join(District, District.id == Honour.district_id)
        .where(HonourMember.volunteer_id == volunteer_id, Honour.status == "final")
        .order_by(Honour.decided_at.desc())
    ).all()
    return [
        {"title": t, "place": p, "district_name": n, "decided_at": d, "id": i}
        for t, p, n, d, i in rows
    ]

"""The per-district hash chain: sealing queued entries into it."""

from __future__ import annotations

import hashlib

from sqlalchemy import delete, select, update

from points.extensions import db
from points.ledger.units import (
    GENESIS_HASH,
    _dialect_insert,
    _end_read,
    atomic,
)
from points.models import (
    ChainHead,
    Entry,
    Seal,
    UnsealedEntry,
    utcnow,
)

# -- the hash chain ----------------------------------------------------------------------


def seal_hash(prev_hash: str, district_id: int, seq: int, entry_id: int, content: str) -> str:
    """Return the hash of one chain link."""
    link = f"{prev_hash}|{district_id}|{seq}|{entry_id}|{content}"
    return hashlib.sha256(link.encode()).hexdigest()


def seal(district_id: int | None = None, *, batch: int = 5000) -> int:
    """Link queued entries into their district's hash chain; return how many were sealed.

    Writers only queue their entries, so a district's writers never wait on its chain;
    run this often (the `points ledger seal` command, cron, or after a batch).
    """
    query = select(UnsealedEntry.district_id).distinct().order_by(UnsealedEntry.district_id)
    if district_id is not None:
        query = query.where(UnsealedEntry.district_id == district_id)
    districts = db.session.scalars(query).all()
    _end_read()
    total = 0
    for node in districts:
        while True:
            sealed = atomic(lambda node=node: _seal_batch(node, batch))
            total += sealed
            if sealed < batch:
                break
    return total


def _seal_batch(district_id: int, batch: int) -> int:
    db.session.execute(
        _dialect_insert(ChainHead)
        .values(district_id=district_id, seq=0, hash=GENESIS_HASH)
        .on_conflict_do_nothing()
    )
    head = db.session.execute(
        select(ChainHead.seq, ChainHead.hash)
        .where(ChainHead.district_id == district_id)
        .with_for_update()
    ).one()
    queued = db.session.execute(
        select(UnsealedEntry.entry_id, Entry.hash)
        .join(Entry, Entry.id == UnsealedEntry.entry_id)
        .where(UnsealedEntry.district_id == district_id)
        .order_by(UnsealedEntry.entry_id)
        .limit(batch)
    ).all()
    if not queued:
        return 0
    seq, prev = head.seq, head.hash
    now = utcnow()
    links = []
    for entry_id, content in queued:
        seq += 1
        link = seal_hash(prev, district_id, seq, entry_id, content)
        links.append(
            {
                "district_id": district_id,
                "seq": seq,
                "entry_id": entry_id,
                "prev_hash": prev,
                "hash": link,
                "created_at": now,
            }
        )
        prev = link
    db.session.execute(Seal.__table__.insert(), links)
    db.session.execute(
        delete(UnsealedEntry).where(UnsealedEntry.entry_id.in_([e for e, _ in queued]))
    )
    db.session.execute(
        update(ChainHead).where(ChainHead.district_id == district_id).values(seq=seq, hash=prev)
    )
    return len(queued)

"""A roster import: the node's stewards from a paper roster, each with their paper
reference (`volunteers.external_id`, unique in the node), node, phone, and either a PIN
or a one-time activation code to print on their card sheet.

A PIN costs a slow hash (PIN_HASH_METHOD: 200-400 ms with scrypt), so 2,000 of them
take minutes; an activation code has 10^6 times a PIN's values and is hashed by the
cheaper ACTIVATION_HASH_METHOD (points.activation). Either way the hashes are made in a
process pool on every core before the rows are written, and each volunteer is then
registered by `directory.register_volunteer` (their account opened, audited), with
their reference and import key in the same unit. A reference already in the node is
reported as already imported, so running the roster again registers nobody twice.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from points import ledger
from points.activation import hash_activation, new_activation_code
from points.directory import hash_pin, pin_problem, register_volunteer
from points.extensions import db
from points.imports.rows import RowProblem, parse_reference
from points.models import District, ImportKey, Volunteer, utcnow

# Below this many hashes a pool costs more to start than it saves.
POOL_FROM = 32
_PHONE = re.compile(r"^\+?[0-9 -]{5,20}$")
_CARD = re.compile(r"^[0-9A-Z]{4,32}$")


@dataclass(frozen=True)
class Steward:
    """A checked roster row."""

    line: int
    reference: str
    name: str
    phone: str | None
    node: str
    node_id: int
    card_code: str | None
    pin: str | None


@dataclass(frozen=True)
class Registered:
    """A steward registered by the import: their id, and the activation code to print
    (None when the roster gave a PIN)."""

    line: int
    volunteer_id: int
    name: str
    code: str | None


def checked(line: int, fields: dict[str, str], nodes: dict[str, tuple[int, str]], home: str):
    """A roster row as a Steward; raises RowProblem."""
    reference = parse_reference(fields["reference"])
    if reference is None:
        raise RowProblem("缺少纸质编号 / No paper reference.")
    name = fields["name"]
    if not name or len(name) > 200:
        raise RowProblem("姓名须为 1 到 200 个字符 / A name of 1 to 200 characters is required.")
    phone = fields["phone"] or None
    if phone is not None and not _PHONE.match(phone):
        raise RowProblem(
            f"电话 {phone!r} 格式不对 / Phone {phone!r}: digits, spaces and '-', 5 to 20."
        )
    node = fields["node"] or home
    if node not in nodes:
        raise RowProblem(
            f"这里没有节点 {node!r} / No node {node!r} here: one of {', '.join(sorted(nodes))}."
        )
    card = fields["card_code"].upper() or None
    if card is not None and not _CARD.match(card):
        raise RowProblem(
            f"卡号 {card!r} 须为 4 到 32 个字母或数字 / "
            f"Card code {card!r}: 4 to 32 letters and digits."
        )
    pin = fields["pin"] or None
    if pin is not None:
        problem = pin_problem(pin, card)
        if problem is not None:
            raise RowProblem(f"密码不可用 / PIN: {problem}")
    return Steward(line, reference, name, phone, node, nodes[node][0], card, pin)


def nodes_below(path: str) -> dict[str, tuple[int, str]]:
    """The codes of the node and the nodes below it -> (id, path)."""
    rows = db.session.execute(
        select(District.code, District.id, District.path).where(
            District.path.startswith(path, autoescape=True)
        )
    )
    return {code: (node_id, node_path) for code, node_id, node_path in rows}


def known_references(node_ids: set[int]) -> set[tuple[int, str]]:
    rows = db.session.execute(
        select(Volunteer.district_id, Volunteer.external_id).where(
            Volunteer.district_id.in_(node_ids), Volunteer.external_id.is_not(None)
        )
    )
    return {(node_id, reference) for node_id, reference in rows}


def hashed(stewards: list[Steward], *, dry_run: bool) -> Iterator[tuple[Steward, str | None, str]]:
    """Each steward with their activation code (None for a PIN) and its hash, hashed in
    a process pool when there are many. A dry run hashes nothing (it commits nothing)."""
    if dry_run:
        for steward in stewards:
            yield steward, None if steward.pin else "", "dry-run"
        return
    config = current_app.config
    secret = config["SECRET_KEY"]
    jobs = []
    for steward in stewards:
        if steward.pin is not None:
            jobs.append((steward, None, ("pin", steward.pin, secret, config["PIN_HASH_METHOD"])))
        else:
            code = new_activation_code()
            method = config["ACTIVATION_HASH_METHOD"]
            jobs.append((steward, code, ("code", code, secret, method)))
    if len(jobs) < POOL_FROM:
        for steward, code, job in jobs:
            yield steward, code, _hash(job)
        return
    # Spawned, not forked: a fork would copy the app's open database connections.
    with ProcessPoolExecutor(os.cpu_count() or 1, mp_context=get_context("spawn")) as pool:
        results = pool.map(_hash, [job for _, _, job in jobs], chunksize=16)
        for (steward, code, _), result in zip(jobs, results, strict=True):
            yield steward, code, result


def _hash(job: tuple[str, str, str, str]) -> str:
    what, secret_text, key, method = job
    if what == "pin":
        return hash_pin(secret_text, key, method)
    return hash_activation(secret_text, key, method)


def register(steward: Steward, code: str | None, digest: str, *, run_id: int, dry_run: bool):
    """Register one steward with their reference and import key in one unit; return a
    Registered, or None when their reference was taken meanwhile (already imported)."""

    def work() -> Registered | None:
        key = f"roster:{steward.node_id}:{steward.reference}"
        if db.session.get(ImportKey, key) is not None:
            return None
        volunteer = register_volunteer(
            steward.name,
            steward.node,
            phone=steward.phone,
            card_code=steward.card_code,
            **(
                {"pin": steward.pin, "pin_hash": digest}
                if code is None
                else {"activation_hash": digest}
            ),
        )
        volunteer.external_id = steward.reference
        db.session.add(
            ImportKey(
                key=key,
                district_id=steward.node_id,
                run_id=run_id,
                line=steward.line,
                volunteer_id=volunteer.id,
                created_at=utcnow(),
            )
        )
        db.session.flush()
        return Registered(steward.line, volunteer.id, steward.name, code)

    try:
        return (ledger.rolled_back if dry_run else ledger.atomic)(work)
    except IntegrityError:
        # The reference was registered in the node meanwhile (a run at the same time).
        return None

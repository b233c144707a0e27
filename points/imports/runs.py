"""An import run: read the file, check each row, stage the good ones in service order,
post them through the service layer, and keep count as it goes.

Records go through `points.service.past.record_past_service`, a volunteer at a time, in
service order: the rows are first staged in a temporary SQLite file and read back sorted
by volunteer, service time and line, so that memory stays flat however long the file
and the file's order changes nothing. Opening balances are one `earn` entry each,
dated the paper book's date, of plugin `import` and rule `opening_balance`.

A dry run reads, checks and evaluates exactly as a real run, then rolls each unit back:
it writes its run row and the refused rows, nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from points import audit, ledger
from points.errors import InvalidInputError, PointsError
from points.extensions import db
from points.imports.files import read_rows, sha256_of
from points.imports.mapping import ColumnMapping
from points.imports.rows import (
    RowProblem,
    Volunteers,
    detail_types,
    kind_names,
    parse_date,
    parse_reference,
    parse_whole,
    typed_details,
)
from points.models import ImportKey, ImportProblem, ImportRun, utcnow
from points.plugins import DistrictInfo
from points.service.past import PastService, _why, record_past_service

# A volunteer's rows are posted in units of at most this many (in service order).
UNIT_ROWS = 2000
# How often a running run writes its counts (seconds).
PROGRESS_EVERY = 1.0
MAX_BALANCE = 10_000_000

Progress = Callable[[str, int, int], None]


@dataclass
class _Counts:
    rows_total: int = 0
    rows_done: int = 0
    posted: int = 0
    duplicates: int = 0
    refused: int = 0
    points: int = 0
    minutes: int = 0


def start_run(
    node: DistrictInfo,
    kind: str,
    file_name: str,
    opener: Callable[[], BinaryIO],
    mapping: ColumnMapping,
    *,
    actor: str,
    dry_run: bool,
) -> int:
    """Check the file's columns and create its run row; return the run's id. Raises
    InvalidInputError (field `file`: unreadable; `columns`: a required field missing)."""
    headers, _ = read_rows(file_name, opener)
    missing = mapping.missing(headers)
    if missing:
        raise InvalidInputError(
            "the file lacks required columns",
            errors={
                "columns": [
                    f"文件缺少这些列：{', '.join(missing)} / No column for {', '.join(missing)}; "
                    f"the file has: {', '.join(headers)}."
                ]
            },
        )
    sha, _ = sha256_of(opener)

    def work() -> int:
        run = ImportRun(
            district_id=node.id,
            kind=kind,
            file_name=file_name[:255],
            file_sha256=sha,
            mapping=mapping.as_dict(),
            dry_run=dry_run,
            status="running",
            rows_total=0,
            rows_done=0,
            posted=0,
            duplicates=0,
            refused=0,
            points=0,
            minutes=0,
            started_by=actor,
        )
        db.session.add(run)
        db.session.flush()
        audit.record(
            "import.start",
            district_id=node.id,
            target=("import_run", run.id),
            after={"kind": kind, "file": file_name, "sha256": sha, "dry_run": dry_run},
        )
        return run.id

    return ledger.atomic(work)


def execute_run(
    run_id: int,
    node: DistrictInfo,
    opener: Callable[[], BinaryIO],
    progress: Progress | None = None,
    registered: list | None = None,
) -> ImportRun:
    """Do a run created by start_run; return its finished row. A failure that is not a
    row's (the database gone, say) marks the run failed with the reason and is raised.
    A roster run appends each steward it registers to `registered` (a Registered, with
    the activation code to print: shown nowhere else)."""
    run = db.session.get(ImportRun, run_id)
    mapping = ColumnMapping(run.kind, run.mapping["columns"], run.mapping["values"])
    counts = _Counts()
    reporter = _Reporter(run_id, counts, progress)
    who = (run.district_id, run.started_by)
    try:
        headers, rows = read_rows(run.file_name, opener)
        if run.kind == "records":
            _records(run, node, headers, rows, mapping, counts, reporter)
        elif run.kind == "balances":
            _balances(run, node, headers, rows, mapping, counts, reporter)
        elif run.kind == "roster":
            found = _roster(run, node, headers, rows, mapping, counts, reporter)
            if registered is not None:
                registered.extend(found)
        else:
            raise InvalidInputError(
                f"{run.kind} imports are not run here", errors={"kind": ["Unknown kind."]}
            )
    except Exception as error:
        db.session.rollback()
        reason = _why(error) if isinstance(error, PointsError) else repr(error)
        reporter.finish("failed", reason, who)
        raise
    reporter.finish("done", None, who)
    db.session.expire_all()
    return db.session.get(ImportRun, run_id)


def run_file(
    node: DistrictInfo,
    kind: str,
    file_name: str,
    opener: Callable[[], BinaryIO],
    mapping: ColumnMapping | None = None,
    *,
    actor: str,
    dry_run: bool = False,
    progress: Progress | None = None,
    registered: list | None = None,
) -> ImportRun:
    """Start a run (`start_run`; the mapping defaults to our own column names) and do it
    in this thread (`execute_run`); return its finished row. For the command line,
    benchmarks and tests: the console and API do a run in a thread of their own
    (`jobs.launch`). Raises what those two raise."""
    mapping = mapping or ColumnMapping(kind)
    run_id = start_run(node, kind, file_name, opener, mapping, actor=actor, dry_run=dry_run)
    return execute_run(run_id, node, opener, progress, registered)


class _Reporter:
    """Keeps a run's row and the caller's progress up to date, at most once a second."""

    def __init__(self, run_id: int, counts: _Counts, progress: Progress | None):
        self.run_id, self.counts, self.progress = run_id, counts, progress
        self.last = 0.0
        self.problems: list[dict] = []

    def refuse(self, line: int, reason: str, row: dict) -> None:
        self.counts.refused += 1
        self.problems.append({"run_id": self.run_id, "line": line, "reason": reason, "row": row})
        if len(self.problems) >= 500:
            self.flush()

    def tick(self, phase: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is not None:
            if phase == "reading":  # rows read so far, of a total not known yet
                self.progress(phase, self.counts.rows_total, 0)
            else:
                self.progress(phase, self.counts.rows_done, self.counts.rows_total)
        if force or now - self.last >= PROGRESS_EVERY:
            self.last = now
            self.flush()

    def flush(self, audit_as: tuple[int, str] | None = None, **extra) -> None:
        problems, self.problems = self.problems, []
        counts = dict(self.counts.__dict__)

        def work() -> None:
            if problems:
                db.session.execute(ImportProblem.__table__.insert(), problems)
            db.session.execute(
                update(ImportRun)
                .where(ImportRun.id == self.run_id)
                .values(**counts, updated_at=utcnow(), **extra)
            )
            if audit_as is not None:
                district_id, actor = audit_as
                audit.record(
                    "import.finish",
                    district_id=district_id,
                    target=("import_run", self.run_id),
                    after=counts | {"status": extra["status"], "error": extra["error"]},
                    actor=audit.Actor(actor),
                )

        ledger.atomic(work)

    def finish(self, status: str, error: str | None, who: tuple[int, str]) -> None:
        self.flush(who, status=status, error=error, finished_at=utcnow())
        if self.progress is not None:
            self.progress("done", self.counts.rows_done, self.counts.rows_total)


def _records(run, node, headers, rows, mapping, counts, reporter) -> None:
    zone = ZoneInfo(node.timezone)
    kinds = kind_names()
    types = detail_types()
    volunteers = Volunteers.of_node(node.path)
    now = utcnow()
    with tempfile.TemporaryDirectory(prefix="points-import-") as folder:
        stage = sqlite3.connect(os.path.join(folder, "stage.sqlite"))
        stage.execute(
            "CREATE TABLE rows (volunteer INTEGER, started REAL, line INTEGER, key TEXT, "
            "kind TEXT, minutes INTEGER, details TEXT, raw TEXT)"
        )
        batch = []
        for line, row in rows:
            counts.rows_total += 1
            fields, details = mapping.apply(row, headers)
            try:
                volunteer_id = volunteers.find(fields["volunteer"])
                kind = kinds.get(fields["kind"]) or kinds.get(fields["kind"].lower())
                if kind is None:
                    raise RowProblem(
                        f"未知的服务类型 {fields['kind']!r}，请在对照表里对应 / "
                        f"Unknown kind {fields['kind']!r}: map it to one of "
                        f"{', '.join(sorted(set(kinds.values())))}."
                    )
                started = parse_date(fields["date"], zone, now)
                minutes = parse_whole(
                    fields["minutes"], "minutes", low=1, high=24 * 60, required=False
                )
                reference = parse_reference(fields["reference"])
                details = typed_details(details, types[kind])
            except RowProblem as problem:
                reporter.refuse(line, str(problem), row)
                counts.rows_done += 1
                continue
            batch.append(
                (
                    volunteer_id,
                    started.timestamp(),
                    line,
                    _record_key(volunteer_id, reference, kind, started, minutes, details),
                    kind,
                    minutes,
                    json.dumps(details, ensure_ascii=False),
                    json.dumps(row, ensure_ascii=False),
                )
            )
            if len(batch) >= 5000:
                stage.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch)
                batch.clear()
                reporter.tick("reading")
        stage.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch)
        stage.execute("CREATE INDEX ordered ON rows (volunteer, started, line)")
        stage.commit()
        reporter.tick("posting", force=True)
        reason = f"导入纸质记录（{run.file_name}）/ imported paper record ({run.file_name})"
        for volunteer_id, services, raws, repeats in _units(stage):
            for line, first in repeats:
                counts.rows_done += 1
                reporter.refuse(line, _repeated(first), raws[line])
            if not services:
                continue
            try:
                outcomes = record_past_service(
                    volunteer_id,
                    services,
                    actor=run.started_by,
                    reason=reason,
                    run_id=run.id,
                    dry_run=run.dry_run,
                )
            except (PointsError, DBAPIError) as error:
                # The volunteer's batch was rolled back whole: its rows are refused, and
                # the next run of the file posts them.
                why = _why(error) if isinstance(error, PointsError) else _database_error(error)
                for service in services:
                    reporter.refuse(service.line, why, raws[service.line])
                    counts.rows_done += 1
                reporter.tick("posting")
                continue
            for outcome in outcomes:
                counts.rows_done += 1
                if outcome.status == "posted":
                    counts.posted += 1
                    counts.points += outcome.points
                    counts.minutes += outcome.minutes
                elif outcome.status == "duplicate":
                    counts.duplicates += 1
                else:
                    reporter.refuse(outcome.line, outcome.reason, raws[outcome.line])
            reporter.tick("posting")
        stage.close()


def _record_key(volunteer_id, reference, kind, started, minutes, details) -> str:
    """A record's key before its occurrence is counted: the volunteer's paper reference
    when the file has one, else a digest of what the row says (the volunteer, kind,
    start, minutes and details), so that the same rows saved again (another line ending,
    another order, one row corrected) are the same keys."""
    if reference:
        return f"records:ref:{volunteer_id}:{reference}"
    said = json.dumps(
        [volunteer_id, kind, started.timestamp(), minutes, details],
        sort_keys=True,
        ensure_ascii=False,
    )
    return "records:row:" + hashlib.sha256(said.encode()).hexdigest()[:40]


def _repeated(first: int) -> str:
    return f"编号与第 {first} 行重复 / The same reference as line {first}."


def _database_error(error: DBAPIError) -> str:
    return (
        "数据库错误，本志愿者的行未入账 / "
        f"database error, nothing posted for this volunteer: {error.orig.__class__.__name__}"
    )


def _units(
    stage: sqlite3.Connection,
) -> Iterator[tuple[int, list[PastService], dict[int, dict], list[tuple[int, int]]]]:
    """The staged rows, a volunteer at a time in service order, UNIT_ROWS at most each,
    with the rows as read (by line) and the lines that repeat a reference (with the line
    that gave it first).

    A row's key is its reference's, or its content's with its occurrence in the file
    (the second identical row of a file is a second record, in this run and the next)."""
    cursor = stage.execute(
        "SELECT volunteer, started, line, key, kind, minutes, details, raw, "
        "ROW_NUMBER() OVER (PARTITION BY key ORDER BY line), "
        "MIN(line) OVER (PARTITION BY key) FROM rows ORDER BY volunteer, started, line"
    )
    current, services, raws, repeats = None, [], {}, []
    for volunteer, started, line, key, kind, minutes, details, raw, n, first in cursor:
        if (volunteer != current or len(services) >= UNIT_ROWS) and (services or repeats):
            yield current, services, raws, repeats
            services, raws, repeats = [], {}, []
        current = volunteer
        raws[line] = json.loads(raw)
        if key.startswith("records:ref:"):
            if n > 1:
                repeats.append((line, first))
                continue
        else:
            key = f"{key}:{n}"
        services.append(
            PastService(
                key,
                line,
                kind,
                datetime.fromtimestamp(started, ZoneInfo("UTC")),
                minutes,
                json.loads(details),
            )
        )
    if services or repeats:
        yield current, services, raws, repeats


def _balances(run, node, headers, rows, mapping, counts, reporter) -> None:
    """Opening balances: the whole file read and checked first (a file unreadable further
    down posts nothing), then one earn per row, dated the book's date, posted once by the
    volunteer's book reference. (One row per steward: the checked rows are kept in memory.)"""
    zone = ZoneInfo(node.timezone)
    volunteers = Volunteers.of_node(node.path)
    now = utcnow()
    checked, first_line = [], {}
    for line, row in rows:
        counts.rows_total += 1
        fields, _ = mapping.apply(row, headers)
        try:
            volunteer_id = volunteers.find(fields["volunteer"])
            points = parse_whole(fields["points"], "points", low=1, high=MAX_BALANCE, required=True)
            when = parse_date(fields["date"], zone, now)
            reference = parse_reference(fields["reference"])
            if reference is None:
                raise RowProblem("缺少存折号 / No paper book reference.")
            key = f"balances:{volunteer_id}:{reference}"
            first = first_line.setdefault(key, line)
            if first != line:
                raise RowProblem(_repeated(first))
        except RowProblem as problem:
            counts.rows_done += 1
            reporter.refuse(line, str(problem), row)
            continue
        checked.append((line, row, volunteer_id, points, when, reference, key))
    reporter.tick("posting", force=True)
    for line, row, volunteer_id, points, when, reference, key in checked:
        counts.rows_done += 1
        try:
            posted = _opening_balance(
                run, volunteer_id, points, when, reference, key, line, dry_run=run.dry_run
            )
        except PointsError as error:
            reporter.refuse(line, _why(error), row)
            continue
        if posted:
            counts.posted += 1
            counts.points += points
        else:
            counts.duplicates += 1
        reporter.tick("posting")


def _opening_balance(run, volunteer_id, points, when, reference, key, line, *, dry_run) -> bool:
    """Post one opening balance unless its key was posted; return whether it was."""
    from points.plugins import LotInfo, call_each, plugin_manager
    from points.policy import resolve_policy

    def work() -> bool:
        if db.session.get(ImportKey, key) is not None:
            return False
        policy = resolve_policy(run.district_id, when)
        lot = LotInfo(
            volunteer_id,
            run.district_id,
            points,
            when,
            "import",
            "opening_balance",
            policy.district.timezone,
        )
        answers = call_each(
            plugin_manager(),
            "expiry_for",
            {"lot": lot},
            enabled=policy.enabled,
            config_for=policy.config,
        )
        entry = ledger.earn(
            volunteer_id,
            points,
            actor=run.started_by,
            reason=f"纸质积分存折 {reference} 结转 / opening balance of paper book {reference}",
            effective_at=when,
            expires_at=min((at for _, at in answers), default=None),
            plugin="import",
            rule="opening_balance",
        )
        db.session.add(
            ImportKey(
                key=key,
                district_id=run.district_id,
                run_id=run.id,
                line=line,
                volunteer_id=volunteer_id,
                entry_id=entry.id,
                created_at=utcnow(),
            )
        )
        db.session.flush()
        return True

    return (ledger.rolled_back if dry_run else ledger.atomic)(work)


def _roster(run, node, headers, rows, mapping, counts, reporter) -> list:
    """Stewards: checked, the new ones hashed (in a pool) then registered one unit each."""
    from points.imports import roster

    nodes = roster.nodes_below(node.path)
    known = roster.known_references({node_id for node_id, _ in nodes.values()})
    seen: dict[tuple[int, str], int] = {}
    stewards = []
    for line, row in rows:
        counts.rows_total += 1
        fields, _ = mapping.apply(row, headers)
        try:
            steward = roster.checked(line, fields, nodes, node.code)
            first = seen.setdefault((steward.node_id, steward.reference), line)
            if first != line:
                raise RowProblem(
                    f"编号 {steward.reference} 与第 {first} 行重复 / "
                    f"Reference {steward.reference} is also on line {first}."
                )
        except RowProblem as problem:
            reporter.refuse(line, str(problem), row)
            counts.rows_done += 1
            continue
        if (steward.node_id, steward.reference) in known:
            counts.duplicates += 1
            counts.rows_done += 1
            continue
        stewards.append((steward, row))
    reporter.tick("posting", force=True)
    raws = {steward.line: row for steward, row in stewards}
    done = []
    for steward, code, digest in roster.hashed([s for s, _ in stewards], dry_run=run.dry_run):
        counts.rows_done += 1
        try:
            registered = roster.register(steward, code, digest, run_id=run.id, dry_run=run.dry_run)
        except PointsError as error:
            reporter.refuse(steward.line, _why(error), raws[steward.line])
            continue
        if registered is None:
            counts.duplicates += 1
        else:
            counts.posted += 1
            done.append(registered)
        reporter.tick("posting")
    return done


def problems_of(run_id: int, *, limit: int | None = None) -> list[ImportProblem]:
    """The rows a run refused, by line."""
    query = select(ImportProblem).where(ImportProblem.run_id == run_id).order_by(ImportProblem.line)
    if limit is not None:
        query = query.limit(limit)
    return list(db.session.scalars(query))

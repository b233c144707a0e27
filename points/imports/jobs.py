"""Import runs for the console and the API: the uploaded file kept, a run done in a
thread of its own, its state as both show it, a preview confirmed, the refused rows as
CSV. (The command line runs in its own process and reads the file from disk.)"""

from __future__ import annotations

import csv
import hashlib
import io
import threading
from collections.abc import Iterator
from contextlib import suppress
from datetime import timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from points import ledger
from points.errors import NotFoundError
from points.exports import FORMULA_STARTS
from points.extensions import db
from points.imports.mapping import ColumnMapping
from points.imports.runs import execute_run, start_run
from points.models import ImportFile, ImportProblem, ImportRun, utcnow
from points.plugins import DistrictInfo

# A running run not heard of for this long has stopped (its process ended); its row is
# moved on at least once a second while it runs.
STALE_AFTER = timedelta(minutes=2)


def store_file(node: DistrictInfo, name: str, content: bytes, *, actor: str) -> str:
    """Keep the file's bytes (once per content) and return their sha256."""
    sha = hashlib.sha256(content).hexdigest()

    def work() -> None:
        if db.session.get(ImportFile, sha) is None:
            db.session.add(
                ImportFile(
                    sha256=sha,
                    district_id=node.id,
                    name=name[:255],
                    content=content,
                    uploaded_by=actor,
                    created_at=utcnow(),
                )
            )
            db.session.flush()

    # IntegrityError: the same file, uploaded by someone else at the same moment.
    with suppress(IntegrityError):
        ledger.atomic(work)
    return sha


def opener(content: bytes):
    return lambda: io.BytesIO(content)


def launch(run_id: int, node: DistrictInfo, sha256: str) -> threading.Thread:
    """Do a run in a thread of its own (a file of 100,000 rows takes minutes), reading the
    stored file; the run's row says how far it got."""
    app = current_app._get_current_object()

    def work() -> None:
        with app.app_context():
            content = db.session.get(ImportFile, sha256).content
            try:
                execute_run(run_id, node, opener(content))
            except Exception:
                # execute_run marked the run failed with the reason; its page shows it.
                app.logger.exception("import run %s failed", run_id)
            finally:
                app.extensions["import_threads"].pop(run_id, None)

    thread = threading.Thread(target=work, name=f"import-run-{run_id}", daemon=True)
    app.extensions.setdefault("import_threads", {})[run_id] = thread
    thread.start()
    return thread


def stopped(run: ImportRun) -> bool:
    """A running run whose row has not moved for STALE_AFTER: its process ended."""
    return run.status == "running" and utcnow() - run.updated_at > STALE_AFTER


def run_state(run: ImportRun) -> dict:
    """A run's status and counts, as the page's progress script and the API read them."""
    return {
        "id": run.id,
        "kind": run.kind,
        "file_name": run.file_name,
        "status": "stopped" if stopped(run) else run.status,
        "dry_run": run.dry_run,
        "rows_total": run.rows_total,
        "rows_done": run.rows_done,
        "posted": run.posted,
        "duplicates": run.duplicates,
        "refused": run.refused,
        "points": run.points,
        "minutes": run.minutes,
        "error": run.error,
        "started_by": run.started_by,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


def confirm(dry: ImportRun, node: DistrictInfo, *, actor: str) -> int:
    """Post the rows of a previewed file: a real run with the preview's mapping, in the
    background; return its id. A second confirmation while one runs (a double tap, a
    colleague at the same moment) returns the run already going. Raises NotFoundError
    when `dry` is not a finished preview whose file is kept."""
    stored = db.session.get(ImportFile, dry.file_sha256)
    if not dry.dry_run or dry.status != "done" or stored is None:
        raise NotFoundError(f"no preview {dry.id} to post")
    going = db.session.scalars(
        select(ImportRun).where(
            ImportRun.district_id == dry.district_id,
            ImportRun.file_sha256 == dry.file_sha256,
            ImportRun.kind == dry.kind,
            ImportRun.dry_run.is_(False),
            ImportRun.status == "running",
        )
    ).first()
    if going is not None and not stopped(going):
        return going.id
    mapping = ColumnMapping(dry.kind, dry.mapping["columns"], dry.mapping["values"])
    real = start_run(
        node, dry.kind, stored.name, opener(stored.content), mapping, actor=actor, dry_run=False
    )
    launch(real, node, stored.sha256)
    return real


def refused_csv(run_id: int) -> Iterator[str]:
    """Every row a run refused, by line: line, reason, then the row's cells as read, to
    correct and import again. UTF-8 with a byte order mark for Excel; formulas defused."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")
    headers: list[str] | None = None
    query = (
        select(ImportProblem)
        .where(ImportProblem.run_id == run_id)
        .order_by(ImportProblem.line)
        .execution_options(yield_per=2000)
    )
    for problem in db.session.scalars(query):
        if headers is None:
            headers = list(problem.row)
            writer.writerow(["行 / line", "原因 / reason", *headers])
        cells = [problem.reason, *(problem.row.get(h, "") for h in headers)]
        writer.writerow([problem.line, *(_defused(cell) for cell in cells)])
        if buffer.tell() > 1 << 16:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if headers is None:
        writer.writerow(["行 / line", "原因 / reason"])
    yield buffer.getvalue()


def _defused(text: str) -> str:
    # A row of a file typed by people may start like a formula: a spreadsheet must not run it.
    return "'" + text if isinstance(text, str) and text.startswith(FORMULA_STARTS) else text

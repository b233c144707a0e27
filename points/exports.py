"""Exports: a node's entries, service records, redemptions, volunteers and audit log, as
CSV or XLSX, for the office's spreadsheets and the district's reports.

Public: DATASETS; prepare(principal, dataset, *, district=None, since=None, until=None)
-> Export; csv_chunks(export) -> Iterator[bytes]; write_xlsx(export, path) -> int.

Rows are read in batches by id (keyset), never all at once, and written as they come:
CSV is streamed to the client, XLSX is written by XlsxWriter in constant-memory mode to a
temporary file, so a million rows never sit in memory. Times are in the node's time
zone, headers in both languages. An auditor gets phone numbers masked and no card codes
or voucher codes (they read; they do not serve). Every export writes an audit row
(`export.download`): who took which data of which node.

Text that a spreadsheet would run as a formula (starting with =, +, -, @) is written
with a leading apostrophe: a volunteer's name or a record's reason is typed by people.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import xlsxwriter
from flask import Response
from sqlalchemy import and_, select
from sqlalchemy.orm import Session, aliased

from points import audit, ledger
from points.auth import Principal, require_scope
from points.errors import InvalidInputError
from points.extensions import db
from points.models import (
    Account,
    AuditEvent,
    District,
    Entry,
    Posting,
    Provider,
    Redemption,
    ServiceRecord,
    Volunteer,
)
from points.policy import district_info
from points.volunteers import mask_phone

# Rows read per query: enough to amortise the round trip, few enough to stay small.
BATCH = 2000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Column:
    key: str
    zh: str
    en: str
    kind: str = "text"  # text, number, time

    @property
    def header(self) -> str:
        return f"{self.zh} / {self.en}"


@dataclass(frozen=True)
class Export:
    """What one export reads: a dataset of a node and below, in a period."""

    dataset: str
    node_id: int
    node_code: str
    node_ids: tuple[int, ...]
    path: str
    zone: ZoneInfo
    since: datetime | None
    until: datetime | None
    masked: bool
    # The session to read with; None: the application's (a streamed response reads with
    # one of its own, as it outlives the request's context).
    session: Any = None

    @property
    def columns(self) -> tuple[Column, ...]:
        return DATASETS[self.dataset].columns(self)

    def filename(self, extension: str) -> str:
        stamp = datetime.now(self.zone).strftime("%Y%m%d-%H%M")
        return f"{self.dataset}-{self.node_code}-{stamp}.{extension}"


@dataclass(frozen=True)
class Dataset:
    name: str
    zh: str
    en: str
    columns: Callable[[Export], tuple[Column, ...]]
    batches: Callable[[Export], Iterator[list[tuple]]]


def _keyset(statement, id_column, export: Export) -> Iterator[list]:
    """The statement's rows in batches by ascending id."""
    session = export.session or db.session
    last = None
    while True:
        query = statement.order_by(id_column).limit(BATCH)
        if last is not None:
            query = query.where(id_column > last)
        rows = session.execute(query).all()
        if not rows:
            return
        yield rows
        last = rows[-1][0]
        # Each batch in its own read: nothing piles up in the session.
        session.rollback()


def _period(statement, column, export: Export):
    if export.since is not None:
        statement = statement.where(column >= export.since)
    if export.until is not None:
        statement = statement.where(column < export.until)
    return statement


# -- entries: one row per posting, so that every point is on a line ---------------------

_ENTRY_COLUMNS = (
    Column("entry", "分录号", "entry", "number"),
    Column("effective_at", "记账时间", "effective at", "time"),
    Column("kind", "类型", "kind"),
    Column("node", "辖区", "node"),
    Column("account", "账户", "account"),
    Column("volunteer_id", "志愿者编号", "volunteer id", "number"),
    Column("volunteer", "志愿者", "volunteer"),
    Column("amount", "积分", "points", "number"),
    Column("reason", "说明", "reason"),
    Column("actor", "操作人", "actor"),
    Column("plugin", "插件", "plugin"),
    Column("rule", "规则", "rule"),
    Column("record", "服务记录号", "service record", "number"),
)


def _entries(export: Export) -> Iterator[list[tuple]]:
    statement = _period(
        select(
            Posting.id,
            Entry.id,
            Entry.effective_at,
            Entry.kind,
            District.code,
            Account.kind,
            Volunteer.id,
            Volunteer.name,
            Posting.amount,
            Entry.reason,
            Entry.actor,
            Entry.plugin,
            Entry.rule,
            Entry.service_record_id,
        )
        .join(Entry, Entry.id == Posting.entry_id)
        .join(Account, Account.id == Posting.account_id)
        .join(District, District.id == Posting.district_id)
        .outerjoin(Volunteer, Volunteer.id == Account.volunteer_id)
        .where(Posting.district_id.in_(export.node_ids)),
        Entry.effective_at,
        export,
    )
    for rows in _keyset(statement, Posting.id, export):
        yield [row[1:] for row in rows]


# -- service records ---------------------------------------------------------------------

_RECORD_COLUMNS = (
    Column("id", "记录号", "record", "number"),
    Column("node", "辖区", "node"),
    Column("volunteer_id", "志愿者编号", "volunteer id", "number"),
    Column("volunteer", "志愿者", "volunteer"),
    Column("kind", "类别", "kind"),
    Column("started_at", "开始时间", "started at", "time"),
    Column("minutes", "时长（分钟）", "minutes", "number"),
    Column("status", "状态", "status"),
    Column("points", "积分", "points", "number"),
    Column("verified", "已核实", "verified"),
    Column("queue_reason", "待审核原因", "why it waited"),
    Column("decided_at", "处理时间", "decided at", "time"),
    Column("decided_by", "处理人", "decided by"),
    Column("decision_reason", "处理原因", "decision reason"),
    Column("submitted_by", "提交人", "submitted by"),
)


def _records(export: Export) -> Iterator[list[tuple]]:
    statement = _period(
        select(
            ServiceRecord.id,
            District.code,
            Volunteer.id,
            Volunteer.name,
            ServiceRecord.kind,
            ServiceRecord.started_at,
            ServiceRecord.minutes,
            ServiceRecord.status,
            ServiceRecord.points,
            ServiceRecord.verified_at.is_not(None),
            ServiceRecord.queue_reason,
            ServiceRecord.decided_at,
            ServiceRecord.decided_by,
            ServiceRecord.decision_reason,
            ServiceRecord.submitted_by,
        )
        .join(District, District.id == ServiceRecord.district_id)
        .join(Volunteer, Volunteer.id == ServiceRecord.volunteer_id)
        .where(ServiceRecord.district_id.in_(export.node_ids)),
        ServiceRecord.started_at,
        export,
    )
    for rows in _keyset(statement, ServiceRecord.id, export):
        yield [(*row[:9], "是 / yes" if row[9] else "", *row[10:]) for row in rows]


# -- redemptions -------------------------------------------------------------------------


def _redemption_columns(export: Export) -> tuple[Column, ...]:
    columns = [
        Column("id", "兑换号", "redemption", "number"),
        Column("created_at", "兑换时间", "redeemed at", "time"),
        Column("node", "辖区", "node"),
        Column("volunteer_id", "志愿者编号", "volunteer id", "number"),
        Column("volunteer", "志愿者", "volunteer"),
        Column("sku", "项目", "item"),
        Column("provider", "服务商", "provider"),
        Column("points", "积分", "points", "number"),
        Column("status", "状态", "status"),
        Column("resolved_at", "完成时间", "resolved at", "time"),
        Column("resolved_by", "经办", "resolved by"),
    ]
    if not export.masked:
        columns.insert(8, Column("voucher", "兑换券号", "voucher"))
    return tuple(columns)


def _redemptions(export: Export) -> Iterator[list[tuple]]:
    statement = _period(
        select(
            Redemption.id,
            Redemption.created_at,
            District.code,
            Volunteer.id,
            Volunteer.name,
            Redemption.sku,
            Provider.code,
            Redemption.points,
            Redemption.voucher_code,
            Redemption.status,
            Redemption.resolved_at,
            Redemption.resolved_by,
        )
        .join(District, District.id == Redemption.district_id)
        .join(Volunteer, Volunteer.id == Redemption.volunteer_id)
        .join(Provider, Provider.id == Redemption.provider_id)
        .where(Redemption.district_id.in_(export.node_ids)),
        Redemption.created_at,
        export,
    )
    for rows in _keyset(statement, Redemption.id, export):
        if export.masked:
            yield [tuple(row[:8]) + tuple(row[9:]) for row in rows]
        else:
            yield [tuple(row) for row in rows]


# -- volunteers --------------------------------------------------------------------------


def _volunteer_columns(export: Export) -> tuple[Column, ...]:
    columns = [
        Column("id", "志愿者编号", "volunteer id", "number"),
        Column("name", "姓名", "name"),
        Column("node", "辖区", "node"),
        Column("phone", "手机号", "phone"),
        Column("status", "状态", "status"),
        Column("hours", "服务时长（小时）", "hours", "number"),
        Column("balance", "可用积分", "available points", "number"),
        Column("held", "冻结积分", "held points", "number"),
        Column("created_at", "登记时间", "registered at", "time"),
    ]
    if not export.masked:
        columns.insert(4, Column("card_code", "卡号", "card code"))
    return tuple(columns)


def _volunteers(export: Export) -> Iterator[list[tuple]]:
    statement = _period(
        select(
            Volunteer.id,
            Volunteer.name,
            District.code,
            Volunteer.phone,
            Volunteer.card_code,
            Volunteer.status,
            Volunteer.service_minutes,
            Account.balance,
            Account.held,
            Volunteer.created_at,
        )
        .join(District, District.id == Volunteer.district_id)
        .outerjoin(Account, and_(Account.volunteer_id == Volunteer.id))
        .where(Volunteer.district_id.in_(export.node_ids)),
        Volunteer.created_at,
        export,
    )
    for rows in _keyset(statement, Volunteer.id, export):
        out = []
        for vid, name, code, phone, card, status, minutes, balance, held, created in rows:
            hours = round(minutes / 60, 1)
            available = (balance or 0) - (held or 0)
            if export.masked:
                out.append(
                    (vid, name, code, mask_phone(phone), status, hours, available, held, created)
                )
            else:
                out.append((vid, name, code, phone, card, status, hours, available, held, created))
        yield out


# -- the audit log -----------------------------------------------------------------------

_AUDIT_COLUMNS = (
    Column("id", "编号", "id", "number"),
    Column("at", "时间", "at", "time"),
    Column("action", "操作", "action"),
    Column("actor", "操作人", "actor"),
    Column("actor_name", "操作人名称", "actor name"),
    Column("node", "辖区", "node"),
    Column("target", "对象", "target"),
    Column("ip", "IP", "IP"),
    Column("before", "之前", "before"),
    Column("after", "之后", "after"),
)


def _audit(export: Export) -> Iterator[list[tuple]]:
    node = aliased(District)
    statement = _period(
        select(
            AuditEvent.id,
            AuditEvent.at,
            AuditEvent.action,
            AuditEvent.actor,
            AuditEvent.actor_name,
            node.code,
            AuditEvent.target_type,
            AuditEvent.target_id,
            AuditEvent.ip,
            AuditEvent.before,
            AuditEvent.after,
        )
        .outerjoin(node, node.id == AuditEvent.district_id)
        .where(AuditEvent.district_path.startswith(export.path, autoescape=True)),
        AuditEvent.at,
        export,
    )
    for rows in _keyset(statement, AuditEvent.id, export):
        yield [
            (
                *row[:6],
                f"{row[6]} {row[7]}" if row[6] else "",
                row[8],
                json.dumps(row[9], ensure_ascii=False, default=str) if row[9] else "",
                json.dumps(row[10], ensure_ascii=False, default=str) if row[10] else "",
            )
            for row in rows
        ]


DATASETS: dict[str, Dataset] = {
    "entries": Dataset("entries", "积分分录", "entries", lambda e: _ENTRY_COLUMNS, _entries),
    "records": Dataset(
        "records", "服务记录", "service records", lambda e: _RECORD_COLUMNS, _records
    ),
    "redemptions": Dataset(
        "redemptions", "兑换记录", "redemptions", _redemption_columns, _redemptions
    ),
    "volunteers": Dataset(
        "volunteers", "志愿者名册", "volunteers", _volunteer_columns, _volunteers
    ),
    "audit": Dataset("audit", "操作日志", "audit log", lambda e: _AUDIT_COLUMNS, _audit),
}
FORMATS = ("csv", "xlsx")


def prepare(
    principal: Principal,
    dataset: str,
    *,
    district: str | int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Export:
    """Check the request and write its audit row; return what to read.

    Raises InvalidInputError (unknown dataset, a period that ends before it starts, a
    time without a zone), NotFoundError (no such node), ForbiddenError (out of reach)."""
    errors: dict[str, list[str]] = {}
    if dataset not in DATASETS:
        errors["dataset"] = [f"One of {', '.join(DATASETS)}."]
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            errors[name] = ["Give a time with a UTC offset."]
    if since is not None and until is not None and not errors and until <= since:
        errors["until"] = ["After since."]
    if errors:
        raise InvalidInputError("the export cannot be made as asked", errors=errors)
    node = district_info(district if district is not None else principal.district_id)
    require_scope(principal, node.path, "this district node")
    ids = tuple(
        db.session.scalars(
            select(District.id).where(District.path.startswith(node.path, autoescape=True))
        )
    )
    export = Export(
        dataset,
        node.id,
        node.code,
        ids,
        node.path,
        ZoneInfo(node.timezone),
        since,
        until,
        masked=principal.role == "auditor",
    )

    def work() -> None:
        audit.record(
            "export.download",
            district_id=node.id,
            target=("export", dataset),
            after={
                "dataset": dataset,
                "since": since.isoformat() if since else None,
                "until": until.isoformat() if until else None,
            },
        )

    ledger.atomic(work)
    return export


def _cell(value: Any, column: Column, zone: ZoneInfo) -> Any:
    """A value as a spreadsheet should see it: local times, formulas defused."""
    if value is None:
        return ""
    if column.kind == "time" and isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=ZoneInfo("UTC"))
        return moment.astimezone(zone).replace(tzinfo=None)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _headers(export: Export) -> list[str]:
    zone = export.zone.key
    return [
        f"{column.header} ({zone})" if column.kind == "time" else column.header
        for column in export.columns
    ]


def rows(export: Export) -> Iterator[list[Any]]:
    """Every row of the export, as cells, in batches read one after another."""
    columns = export.columns
    for batch in DATASETS[export.dataset].batches(export):
        for row in batch:
            yield [
                _cell(value, column, export.zone)
                for value, column in zip(row, columns, strict=True)
            ]


def csv_chunks(export: Export) -> Iterator[bytes]:
    """The export as UTF-8 CSV (with a byte order mark, so that Excel reads the Chinese),
    a few hundred rows a chunk."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")
    writer.writerow(_headers(export))
    for count, row in enumerate(rows(export), start=1):
        writer.writerow(
            [
                value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else value
                for value in row
            ]
        )
        if count % 500 == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def write_xlsx(export: Export, path: str) -> int:
    """Write the export to an XLSX file at `path` in constant memory; return the rows."""
    workbook = xlsxwriter.Workbook(path, {"constant_memory": True, "strings_to_formulas": False})
    try:
        sheet = workbook.add_worksheet(DATASETS[export.dataset].en[:31])
        bold = workbook.add_format({"bold": True})
        when = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        for number, header in enumerate(_headers(export)):
            sheet.write_string(0, number, header, bold)
        count = 0
        for count, row in enumerate(rows(export), start=1):
            for number, value in enumerate(row):
                if isinstance(value, datetime):
                    sheet.write_datetime(count, number, value, when)
                elif isinstance(value, bool):
                    sheet.write_boolean(count, number, value)
                elif isinstance(value, int | float):
                    sheet.write_number(count, number, value)
                else:
                    sheet.write_string(count, number, str(value))
    finally:
        workbook.close()
    return count


def response(export: Export, file_format: str):
    """The export as a download: CSV streamed as it is read, XLSX written to a temporary
    file first (a zip cannot be streamed row by row) and sent from there."""
    if file_format == "csv":
        engine = db.engine

        def streamed() -> Iterator[bytes]:
            with Session(engine) as session:
                yield from csv_chunks(replace(export, session=session))

        return Response(
            streamed(),
            mimetype="text/csv",
            headers={
                "Content-Disposition": f'attachment; filename="{export.filename("csv")}"',
                "Cache-Control": "no-store",
            },
        )
    handle, path = tempfile.mkstemp(suffix=".xlsx")
    os.close(handle)
    try:
        write_xlsx(export, path)
        opened = open(path, "rb")  # noqa: SIM115 (closed when the last chunk is sent)
    finally:
        os.unlink(path)  # the open handle keeps the data until the response is sent

    def chunks() -> Iterator[bytes]:
        with opened:
            while chunk := opened.read(64 * 1024):
                yield chunk

    return Response(
        chunks(),
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={
            "Content-Disposition": f'attachment; filename="{export.filename("xlsx")}"',
            "Cache-Control": "no-store",
        },
    )

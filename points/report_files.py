"""A node's report (points.reports) as a download: CSV, its tables one after another with
a blank line between them, or XLSX, a sheet per table.

Public: tables(report, months, kinds) -> list[Table]; csv_bytes(tables) -> bytes;
xlsx_bytes(tables) -> bytes; download(report, format) -> Response;
attachment(tables, format, name) -> Response.

The same figures as the page and `GET /api/v1/reports`, headers in both languages, times
in the node's zone. A report is a few hundred cells at most, so both are built in memory.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import xlsxwriter
from flask import Response

from points.plugins import activity_labels
from points.policy import district_info
from points.reports import MonthRow, Report, monthly


@dataclass(frozen=True)
class Table:
    zh: str
    en: str
    headers: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    @property
    def title(self) -> str:
        return f"{self.zh} / {self.en}"


FIGURES = (
    ("outstanding_start", "期初未兑积分", "Outstanding at the start"),
    ("issued", "发放", "Issued"),
    ("redeemed", "兑换", "Redeemed"),
    ("expired", "过期", "Expired"),
    ("corrections", "更正（净额）", "Corrections (net)"),
    ("gifts_in", "转入", "Gifts in"),
    ("gifts_out", "转出", "Gifts out"),
    ("outstanding_end", "期末未兑积分", "Outstanding at the end"),
    ("service_hours", "服务时长（小时）", "Service hours"),
    ("active_volunteers", "活跃志愿者", "Active volunteers"),
    ("new_volunteers", "新志愿者", "New volunteers"),
    ("volunteers", "志愿者总数", "Volunteers"),
)
BY_NODE = ("outstanding_start", "issued", "redeemed", "expired", "corrections", "gifts_in")
BY_NODE += ("gifts_out", "outstanding_end", "service_hours", "active_volunteers")
BY_NODE += ("new_volunteers",)


def _both(zh: str, en: str) -> str:
    return f"{zh} / {en}"


def tables(
    report: Report, months: list[MonthRow], kinds: dict[str, tuple[str, str]]
) -> list[Table]:
    """The report's tables; `kinds` names activity kinds (zh, en) by their code."""
    zone = ZoneInfo(_zone_of(report))
    labels = {key: (zh, en) for key, zh, en in FIGURES}
    summary = [
        (_both("节点", "Node"), f"{report.district_name} ({report.district})"),
        (_both(f"起 ({zone.key})", f"From ({zone.key})"), _local(report.start, zone)),
        (
            _both(f"止（不含）({zone.key})", f"Until, exclusive ({zone.key})"),
            _local(report.end, zone),
        ),
    ]
    summary += [(_both(zh, en), getattr(report, key)) for key, zh, en in FIGURES]
    summary += [
        (_both(f"{level} 星志愿者", f"Volunteers at {level} stars"), count)
        for level, count in report.star_levels.items()
    ]
    found = [Table("概况", "Summary", (_both("项目", "Figure"), _both("数值", "Value")), summary)]
    if report.children:
        found.append(
            Table(
                "按节点",
                "By node",
                (
                    _both("节点代码", "Node code"),
                    _both("节点", "Node"),
                    *(_both(*labels[key]) for key in BY_NODE),
                ),
                [
                    (child.district, child.district_name, *(getattr(child, k) for k in BY_NODE))
                    for child in report.children
                ],
            )
        )
    if report.budgets:
        found.append(
            Table(
                "积分预算",
                "Budgets",
                (
                    _both("节点代码", "Node code"),
                    _both("节点", "Node"),
                    _both("周期", "Period"),
                    _both("预算", "Budget"),
                    _both("已发放", "Used"),
                    _both("剩余", "Left"),
                    _both("超出预算时", "Beyond the budget"),
                ),
                [
                    (
                        row["district"],
                        row["name"],
                        row["label"],
                        row["budget"],
                        row["used"],
                        row["left"],
                        _both("待街道审核", "queued for the office")
                        if row["overflow"] == "queue"
                        else _both("削减", "clipped"),
                    )
                    for row in report.budgets
                ],
            )
        )
    found.append(
        Table(
            "按活动发放",
            "Issued by activity",
            (_both("活动", "Activity"), _both("名称", "Name"), _both("积分", "Points")),
            [
                (kind, " / ".join(kinds.get(kind, ("其他奖励", "Other awards"))), points)
                for kind, points in sorted(report.issued_by_kind.items(), key=lambda i: -i[1])
            ],
        )
    )
    found.append(
        Table(
            "按规则发放",
            "Issued by rule",
            (_both("规则", "Rule"), _both("积分", "Points")),
            sorted(report.issued_by_rule.items(), key=lambda item: -item[1]),
        )
    )
    found.append(
        Table(
            "按服务商和项目兑换",
            "Redeemed by provider and item",
            (
                _both("服务商代码", "Provider code"),
                _both("服务商", "Provider"),
                _both("项目", "Item"),
                _both("兑换券", "Vouchers"),
                _both("积分", "Points"),
            ),
            [
                (row["provider"], row["provider_name"], row["sku"], row["vouchers"], row["points"])
                for row in report.redeemed_by_item
            ],
        )
    )
    found.append(
        Table(
            "近 12 个月",
            "The last 12 months",
            (
                _both("月份", "Month"),
                _both("发放", "Issued"),
                _both("兑换", "Redeemed"),
                _both("过期", "Expired"),
                _both("月末未兑积分", "Outstanding at the month's end"),
                _both("服务时长（小时）", "Service hours"),
            ),
            [
                (m.month, m.issued, m.redeemed, m.expired, m.outstanding, m.service_hours)
                for m in months
            ],
        )
    )
    return found


def _zone_of(report: Report) -> str:
    return district_info(report.district).timezone


def _local(moment, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _text(value: Any) -> Any:
    # A name typed by a person could start like a formula: a spreadsheet must not run it.
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value


def csv_bytes(found: list[Table]) -> bytes:
    """UTF-8 with a byte order mark (Excel then reads the Chinese): each table's title,
    headers and rows, a blank line between tables."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer)
    for number, table in enumerate(found):
        if number:
            writer.writerow([])
        writer.writerow([table.title])
        writer.writerow(table.headers)
        writer.writerows([_text(value) for value in row] for row in table.rows)
    return buffer.getvalue().encode("utf-8")


def xlsx_bytes(found: list[Table]) -> bytes:
    """A workbook with a sheet per table, named in English (31 characters at most)."""
    buffer = io.BytesIO()
    workbook = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False})
    bold = workbook.add_format({"bold": True})
    for table in found:
        sheet = workbook.add_worksheet(sheet_name(table.en))
        sheet.write_string(0, 0, table.title, bold)
        for column, header in enumerate(table.headers):
            sheet.write_string(1, column, header, bold)
            sheet.set_column(column, column, max(12, min(len(header) + 2, 40)))
        for number, row in enumerate(table.rows, start=2):
            for column, value in enumerate(row):
                if isinstance(value, int | float) and not isinstance(value, bool):
                    sheet.write_number(number, column, value)
                else:
                    sheet.write_string(number, column, str(value))
    workbook.close()
    return buffer.getvalue()


MIMETYPES = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def download(report: Report, file_format: str) -> Response:
    """The report with its node's last 12 months (ending with the report's month) as a
    CSV or XLSX attachment."""
    zone = ZoneInfo(_zone_of(report))
    last = (report.end - timedelta(microseconds=1)).astimezone(zone).strftime("%Y-%m")
    found = tables(report, monthly(report.district, 12, last), activity_labels())
    first = report.start.astimezone(zone)
    return attachment(found, file_format, f"report-{report.district}-{first:%Y%m%d}")


def sheet_name(title: str) -> str:
    """`title` as Excel accepts a sheet's name: none of []:*?/\\ and at most 31
    characters (an activity's title may hold any of them)."""
    return re.sub(r"[\[\]:*?/\\]", " ", title).strip()[:31].strip() or "Sheet"


def attachment(found: list[Table], file_format: str, name: str) -> Response:
    """Tables as a CSV or XLSX download named `name` (without its extension)."""
    body = csv_bytes(found) if file_format == "csv" else xlsx_bytes(found)
    return Response(
        body,
        mimetype=MIMETYPES[file_format],
        headers={
            "Content-Disposition": f'attachment; filename="{name}.{file_format}"',
            "Cache-Control": "no-store",
        },
    )

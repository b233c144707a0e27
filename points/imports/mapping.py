"""How a node's paper files name things: a column mapping and a value mapping, saved per
node and import kind.

`columns` maps our field to the file's header (`{"kind": "服务类型", "details.street":
"街巷"}`); a field not in it is read from a header of its own name or its Chinese label.
`values` maps, per field, the file's value to ours (`{"kind": {"巡街": "patrol"}}`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from points import audit, ledger
from points.errors import InvalidInputError
from points.extensions import db
from points.models import ImportMapping, utcnow

# Each kind's fields: name -> (Chinese header also understood, required).
FIELDS: dict[str, dict[str, tuple[str, bool]]] = {
    "records": {
        "volunteer": ("志愿者", True),
        "kind": ("类型", True),
        "date": ("日期", True),
        "minutes": ("分钟", False),
        "reference": ("编号", False),
    },
    "balances": {
        "volunteer": ("志愿者", True),
        "points": ("积分", True),
        "date": ("日期", True),
        "reference": ("存折号", True),
    },
    "roster": {
        "reference": ("编号", True),
        "name": ("姓名", True),
        "phone": ("电话", False),
        "node": ("社区", False),
        "card_code": ("卡号", False),
        "pin": ("密码", False),
    },
}

MAX_MAPPED = 200


@dataclass(frozen=True)
class ColumnMapping:
    """A file's columns and values as our fields (see the module's docstring)."""

    kind: str
    columns: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "columns": dict(self.columns),
            "values": {k: dict(v) for k, v in self.values.items()},
        }

    def header_of(self, name: str, headers: list[str]) -> str | None:
        """The file's header for our field `name`, or None when the file lacks it."""
        given = self.columns.get(name)
        if given:
            return given if given in headers else None
        label = FIELDS[self.kind].get(name, ("",))[0]
        for candidate in (name, label):
            if candidate and candidate in headers:
                return candidate
        return None

    def missing(self, headers: list[str]) -> list[str]:
        """Our required fields that the file has no column for."""
        return [
            name
            for name, (_, required) in FIELDS[self.kind].items()
            if required and self.header_of(name, headers) is None
        ]

    def apply(self, row: Mapping[str, str], headers: list[str]) -> tuple[dict, dict]:
        """Return (fields, details) of one row: our fields' texts after the value mapping,
        and the detail fields (`details.<name>` columns, mapped or named so)."""
        fields: dict[str, str] = {}
        for name in FIELDS[self.kind]:
            header = self.header_of(name, headers)
            text = row.get(header, "") if header else ""
            fields[name] = self.values.get(name, {}).get(text, text)
        details: dict[str, str] = {}
        mapped = {header: name for name, header in self.columns.items()}
        for header in headers:
            name = mapped.get(header, header)
            if name.startswith("details.") and row.get(header, ""):
                detail = name.removeprefix("details.")
                text = row[header]
                details[detail] = self.values.get(name, {}).get(text, text)
        return fields, details


def check_mapping(kind: str, columns: Any, values: Any) -> ColumnMapping:
    """Return the mapping if it is well formed; raise InvalidInputError."""
    if kind not in FIELDS:
        raise InvalidInputError(
            f"unknown import kind {kind!r}", errors={"kind": [f"One of {', '.join(FIELDS)}."]}
        )
    errors: dict[str, list[str]] = {}
    known = set(FIELDS[kind])
    if not isinstance(columns, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in columns.items()
    ):
        errors["columns"] = ["Must map field names to column headers (text)."]
    else:
        unknown = [k for k in columns if k not in known and not _detail(k)]
        if unknown:
            errors["columns"] = [
                f"Unknown fields: {', '.join(sorted(unknown))}; one of "
                f"{', '.join(sorted(known))} or details.<name>."
            ]
    if not isinstance(values, Mapping) or not all(
        isinstance(k, str)
        and isinstance(v, Mapping)
        and all(isinstance(a, str) and isinstance(b, str) for a, b in v.items())
        for k, v in values.items()
    ):
        errors["values"] = ["Must map field names to {file value: our value} (text)."]
    if not errors and (len(columns) > MAX_MAPPED or sum(map(len, values.values())) > MAX_MAPPED):
        errors["values"] = [f"At most {MAX_MAPPED} columns and {MAX_MAPPED} values."]
    if errors:
        raise InvalidInputError("invalid mapping", errors=errors)
    columns = {k: v.strip() for k, v in columns.items() if v.strip()}
    values = {
        k: {a.strip(): b.strip() for a, b in v.items() if a.strip()} for k, v in values.items()
    }
    return ColumnMapping(kind, columns, {k: v for k, v in values.items() if v})


def _detail(name: str) -> bool:
    return name.startswith("details.") and len(name) > len("details.")


def saved_mapping(district_id: int, kind: str) -> ColumnMapping:
    """The node's saved mapping for `kind`, or an empty one."""
    row = db.session.scalar(
        select(ImportMapping).where(
            ImportMapping.district_id == district_id, ImportMapping.kind == kind
        )
    )
    if row is None:
        return ColumnMapping(kind)
    return ColumnMapping(kind, row.columns, row.values)


def save_mapping(district_id: int, mapping: ColumnMapping, *, actor: str) -> None:
    """Save the node's mapping for its kind (replacing the last), audited."""

    def work() -> None:
        row = db.session.scalar(
            select(ImportMapping)
            .where(ImportMapping.district_id == district_id, ImportMapping.kind == mapping.kind)
            .with_for_update()
        )
        before = None
        if row is None:
            row = ImportMapping(district_id=district_id, kind=mapping.kind)
            db.session.add(row)
        else:
            before = {"columns": row.columns, "values": row.values}
        row.columns = dict(mapping.columns)
        row.values = {k: dict(v) for k, v in mapping.values.items()}
        row.updated_by = actor
        row.updated_at = utcnow()
        db.session.flush()
        audit.record(
            "import.mapping",
            district_id=district_id,
            target=("import_mapping", row.id),
            before=before,
            after=mapping.as_dict() | {"kind": mapping.kind},
        )

    ledger.atomic(work)

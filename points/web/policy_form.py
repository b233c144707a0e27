"""A plugin's configuration as form fields, built from its JSON Schema, and back.

Public: leaves(json_schema) -> list[Leaf]; value_at(doc, path); read_form(form, leaves,
inherited) -> (config, locked, errors); shown(value, leaf) -> str.

Each leaf of the schema (a number, a yes/no, a choice, a line of text, a list, or an
object whose keys are free, such as a catalog's items) is one field. The form shows
every leaf with the value in effect, and the node sets a leaf when its "set here" box
is ticked or its value differs from the inherited one: so changing a number is enough,
and unticking the box hands the key back to the nodes above.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _

# Separators people type between the items of a list: commas (both widths), the
# enumeration comma, spaces.
LIST_SEPARATORS = re.compile(r"[,，、\s]+")


@dataclass(frozen=True)
class Leaf:
    """One field of a plugin's configuration form."""

    path: str  # dotted: "overall.day"
    widget: str  # number, yesno, choice, text, list, json
    nullable: bool = False
    choices: tuple[str, ...] = ()
    integers: bool = False  # for a list: its items are whole numbers
    minimum: float | None = None
    maximum: float | None = None

    @property
    def name(self) -> str:
        """The form control's id and name stem (dots are not welcome in ids)."""
        return self.path.replace(".", "__")


def _types(schema: Mapping[str, Any]) -> list[str]:
    kind = schema.get("type", [])
    return list(kind) if isinstance(kind, list) else [kind]


def leaves(schema: Mapping[str, Any], prefix: str = "") -> list[Leaf]:
    """The form fields of a JSON Schema object, in its order."""
    found = []
    for key, prop in (schema.get("properties") or {}).items():
        path = f"{prefix}{key}"
        types = _types(prop)
        nullable = "null" in types
        if "object" in types and prop.get("properties"):
            found.extend(leaves(prop, path + "."))
        elif "object" in types:
            found.append(Leaf(path, "json", nullable))
        elif "array" in types:
            items = _types(prop.get("items") or {})
            simple = bool(set(items) & {"string", "integer"})
            found.append(
                Leaf(path, "list" if simple else "json", nullable, integers="integer" in items)
            )
        elif "boolean" in types:
            found.append(Leaf(path, "yesno", nullable))
        elif "integer" in types or "number" in types:
            found.append(
                Leaf(
                    path,
                    "number",
                    nullable,
                    minimum=prop.get("minimum"),
                    maximum=prop.get("maximum"),
                )
            )
        elif prop.get("enum"):
            found.append(Leaf(path, "choice", nullable, tuple(str(v) for v in prop["enum"])))
        else:
            found.append(Leaf(path, "text", nullable))
    return found


_MISSING = object()


def value_at(doc: Any, path: str, default: Any = _MISSING) -> Any:
    """The value at a dotted path of nested objects, or `default` (a KeyError without)."""
    for part in path.split("."):
        if not isinstance(doc, Mapping) or part not in doc:
            if default is _MISSING:
                raise KeyError(path)
            return default
        doc = doc[part]
    return doc


_ABSENT = object()


def has(doc: Any, path: str) -> bool:
    """True when the nested objects hold a value at the dotted path."""
    return value_at(doc, path, _ABSENT) is not _ABSENT


def _put(doc: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        doc = doc.setdefault(part, {})
    doc[parts[-1]] = value


def shown(value: Any, leaf: Leaf) -> str:
    """A value as its form field holds it."""
    if value is None:
        return ""
    if leaf.widget == "yesno":
        return "true" if value else "false"
    if leaf.widget == "list":
        return ", ".join(str(item) for item in value)
    if leaf.widget == "json":
        return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)
    return str(value)


def _parse(text: str, leaf: Leaf) -> Any:
    """A form field's text as the value it stands for; ValueError with a message."""
    text = text.strip()
    if leaf.widget == "number":
        if not text:
            if leaf.nullable:
                return None
            raise ValueError(_("Enter a whole number."))
        try:
            return int(text)
        except ValueError:
            raise ValueError(_("Enter a whole number.")) from None
    if leaf.widget == "yesno":
        if text not in ("true", "false"):
            raise ValueError(_("Choose yes or no."))
        return text == "true"
    if leaf.widget == "list":
        items = [item for item in LIST_SEPARATORS.split(text) if item]
        if leaf.integers:
            try:
                return [int(item) for item in items]
            except ValueError:
                raise ValueError(_("Whole numbers, separated by commas.")) from None
        return items
    if leaf.widget == "json":
        if not text:
            return {} if not leaf.nullable else None
        try:
            return json.loads(text)
        except ValueError:
            raise ValueError(_("Not valid JSON.")) from None
    if leaf.widget == "text" and not text and leaf.nullable:
        return None
    return text


def read_form(
    form: Mapping[str, str], fields: list[Leaf], inherited: Mapping[str, Any]
) -> tuple[dict, list[str], dict[str, list[str]]]:
    """The layer a posted form describes: (config, locked keys, field errors by path).

    A leaf is set at the node when its "set here" box is ticked or its value differs
    from `inherited` (what the nodes above and the defaults give); a leaf locked from
    above is not read at all."""
    config: dict[str, Any] = {}
    locked: list[str] = []
    errors: dict[str, list[str]] = {}
    for leaf in fields:
        if form.get(f"above__{leaf.name}"):
            continue
        text = form.get(f"v__{leaf.name}")
        if text is None:
            continue
        try:
            value = _parse(text, leaf)
        except ValueError as error:
            errors[leaf.path] = [str(error)]
            continue
        if form.get(f"set__{leaf.name}") or value != value_at(inherited, leaf.path, None):
            _put(config, leaf.path, value)
        if form.get(f"lock__{leaf.name}"):
            locked.append(leaf.path)
    return config, locked, errors


def leaf_of(fields: list[Leaf], key: str) -> Leaf | None:
    """The field a dotted key belongs to: the leaf itself, or the one holding it."""
    best = None
    for leaf in fields:
        holds = key == leaf.path or key.startswith(leaf.path + ".")
        if holds and (best is None or len(leaf.path) > len(best.path)):
            best = leaf
    return best

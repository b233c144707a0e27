"""/office/catalog: the redemption items in effect at a node: add, edit, retire, reopen.

Every change is one policy version of the `catalog` plugin (points.catalog_items), so it
is validated by the plugin, refused under a lock from above, kept in the version history
and written to the audit log. The form carries the catalog's version as it was read:
when someone else changed it meanwhile, the save is refused rather than undoing theirs.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from flask import g, redirect, request, url_for
from flask_babel import gettext as _

from points import catalog_items, directory, settlements
from points.catalog_items import parse_date
from points.errors import ForbiddenError, InvalidInputError, PreconditionFailedError
from points.web.office import bp, staff_page
from points.web.pages import field_errors, render_page

PERIODS = ("month", "quarter", "year")


def _labels() -> dict[str, str]:
    return {
        "sku": _("Item code"),
        "name_zh": _("Name in Chinese"),
        "name_en": _("Name in English"),
        "cost": _("Points"),
        "provider": _("Provider"),
        "stock_per_month": _("Stock a month"),
        "per_person_limit": _("Times a person"),
        "min_star": _("Lowest star level"),
        "active_from": _("First day"),
        "active_until": _("Last day"),
        "unit_price": _("Unit price (yuan)"),
    }


# Where a field error of the plugin's schema belongs on the form.
_FORM_FIELD = {
    "names.zh-CN": "name_zh",
    "names.en": "name_en",
    "names": "name_zh",
    "per_person.limit": "per_person_limit",
    "per_person.period": "per_person_limit",
    "per_person": "per_person_limit",
    "unit_price_fen": "unit_price",
}


def _form_errors(error: InvalidInputError, sku: str) -> dict[str, list[str]]:
    """The policy's field errors (`config.items.<sku>.cost`) as the form's fields."""
    errors: dict[str, list[str]] = {}
    prefix = f"config.items.{sku}"
    for name, messages in field_errors(error).items():
        if name == prefix:
            target = "sku"
        elif name.startswith(prefix + "."):
            key = name[len(prefix) + 1 :]
            target = _FORM_FIELD.get(key, key)
        else:
            target = "form"
        errors.setdefault(target, []).extend(messages)
    return errors


def _number(value: str) -> Any:
    """A form's number: an int, None when empty, or the text as typed (the schema then
    says it is not a number)."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return value


def _fen(value: str) -> Any:
    """A price typed in yuan ("15", "15.5", "15.50") as whole fen, None when empty, or the
    text as typed when it is not one (the schema then says it is not a number)."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        fen = Decimal(value) * 100
        whole = fen.is_finite() and fen == fen.to_integral_value()
    except ArithmeticError:  # InvalidOperation, Overflow
        return value
    return int(fen) if whole else value


def _item(form) -> dict[str, Any]:
    """The item a form describes, as the catalog plugin's schema reads it."""
    limit = _number(form.get("per_person_limit", ""))
    return {
        "names": {"zh-CN": form.get("name_zh", "").strip(), "en": form.get("name_en", "").strip()},
        "cost": _number(form.get("cost", "")),
        "provider": form.get("provider", ""),
        "stock_per_month": _number(form.get("stock_per_month", "")),
        "per_person": None
        if limit is None
        else {"limit": limit, "period": form.get("per_person_period") or "month"},
        "min_star": _number(form.get("min_star", "")) or 0,
        "active_from": parse_date(form.get("active_from", "")),
        "active_until": parse_date(form.get("active_until", "")),
        "unit_price_fen": _fen(form.get("unit_price", "")),
    }


def _form_of(values: dict[str, Any]) -> dict[str, Any]:
    per_person = values.get("per_person") or {}
    return {
        "name_zh": values["names"]["zh-CN"],
        "name_en": values["names"]["en"],
        "cost": values["cost"],
        "provider": values["provider"],
        "stock_per_month": values.get("stock_per_month"),
        "per_person_limit": per_person.get("limit"),
        "per_person_period": per_person.get("period", "month"),
        "min_star": values.get("min_star") or 0,
        "active_from": values.get("active_from"),
        "active_until": values.get("active_until"),
        "unit_price": ""
        if values.get("unit_price_fen") is None
        else settlements.money(values["unit_price_fen"]),
    }


def _node() -> str:
    return request.values.get("district") or g.staff.district_code


def _version() -> int | None:
    value = request.form.get("version", "")
    return int(value) if value.isdigit() else None


def _page(status: int = 200, **context):
    district = context.pop("district", None) or _node()
    view = catalog_items.items_at(g.principal, district)
    path = None if g.principal.role == "admin" else g.principal.path
    return render_page(
        context.pop("template", "web/office/catalog/list.html"),
        status,
        view=view,
        nodes=directory.tree(path),
        providers=catalog_items.providers_for(view.district),
        periods=PERIODS,
        labels=_labels(),
        **{"form": {}, "errors": {}, "notice": None, **context},
    )


@bp.get("/catalog", endpoint="catalog")
@staff_page
def catalog_list():
    """The items in effect at the node (open, then upcoming, then retired)."""
    return _page(notice=request.args.get("done"))


@bp.post("/catalog")
@staff_page(change=True)
def catalog_create():
    """Add an item at the node."""
    sku = request.form.get("sku", "").strip()
    try:
        catalog_items.save_item(
            g.principal,
            _node(),
            sku,
            _item(request.form),
            new=True,
            expected_version=_version(),
        )
    except PreconditionFailedError:
        return _page(409, form=request.form, errors={"form": [_stale()]})
    except InvalidInputError as error:
        return _page(422, form=request.form, errors=_form_errors(error, sku))
    return redirect(url_for("web_office.catalog", district=_node(), done="added"))


def _stale() -> str:
    return _("Someone changed this catalog after you opened it. Nothing was saved: look again.")


def _find(view, sku: str):
    for item in view.items:
        if item.sku == sku:
            return item
    raise InvalidInputError(f"no item {sku!r} here", errors={"sku": ["No such item here."]})


@bp.route("/catalog/<string(maxlength=64):sku>", methods=["GET", "POST"])
@staff_page
def catalog_edit(sku: str):
    """Change an item at the node: only what differs from the item in effect is set here,
    so a community changing its street's price keeps inheriting the rest."""
    view = catalog_items.items_at(g.principal, _node())
    item = _find(view, sku)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        if g.principal.role not in ("office", "admin"):
            raise ForbiddenError(_("Auditors read everything in reach and change nothing."))
        try:
            catalog_items.save_item(
                g.principal,
                view.district,
                sku,
                _item(request.form),
                new=False,
                expected_version=_version(),
            )
        except PreconditionFailedError:
            errors = {"form": [_stale()]}
        except InvalidInputError as error:
            errors = _form_errors(error, sku)
        else:
            return redirect(url_for("web_office.catalog", district=view.district, done="saved"))
    return _page(
        422 if errors else 200,
        template="web/office/catalog/edit.html",
        district=view.district,
        item=item,
        form=request.form if errors else _form_of(item.values),
        errors=errors,
    )


@bp.post("/catalog/<string(maxlength=64):sku>/retire")
@staff_page(change=True)
def catalog_retire(sku: str):
    """Close an item from today (yesterday was its last day)."""
    return _state_change(catalog_items.retire_item, sku, "retired")


@bp.post("/catalog/<string(maxlength=64):sku>/reopen")
@staff_page(change=True)
def catalog_reopen(sku: str):
    """Open a retired item again."""
    return _state_change(catalog_items.restore_item, sku, "reopened")


def _state_change(change, sku: str, done: str):
    try:
        change(g.principal, _node(), sku, expected_version=_version())
    except PreconditionFailedError:
        return _page(409, errors={"form": [_stale()]})
    except InvalidInputError as error:
        return _page(422, errors={"form": [m for ms in field_errors(error).values() for m in ms]})
    return redirect(url_for("web_office.catalog", district=_node(), done=done))

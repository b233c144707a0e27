"""/office/providers: the service providers of the node: add, rename, close, link."""

from __future__ import annotations

from flask import g, redirect, request, url_for
from flask_babel import gettext as _

from points import directory, providers
from points.auth import require_scope
from points.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from points.extensions import db
from points.models import District
from points.web.cards import public_url
from points.web.office import bp, staff_page
from points.web.pages import field_errors, render_page


def _labels() -> dict[str, str]:
    return {"code": _("Code"), "name": _("Name"), "district": _("Node"), "status": _("Status")}


def _reach(code: str):
    provider = directory.provider_by_code(code)
    district = db.session.get(District, provider.district_id)
    require_scope(g.principal, district.path, "this provider")
    return provider, district


@bp.get("/providers", endpoint="providers")
@staff_page
def providers_list():
    """The providers of the node and below, and a form to add one."""
    path = None if g.principal.role == "admin" else g.principal.path
    return render_page(
        "web/office/providers/list.html",
        rows=directory.list_providers(path),
        nodes=directory.tree(path),
        form={},
        errors={},
        labels=_labels(),
        notice=request.args.get("done"),
    )


@bp.post("/providers")
@staff_page(change=True)
def providers_create():
    """Add a provider serving a node."""
    form = request.form
    path = None if g.principal.role == "admin" else g.principal.path
    try:
        node = directory.district_by_code(form.get("district", ""))
        require_scope(g.principal, node.path)
        directory.create_provider(form.get("code", "").strip(), form.get("name", ""), node.code)
    except (InvalidInputError, ConflictError, NotFoundError, ForbiddenError) as error:
        errors = field_errors(error) or {"district": [_("Choose a node in your reach.")]}
        return render_page(
            "web/office/providers/list.html",
            422,
            rows=directory.list_providers(path),
            nodes=directory.tree(path),
            form=form,
            errors=errors,
            labels=_labels(),
            notice=None,
        )
    return redirect(url_for("web_office.providers", done="created"))


@bp.route("/providers/<string(maxlength=64):code>", methods=["GET", "POST"])
@staff_page
def providers_edit(code: str):
    """Rename a provider, close or reopen it, and issue its page link."""
    provider, district = _reach(code)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        if g.principal.role not in ("office", "admin"):
            raise ForbiddenError(_("Auditors read everything in reach and change nothing."))
        try:
            directory.update_provider(
                code, name=request.form.get("name"), status=request.form.get("status") or None
            )
        except InvalidInputError as error:
            errors = field_errors(error)
        else:
            return redirect(url_for("web_office.providers", done="saved"))
    return render_page(
        "web/office/providers/edit.html",
        422 if errors else 200,
        provider=provider,
        district=district,
        form=request.form if errors else {"name": provider.name, "status": provider.status},
        errors=errors,
        labels=_labels(),
    )


@bp.post("/providers/<string(maxlength=64):code>/link")
@staff_page(change=True)
def providers_link(code: str):
    """Issue a link to the provider's voucher page: shown once, to send to the provider."""
    link = providers.issue_link(g.principal, code)
    provider, _district = _reach(code)
    return render_page(
        "web/office/providers/link.html", provider=provider, url=link.url(public_url())
    )

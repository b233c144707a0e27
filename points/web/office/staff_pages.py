"""/office/staff: the staff accounts of the node and below: add, disable, reset a password.

An admin manages anyone; an office manages the office and auditor accounts of the nodes
below its own (points.staff.check_manager).
"""

from __future__ import annotations

from flask import g, redirect, request, url_for
from flask_babel import gettext as _

from points import directory, staff
from points.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from points.web.office import bp, staff_page
from points.web.pages import field_errors, render_page


def _labels() -> dict[str, str]:
    return {
        "username": _("Username"),
        "name": _("Name"),
        "role": _("Role"),
        "district": _("Node"),
        "password": _("Password"),
    }


def _page(status: int = 200, **context):
    path = None if g.principal.role == "admin" else g.principal.path
    context.setdefault("form", {})
    context.setdefault("errors", {})
    nodes = directory.tree(path)
    if g.principal.role != "admin":
        nodes = [node for node in nodes if node.depth > 0]  # an office manages below itself
    return render_page(
        "web/office/staff/list.html",
        status,
        rows=staff.list_staff(g.principal),
        nodes=nodes,
        roles=("office", "auditor")
        if g.principal.role != "admin"
        else ("office", "auditor", "admin"),
        labels=_labels(),
        notice=request.args.get("done"),
        **context,
    )


@bp.get("/staff", endpoint="staff")
@staff_page
def staff_list():
    """Staff accounts of the node and below."""
    return _page()


@bp.post("/staff")
@staff_page(change=True)
def staff_create():
    """Add an account: its temporary password is shown once, to change at first sign-in."""
    form = request.form
    password = staff.temporary_password()
    try:
        account = staff.create_staff(
            form.get("username", ""),
            form.get("name", ""),
            form.get("role", ""),
            form.get("district", ""),
            password,
            by=g.principal,
            must_change_password=True,
        )
    except (InvalidInputError, ConflictError, NotFoundError) as error:
        return _page(422, form=form, errors=field_errors(error))
    except ForbiddenError:
        return _page(
            422, form=form, errors={"district": [_("You may add accounts only below your node.")]}
        )
    return render_page("web/office/staff/password.html", account=account, password=password)


@bp.post("/staff/<int:staff_id>/status")
@staff_page(change=True)
def staff_status(staff_id: int):
    """Disable an account (its sessions end at once) or enable it again."""
    staff.set_status(staff_id, request.form.get("status", ""), by=g.principal)
    return redirect(url_for("web_office.staff", done="saved"))


@bp.post("/staff/<int:staff_id>/password-reset")
@staff_page(change=True)
def staff_password_reset(staff_id: int):
    """A temporary password, shown once; the next sign-in must change it."""
    password = staff.reset_password(staff_id, by=g.principal)
    return render_page(
        "web/office/staff/password.html", account=staff.staff_info(staff_id), password=password
    )

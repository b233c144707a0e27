"""/office/tokens: machine tokens and kiosks: create (the secret shown once), revoke, pair.

People sign in with staff accounts; tokens are for machines: a kiosk's touch screen
(paired once with a code typed on it), an integration, a provider's link.
"""

from __future__ import annotations

from flask import g, redirect, request, url_for
from flask_babel import gettext as _

from points import directory, kiosks, tokens
from points.auth import require_scope
from points.errors import ForbiddenError, InvalidInputError, NotFoundError
from points.web.office import bp, staff_page
from points.web.pages import field_errors, render_page


def _labels() -> dict[str, str]:
    return {"name": _("Name"), "district": _("Node"), "role": _("Role")}


def _page(status: int = 200, **context):
    path = None if g.principal.role == "admin" else g.principal.path
    context.setdefault("form", {})
    context.setdefault("errors", {})
    return render_page(
        "web/office/tokens/list.html",
        status,
        rows=tokens.list_tokens(g.principal),
        nodes=directory.tree(path),
        roles=("kiosk", "volunteer") if g.principal.role != "admin" else directory.ROLES,
        labels=_labels(),
        notice=request.args.get("done"),
        **context,
    )


@bp.get("/tokens", endpoint="tokens")
@staff_page
def tokens_list():
    """Valid machine tokens of the node and below, newest first."""
    return _page()


@bp.post("/tokens/kiosk")
@staff_page(change=True)
def tokens_kiosk():
    """Add a kiosk: its pairing code is shown once, to type on the kiosk at /kiosk/pair."""
    form = request.form
    try:
        node = directory.district_by_code(form.get("district", ""))
        require_scope(g.principal, node.path)
        if not form.get("name", "").strip():
            raise InvalidInputError(
                "a kiosk needs a name", errors={"name": [_("Say where the kiosk stands.")]}
            )
        code = kiosks.create_kiosk(node.code, form["name"].strip())
    except (InvalidInputError, NotFoundError, ForbiddenError) as error:
        return _page(
            422,
            form=form,
            errors=field_errors(error) or {"district": [_("Choose a node in your reach.")]},
            form_name="kiosk",
        )
    return render_page("web/office/tokens/pairing.html", code=code, name=form["name"].strip())


@bp.post("/tokens/<int:token_id>/pairing-code")
@staff_page(change=True)
def tokens_pairing(token_id: int):
    """A new pairing code for a kiosk (a new screen, or one reset)."""
    listed = {row.id: row for row in tokens.list_tokens(g.principal)}
    if token_id not in listed or listed[token_id].role != "kiosk":
        raise NotFoundError(f"no kiosk token {token_id}")
    code = kiosks.issue_pairing_code(token_id)
    return render_page("web/office/tokens/pairing.html", code=code, name=listed[token_id].name)


@bp.post("/tokens")
@staff_page(change=True)
def tokens_create():
    """Create a token for a machine; its secret is shown once."""
    form = request.form
    try:
        token, secret = tokens.issue_token(
            g.principal,
            form.get("role", ""),
            form.get("district", ""),
            name=form.get("name", ""),
        )
    except (InvalidInputError, NotFoundError, ForbiddenError) as error:
        return _page(
            422,
            form=form,
            errors=field_errors(error) or {"role": [error.detail]},
            form_name="token",
        )
    return render_page("web/office/tokens/secret.html", token=token, secret=secret)


@bp.post("/tokens/<int:token_id>/revoke")
@staff_page(change=True)
def tokens_revoke(token_id: int):
    """Revoke a token at once (a kiosk signs out; a link stops working)."""
    tokens.revoke_as(g.principal, token_id)
    return redirect(url_for("web_office.tokens", done="revoked"))

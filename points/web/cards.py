"""Printing volunteer cards: the A4 sheet, served by the console (/office/cards) and
written to a file by `points cards print`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from flask import current_app, has_request_context, render_template, request

from points import cards

CARDS_CSS = Path(__file__).resolve().parent.parent / "static" / "web" / "cards.css"


def render_sheet(
    sheet: cards.CardSheet, *, standalone: bool = False, issued_for: int | None = None
) -> str:
    """Render a sheet of cards as an A4 page. Needs a request context (its language).

    `standalone` puts the print styles into the page itself, for a file opened from disk
    (`points cards print`); served pages link the stylesheet (the CSP allows no inline
    style). `issued_for` is the volunteer whose activation code the office has just
    issued: the page says the code is shown only now and links back to them.
    """
    inline_css = CARDS_CSS.read_text(encoding="utf-8") if standalone else None
    return render_template(
        "web/cards.html", sheet=sheet, inline_css=inline_css, issued_for=issued_for
    )


def activation_sheet(district: str, codes: Mapping[int, str], base_url: str | None = None) -> str:
    """Render the card sheet of volunteers whose activation codes were just issued
    (volunteer id -> code, as a roster import makes them), each card with a slip carrying
    its code, as one HTML file with its styles inlined: the codes are kept nowhere else,
    so print or keep this file safe.

    Works with or without a request (a page, the command line, an import's worker);
    `base_url` defaults to PUBLIC_URL, else the local address. Raises NotFoundError.
    """
    base = (base_url or current_app.config.get("PUBLIC_URL") or cards.LOCAL_URL).rstrip("/")
    if has_request_context():
        sheet = cards.card_sheet(district, base, activation_codes=codes)
        return render_sheet(sheet, standalone=True)
    with current_app.test_request_context("/office/cards"):
        sheet = cards.card_sheet(district, base, activation_codes=codes)
        return render_sheet(sheet, standalone=True)


def public_url() -> str:
    """The address people reach this service at: PUBLIC_URL, else this request's."""
    return (current_app.config.get("PUBLIC_URL") or request.url_root).rstrip("/")

"""Printing volunteer cards: the A4 sheet, served by the console (/office/cards) and
written to a file by `points cards print`."""

from __future__ import annotations

from pathlib import Path

from flask import current_app, render_template, request

from points import cards

CARDS_CSS = Path(__file__).resolve().parent.parent / "static" / "web" / "cards.css"


def render_sheet(sheet: cards.CardSheet, *, standalone: bool = False) -> str:
    """Render a sheet of cards as an A4 page. Needs a request context (its language).

    `standalone` puts the print styles into the page itself, for a file opened from disk
    (`points cards print`); served pages link the stylesheet (the CSP allows no inline
    style).
    """
    inline_css = CARDS_CSS.read_text(encoding="utf-8") if standalone else None
    return render_template("web/cards.html", sheet=sheet, inline_css=inline_css)


def public_url() -> str:
    """The address people reach this service at: PUBLIC_URL, else this request's."""
    return (current_app.config.get("PUBLIC_URL") or request.url_root).rstrip("/")

"""Languages of the pages: zh-CN first, English second; numbers and times per node."""

from __future__ import annotations

from datetime import datetime

from flask import Flask, current_app, g, request
from flask_babel import format_date, format_datetime, format_decimal, get_locale, get_translations

# The language codes people see and pick (in links), and the Babel locale of each.
LANGUAGES = {"zh-CN": "zh_Hans_CN", "en": "en"}
DEFAULT_LANGUAGE = "zh_Hans_CN"

# Message catalogues, one per audience (points/translations/zh_Hans_CN/LC_MESSAGES/*.po):
# Flask-Babel merges them, so a page finds every string; each file stays one team's.
DOMAINS = ("common", "me", "kiosk", "provider", "office")

# The cookie that remembers a person's language choice, for a year.
LANGUAGE_COOKIE = "points_lang"


def select_locale() -> str:
    """The remembered choice, else the browser's if it prefers English, else zh-CN: most
    people in front of these pages read Chinese."""
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    if chosen in LANGUAGES.values():
        return chosen
    best = request.accept_languages.best_match(["zh-CN", "zh", "en"])
    return "en" if best == "en" else DEFAULT_LANGUAGE


def select_timezone() -> str:
    """The time zone of the node the page is about (set by the view), else the default."""
    return g.get("page_timezone") or current_app.config["DEFAULT_TIMEZONE"]


def language_code() -> str:
    """Return the current language as people see it: "zh-CN" or "en"."""
    return "en" if str(get_locale()).startswith("en") else "zh-CN"


def in_english() -> bool:
    return language_code() == "en"


def pick(zh: str | None, en: str | None) -> str:
    """Return the text in the page's language from a zh-CN / English pair."""
    if in_english():
        return en or zh or ""
    return zh or en or ""


def bilingual(text: str | None) -> str:
    """Return one half of a stored "中文 / English" text, as the page's language wants.

    The ledger stores reasons in both languages joined by " / " (the plugins' convention);
    a text without the separator is shown as it is.
    """
    if not text:
        return ""
    zh, separator, en = text.partition(" / ")
    if not separator:
        return text
    return pick(zh.strip(), en.strip())


def points_text(value: int | None) -> str:
    """A number of points as the locale writes it (1,234)."""
    return format_decimal(value or 0)


def when(value: datetime | None, style: str = "medium") -> str:
    """A time in the page's time zone, written the locale's way."""
    if value is None:
        return ""
    return format_datetime(value, style)


def day(value: datetime | None) -> str:
    """A date in the page's time zone, written the locale's way (2026年12月3日)."""
    if value is None:
        return ""
    return format_date(value if not isinstance(value, datetime) else _local(value), "long")


def _local(value: datetime):
    from flask_babel import to_user_timezone

    return to_user_timezone(value).date()


def _translations():
    # Flask-Babel looks its translations up again for every string; a page shows dozens,
    # so the templates keep the request's own.
    # Kept in the WSGI environ, which lives exactly as long as the request.
    found = request.environ.get("points.translations")
    if found is None:
        found = request.environ["points.translations"] = get_translations()
    return found


def _gettext(text: str) -> str:
    return _translations().ugettext(text)


def _ngettext(singular: str, plural: str, number: int) -> str:
    return _translations().ungettext(singular, plural, number)


def install_filters(app: Flask) -> None:
    app.jinja_env.install_gettext_callables(_gettext, _ngettext, newstyle=True)
    app.jinja_env.filters.update(points=points_text, when=when, day=day, bilingual=bilingual)
    app.jinja_env.globals.update(pick=pick, language_code=language_code, LANGUAGES=LANGUAGES)

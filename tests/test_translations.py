"""Every string a page shows has its zh-CN translation, and the compiled catalogues are
current."""

from __future__ import annotations

from gettext import GNUTranslations
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from points.web.i18n import DOMAINS

ROOT = Path(__file__).resolve().parents[1]
CATALOGUES = ROOT / "points" / "translations" / "zh_Hans_CN" / "LC_MESSAGES"
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None}
METHODS = [("points/**.py", "python"), ("points/templates/web/**.html", "jinja2")]


def _catalogue(domain: str):
    with (CATALOGUES / f"{domain}.po").open("rb") as file:
        return read_po(file, locale="zh_Hans_CN", domain=domain)


def _messages() -> dict[str, str]:
    """Every message the code and templates mark for translation, with where it is."""
    found: dict[str, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), METHODS, keywords=KEYWORDS
    ):
        for text in message if isinstance(message, tuple) else (message,):
            found.setdefault(text, f"{filename}:{lineno}")
    return found


def test_translations_cover_every_page_string():
    translated: dict[str, str] = {}
    for domain in DOMAINS:
        for message in _catalogue(domain):
            if message.id and message.string:
                translated[message.id if isinstance(message.id, str) else message.id[0]] = (
                    message.string if isinstance(message.string, str) else message.string[0]
                )
    missing = {text: where for text, where in _messages().items() if text not in translated}
    assert not missing, f"strings without a zh-CN translation: {missing}"


def test_translations_keep_their_placeholders():
    for domain in DOMAINS:
        for message in _catalogue(domain):
            if message.id and isinstance(message.id, str) and message.string:
                assert sorted(_placeholders(message.id)) == sorted(_placeholders(message.string)), (
                    f"{domain}: {message.id!r} -> {message.string!r}"
                )


def _placeholders(text: str) -> list[str]:
    import re

    return re.findall(r"%\((\w+)\)s", text)


def test_translations_compiled_catalogues_are_current():
    """A .mo says what its .po says (run `make translations` after editing a .po)."""
    for domain in DOMAINS:
        with (CATALOGUES / f"{domain}.mo").open("rb") as file:
            compiled = GNUTranslations(file)
        for message in _catalogue(domain):
            if message.id and isinstance(message.id, str) and message.string:
                assert compiled.gettext(message.id) == message.string, (
                    f"{domain}.mo is stale for {message.id!r}: run make translations"
                )


def test_translations_agree_across_catalogues():
    """The catalogues merge into one at run time, the later overriding the earlier: a
    string two audiences share must read the same in both."""
    seen: dict[str, tuple[str, str]] = {}
    for domain in DOMAINS:
        for message in _catalogue(domain):
            if message.id and isinstance(message.id, str) and message.string:
                first = seen.setdefault(message.id, (domain, message.string))
                assert first[1] == message.string, (
                    f"{message.id!r}: {first[0]} says {first[1]!r}, {domain} {message.string!r}"
                )

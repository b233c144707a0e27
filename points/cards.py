"""Printed volunteer cards: what each card shows, for a node and every node below it.

A card lets someone without a phone take part: the kiosk's scanner reads its code, and
its QR code opens the volunteer's sign-in page on any phone. It shows the name, the
phone masked (a lost card tells a finder nothing), the card code, the node and the
office's contact line (from the nearest node that has one). A volunteer with a one-time
activation code gets a slip beside the card carrying it, on the sheet printed when the
code is issued (points.activation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from markupsafe import Markup
from sqlalchemy import select

from points import directory
from points.auth import Principal, require_scope
from points.extensions import db
from points.models import District, Volunteer
from points.volunteers import mask_phone

# The command line's address when PUBLIC_URL is not set: `make run` serves here.
LOCAL_URL = "http://127.0.0.1:5000"


@dataclass(frozen=True)
class Card:
    """One printed card."""

    name: str
    phone: str | None  # masked: 139****1234
    card_code: str
    sign_in_url: str
    qr_svg: Markup
    node: str
    contact: str | None
    # The one-time activation code, grouped ("4821 0937 5512"), printed on a slip beside
    # the card: only on a sheet made when the code was issued (only its hash is kept).
    activation_code: str | None = None


@dataclass(frozen=True)
class CardSheet:
    """The cards of a node's active volunteers, in the order of their card codes' owners."""

    district: str
    district_name: str
    cards: list[Card]


def sign_in_url(base_url: str, card_code: str) -> str:
    """The link a card's QR code holds: the volunteer's sign-in page with the card filled in."""
    return f"{base_url.rstrip('/')}/me/sign-in?card={quote(card_code)}"


def card_sheet(
    district: str,
    base_url: str,
    principal: Principal | None = None,
    *,
    volunteer_id: int | None = None,
    activation_codes: Mapping[int, str] | None = None,
) -> CardSheet:
    """Return the cards of every active volunteer in `district` and the nodes below it
    (or of the one volunteer `volunteer_id`, a card to reprint).

    With `activation_codes` (volunteer id -> the code just issued: a roster import, or
    the office's "issue an activation code"), only those volunteers' cards, each with
    its code. `principal` is the office asking (it must reach the node), or None for the
    command line. Raises NotFoundError, ForbiddenError.
    """
    from points.activation import group
    from points.web.forms import qr_svg

    node = directory.district_by_code(district)
    if principal is not None:
        require_scope(principal, node.path)
    nodes = {
        row.path: row
        for row in db.session.execute(
            select(District.path, District.name, District.contact).where(
                # Its own path and every node above: the contact line may come from there.
                District.path.in_(_prefixes(node.path))
                | District.path.startswith(node.path, autoescape=True)
            )
        )
    }
    statement = (
        select(Volunteer.id, Volunteer.name, Volunteer.phone, Volunteer.card_code, District.path)
        .join(District, District.id == Volunteer.district_id)
        .where(
            District.path.startswith(node.path, autoescape=True),
            Volunteer.status == "active",
        )
        .order_by(District.path, Volunteer.id)
    )
    if volunteer_id is not None:
        statement = statement.where(Volunteer.id == volunteer_id)
    if activation_codes is not None:
        statement = statement.where(Volunteer.id.in_(list(activation_codes)))
    rows = db.session.execute(statement).all()
    cards = []
    for row in rows:
        code = (activation_codes or {}).get(row.id)
        url = sign_in_url(base_url, row.card_code)
        cards.append(
            Card(
                row.name,
                mask_phone(row.phone),
                row.card_code,
                url,
                qr_svg(url, scale=2),
                nodes[row.path].name,
                _contact(row.path, nodes),
                group(code) if code else None,
            )
        )
    return CardSheet(node.code, node.name, cards)


def _prefixes(path: str) -> list[str]:
    """A node's path and those of every node above it: "/1/4/" -> ["/1/", "/1/4/"]."""
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[: n + 1]) + "/" for n in range(len(parts))]


def _contact(path: str, nodes: dict) -> str | None:
    """The contact line of the node with `path`, else of the nearest node above it."""
    for prefix in reversed(_prefixes(path)):
        found = nodes.get(prefix)
        if found is not None and found.contact:
            return found.contact
    return None

"""Signals the core sends once something has happened, for observers such as metrics."""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

# Sent once an entry is committed; the sender is the entry's kind ("earn", "redeem", ...).
entry_committed = _signals.signal("entry-committed")

# Sent once a redemption reaches a status; the sender is the status ("held", "fulfilled",
# "cancelled", "expired") and `count` says how many redemptions reached it.
redemption_changed = _signals.signal("redemption-changed")

# Sent when a card and PIN were refused at a kiosk; the sender is why ("unknown_card",
# "wrong_pin", "locked").
pin_refused = _signals.signal("pin-refused")

# Sent when a request is refused for its token's rate limit; the sender is the role.
rate_limited = _signals.signal("rate-limited")

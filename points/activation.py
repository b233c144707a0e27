"""One-time activation codes: what an imported volunteer types once, instead of a PIN.

An imported roster cannot slow-hash thousands of PINs in time (PIN_HASH_METHOD costs tens
to hundreds of milliseconds each), so an imported volunteer gets a random 12-digit code,
printed on their card sheet, and chooses their PIN at first use (points.auth.activate).
While `volunteers.activation_hash` is set, `pin_hash` holds UNUSABLE_PIN_HASH, which no
PIN matches.

Why a faster hash is safe here: the code has 10^12 values, 10^6 times a PIN's 10^6, so
ACTIVATION_HASH_METHOD may cost a thousandth of PIN_HASH_METHOD and a guesser holding a
copy of the database still does more work per code than per PIN; and, as for PINs, the
hash is of an HMAC keyed with SECRET_KEY, so the copy alone lets nobody try any code.
Online guessing is bounded by the card's lockout, shared with PINs. docs/operations.md
gives the measured costs.

The functions here read no database, and `hash_activation` takes the key and method as
arguments, so a roster import can hash codes in a process pool without an app context.
"""

from __future__ import annotations

import hmac
import re
import secrets

from flask import current_app
from werkzeug.security import check_password_hash, generate_password_hash

CODE_DIGITS = 12
CODE_PATTERN = re.compile(r"^[0-9]{12}$")
# What pin_hash holds while a volunteer has an activation code: werkzeug's
# check_password_hash is False for it whatever is typed (it names no method).
UNUSABLE_PIN_HASH = "!"


def new_activation_code() -> str:
    """Return a fresh random 12-digit code (digits only: kiosks have a numeric pad)."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def group(code: str) -> str:
    """Return a code as people read it aloud and type it: "4821 0937 5512"."""
    return " ".join(code[i : i + 4] for i in range(0, len(code), 4))


def normalise(typed: str) -> str:
    """Return a typed code without the spaces and dashes people copy from the sheet."""
    return "".join(c for c in typed if c not in " -\u3000") if isinstance(typed, str) else ""


def looks_like_code(typed: str) -> bool:
    """True when `typed` has the shape of an activation code (12 digits, spaces allowed)."""
    return bool(CODE_PATTERN.match(normalise(typed)))


def hash_activation(code: str, secret_key: str | None = None, method: str | None = None) -> str:
    """Return the stored form of a code: a salted hash of an HMAC with the secret key.

    Without `secret_key` and `method` they are the app's SECRET_KEY and
    ACTIVATION_HASH_METHOD; give both to hash outside the app (a process pool).
    """
    if secret_key is None:
        secret_key = current_app.config["SECRET_KEY"]
    if method is None:
        method = current_app.config["ACTIVATION_HASH_METHOD"]
    keyed = hmac.new(secret_key.encode(), normalise(code).encode(), "sha256")
    return generate_password_hash(keyed.hexdigest(), method=method)


def check_activation(code: str, activation_hash: str) -> bool:
    """Return True when `code` (spaces allowed) matches the stored hash."""
    code = normalise(code)
    if not CODE_PATTERN.match(code):
        return False
    keyed = hmac.new(current_app.config["SECRET_KEY"].encode(), code.encode(), "sha256")
    return check_password_hash(activation_hash, keyed.hexdigest())

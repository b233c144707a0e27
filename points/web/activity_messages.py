"""What the activity pages say when `points.activities` refuses something.

The service's messages are the API's plain English details; the pages speak to people,
Chinese first, so each known refusal has its own translated sentence, matched on the
service's words. An unknown one is shown as the service wrote it.
"""

from __future__ import annotations

from flask_babel import gettext as _

from points.errors import PointsError


def _known():
    # (words in the service's message, what the page says), most specific first.
    return (
        (
            "ask the office to withdraw you",
            _("Sign-up has closed: ask the office to withdraw you."),
        ),
        ("sign-up has closed", _("Sign-up has closed.")),
        ("full", _("This activity is full.")),
        ("places taken", _("This activity is full.")),
        ("star", _("Your star level is too low for this activity.")),
        ("check-in opens", _("Check-in opens 30 minutes before the start.")),
        ("check-in is closed", _("The activity has ended: check-in is closed.")),
        ("check-out closed", _("Check-out closed two hours after the end.")),
        (
            "less than a minute",
            _("Less than a minute has passed since check-in: nothing to record yet."),
        ),
        ("too late to withdraw", _("Already checked in: it is too late to withdraw.")),
        ("not checked in", _("Not checked in yet.")),
        ("not signed up", _("Not signed up for this activity.")),
        (
            "code is old or wrong",
            _("This code has expired. Scan the code on the organiser's screen again."),
        ),
        (
            "Expired or wrong",
            _("This code has expired. Scan the code on the organiser's screen again."),
        ),
        (
            "close the activity instead",
            _("Someone has checked in: close the activity instead of cancelling it."),
        ),
        ("cancel it instead", _("The activity has not started: cancel it instead.")),
        ("is not active", _("This card is not active. Please ask your office.")),
        ("cancelled", _("This activity was cancelled.")),
        ("closed", _("This activity is closed.")),
    )


def explain(error: PointsError) -> str:
    """The page's sentence for a refusal of the activities service."""
    words = " ".join([str(error.detail), *_field_messages(getattr(error, "errors", None))])
    for fragment, sentence in _known():
        if fragment in words:
            return sentence
    return str(error.detail)


def _field_messages(errors) -> list[str]:
    if isinstance(errors, dict):
        return [text for value in errors.values() for text in _field_messages(value)]
    if isinstance(errors, list | tuple):
        return [text for value in errors for text in _field_messages(value)]
    return [str(errors)] if errors else []

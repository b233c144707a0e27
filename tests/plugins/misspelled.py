"""A plugin with a misspelled hook (award_point): start-up must refuse it."""

from points.plugins import hookimpl


@hookimpl
def award_point(record):
    return []

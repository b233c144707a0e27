"""Built-in `budget`: a node's points budget per month, quarter or year.

A node's budget bounds the points awarded in one of its periods (its own time zone) to
the volunteers of the node and of every node below it; beyond it an award is clipped, or
the record waits for the office, as `overflow` says.

Unlike every other plugin's configuration, a budget is not inherited: the budget of a
node is the `points` set in that node's OWN policy layer (a child that sets nothing has
no budget of its own, and is still bounded by its ancestors' budgets, which count its
awards). The editor shows a child the values its ancestor set, as it does for any
plugin; they are the ancestor's budget, not a fresh one for the child. `period` and
`overflow` are read from the same layer as `points`. Enforcement is in
`points.budgets` (striped counters, exact under concurrency) and the service layer,
which clips or queues on every write path; this module declares the configuration.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from points.plugins import hookimpl

NAME = "budget"
PERIODS = ("month", "quarter", "year")
OVERFLOWS = ("clip", "queue")


class BudgetConfig(Schema):
    """`points`: the node's budget per `period` (null: no budget of its own);
    `overflow`: `clip` an award to what is left, or `queue` the record for the office."""

    points = fields.Integer(
        strict=True, load_default=None, allow_none=True, validate=validate.Range(min=0)
    )
    period = fields.String(load_default="month", validate=validate.OneOf(PERIODS))
    overflow = fields.String(load_default="clip", validate=validate.OneOf(OVERFLOWS))


@hookimpl
def register_config_schemas():
    return [(NAME, BudgetConfig)]

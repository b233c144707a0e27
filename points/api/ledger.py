"""GET /ledger/verify: the invariant report, for admins and auditors."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields

from points.api.body import Blueprint
from points.api.common import allow
from points.auth import current_principal
from points.fields import StrictBoolean
from points.verify import verify

blp = Blueprint("ledger", __name__, url_prefix="/api/v1/ledger", description="Ledger audit.")


class ProblemRowSchema(Schema):
    check = fields.String(required=True)
    message = fields.String(required=True)
    rows = fields.List(
        fields.List(fields.String()),
        required=True,
        metadata={"description": "Offending rows (at most 20), values as text."},
    )


class VerifyReportSchema(Schema):
    ok = StrictBoolean(required=True)
    summary = fields.String(required=True)
    counts = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    problems = fields.List(fields.Nested(ProblemRowSchema), required=True)


@blp.route("/verify")
class LedgerVerify(MethodView):
    @allow("auditor")
    @blp.response(200, VerifyReportSchema)
    def get(self):
        """Check every ledger invariant and report what is wrong, naming the rows."""
        principal = current_principal()
        report = verify()
        # The report is global; rows of other nodes are not an auditor's to see.
        whole_tree = principal.role == "admin" or principal.path.count("/") == 2
        return {
            "ok": report.ok,
            "summary": report.summary(),
            "counts": report.counts,
            "problems": [
                {
                    "check": problem.check,
                    "message": problem.message,
                    "rows": [[str(v) for v in row] for row in problem.rows] if whole_tree else [],
                }
                for problem in report.problems
            ],
        }

"""Imports (points.imports) over the API: a file sent as the body, run in the background
(dry or real), its state and refused rows, a preview confirmed, a node's mapping."""

from __future__ import annotations

from flask import Response, request, stream_with_context, url_for
from flask.views import MethodView
from marshmallow import RAISE, Schema, fields, validate
from sqlalchemy import select

from points import imports
from points.api.body import Blueprint, raw_body
from points.api.common import ROW_ID, UtcDateTime, allow
from points.api.districts import district_in_reach
from points.auth import current_principal, require_scope
from points.errors import InvalidInputError, NotFoundError
from points.extensions import db
from points.imports import files, jobs
from points.models import District, ImportProblem, ImportRun
from points.policy import district_info

blp = Blueprint(
    "imports",
    __name__,
    url_prefix="/api/v1/imports",
    description="Paper records, opening balances and rosters imported from CSV or XLSX.",
)

# What a file may be sent as (the body is the file itself).
FILE_TYPES = (
    "text/csv",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/octet-stream",
)
KINDS = ("records", "balances")


class ImportQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    district = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "The node (default: the token's own)."},
    )
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    dry_run = fields.Boolean(
        load_default=True,
        metadata={"description": "Check and evaluate every row, post nothing (the default)."},
    )
    file_name = fields.String(
        load_default="import.csv",
        validate=validate.Length(min=1, max=255),
        metadata={"description": "The file's name; `.xlsx` (or the file's bytes) means XLSX."},
    )


class ImportRunSchema(Schema):
    id = fields.Integer(required=True)
    district = fields.String(required=True)
    kind = fields.String(required=True)
    file_name = fields.String(required=True)
    status = fields.String(
        required=True,
        metadata={"description": "running, done, failed, or stopped (its process ended)."},
    )
    dry_run = fields.Boolean(required=True)
    rows_total = fields.Integer(required=True)
    rows_done = fields.Integer(required=True)
    posted = fields.Integer(required=True, metadata={"description": "Posted (or would be)."})
    duplicates = fields.Integer(required=True, metadata={"description": "Already imported."})
    refused = fields.Integer(required=True)
    points = fields.Integer(required=True)
    minutes = fields.Integer(required=True)
    error = fields.String(allow_none=True)
    started_by = fields.String(required=True)
    started_at = UtcDateTime(required=True)
    finished_at = UtcDateTime(allow_none=True)


class ImportListQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    district = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=200))


class ImportProblemSchema(Schema):
    line = fields.Integer(required=True)
    reason = fields.String(required=True)
    row = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


class ProblemsQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    after_line = fields.Integer(load_default=0, validate=validate.Range(min=0))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "csv")))


class MappingQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    district = fields.String(load_default=None, validate=validate.Length(min=1, max=64))


class ImportMappingSchema(Schema):
    columns = fields.Dict(
        keys=fields.String(validate=validate.Length(max=100)),
        values=fields.String(validate=validate.Length(max=255)),
        required=True,
        metadata={"description": "Our field (or details.<name>) -> the file's header."},
    )
    values = fields.Dict(
        keys=fields.String(validate=validate.Length(max=100)),
        values=fields.Dict(
            keys=fields.String(validate=validate.Length(max=255)),
            values=fields.String(validate=validate.Length(max=255)),
        ),
        required=True,
        metadata={"description": "Our field -> {the file's value: ours}."},
    )


def _node(code: str | None):
    principal = current_principal()
    if code is None:
        return district_info(principal.district_id)
    return district_info(district_in_reach(principal, code).id)


def _run_in_reach(run_id: int) -> tuple[ImportRun, object]:
    run = db.session.get(ImportRun, run_id)
    if run is None:
        raise NotFoundError(f"no import run {run_id}")
    node = district_info(run.district_id)
    require_scope(current_principal(), node.path)
    return run, node


def _shown(run: ImportRun, node) -> dict:
    return jobs.run_state(run) | {"district": node.code}


def _accepted(run_id: int, node):
    run = db.session.get(ImportRun, run_id)
    location = url_for("imports.ImportRunView", run_id=run_id)
    return _shown(run, node), 202, {"Location": location}


@blp.route("")
class Imports(MethodView):
    @allow("office", "auditor", who="admin, offices and auditors of the node or above")
    @blp.arguments(ImportListQuerySchema, location="query")
    @blp.response(200, ImportRunSchema(many=True))
    def get(self, query):
        """The node's runs and those of the nodes below it, newest first."""
        node = _node(query["district"])
        below = select(District.id).where(District.path.startswith(node.path, autoescape=True))
        runs = db.session.scalars(
            select(ImportRun)
            .where(ImportRun.district_id.in_(below))
            .order_by(ImportRun.id.desc())
            .limit(query["limit"])
        ).all()
        return [_shown(run, district_info(run.district_id)) for run in runs]

    @allow("office", who="admin, or an office of the node or above")
    @blp.arguments(ImportQuerySchema, location="query")
    @blp.doc(
        requestBody={
            "required": True,
            "description": "The file itself, as CSV or XLSX.",
            "content": {
                media: {"schema": {"type": "string", "format": "binary"}} for media in FILE_TYPES
            },
        }
    )
    @blp.response(202, ImportRunSchema)
    def post(self, query):
        """Import the request's body, a CSV (UTF-8 or GB18030) or XLSX file, into the
        node with its saved mapping (docs/imports.md). The file is checked (readable,
        the required columns present: else 422 with field errors) and the run goes on in
        the background: follow the Location until its status is not `running`. A dry run
        (the default) posts nothing and reports what a real run would post and every
        refused row; `POST /imports/{id}/post` then posts it."""
        content = request.get_data(cache=False)
        if not content:
            raise InvalidInputError("the body is empty", errors={"file": ["Send the file."]})
        node = _node(query["district"])
        principal = current_principal()
        mapping = imports.saved_mapping(node.id, query["kind"])
        run_id = imports.start_run(
            node,
            query["kind"],
            query["file_name"],
            jobs.opener(content),
            mapping,
            actor=principal.actor,
            dry_run=query["dry_run"],
        )
        # Kept once it has been read: a file that cannot be is refused above, unkept.
        sha = jobs.store_file(node, query["file_name"], content, actor=principal.actor)
        jobs.launch(run_id, node, sha)
        return _accepted(run_id, node)


raw_body(
    "imports.Imports",
    methods=("POST",),
    mimetypes=FILE_TYPES,
    max_bytes=files.MAX_FILE_BYTES,
)


@blp.route(f"/<{ROW_ID}:run_id>")
class ImportRunView(MethodView):
    @allow("office", "auditor", who="admin, offices and auditors of the node or above")
    @blp.response(200, ImportRunSchema)
    def get(self, run_id):
        """A run's status and counts."""
        run, node = _run_in_reach(run_id)
        return _shown(run, node)


@blp.route(f"/<{ROW_ID}:run_id>/post")
class ImportRunPost(MethodView):
    @allow("office", who="admin, or an office of the node or above")
    @blp.response(202, ImportRunSchema)
    def post(self, run_id):
        """Post the rows of a finished dry run (a preview), with its mapping, in the
        background; while one such run is going, answers it. 404 when the run is not a
        finished preview."""
        dry, node = _run_in_reach(run_id)
        real = jobs.confirm(dry, node, actor=current_principal().actor)
        return _accepted(real, node)


@blp.route(f"/<{ROW_ID}:run_id>/problems")
class ImportRunProblems(MethodView):
    @allow("office", "auditor", who="admin, offices and auditors of the node or above")
    @blp.arguments(ProblemsQuerySchema, location="query")
    @blp.response(200, ImportProblemSchema(many=True))
    @blp.alt_response(200, description="CSV (format=csv).", content_type="text/csv", success=True)
    def get(self, query, run_id):
        """The rows a run refused, by line, with the reason and the row as read: a page
        after `after_line`, or all of them as CSV (format=csv), to correct and import
        again."""
        run, _node = _run_in_reach(run_id)
        if query["format"] == "csv":
            return Response(
                stream_with_context(jobs.refused_csv(run.id)),
                mimetype="text/csv",
                headers={
                    "Content-Disposition": f'attachment; filename="import-{run.id}-refused.csv"'
                },
            )
        problems = db.session.scalars(
            select(ImportProblem)
            .where(ImportProblem.run_id == run.id, ImportProblem.line > query["after_line"])
            .order_by(ImportProblem.line)
            .limit(query["limit"])
        )
        return [{"line": p.line, "reason": p.reason, "row": p.row} for p in problems]


@blp.route("/mappings/<string(maxlength=16):kind>")
class ImportMappings(MethodView):
    @allow("office", "auditor", who="admin, offices and auditors of the node or above")
    @blp.arguments(MappingQuerySchema, location="query")
    @blp.response(200, ImportMappingSchema)
    def get(self, query, kind):
        """The node's mapping for a kind of import (empty when none is saved)."""
        _check_kind(kind)
        return imports.saved_mapping(_node(query["district"]).id, kind).as_dict()

    @allow("office", who="admin, or an office of the node or above")
    @blp.arguments(MappingQuerySchema, location="query")
    @blp.arguments(ImportMappingSchema)
    @blp.response(200, ImportMappingSchema)
    def put(self, query, body, kind):
        """Replace the node's mapping for a kind of import (audited)."""
        _check_kind(kind)
        node = _node(query["district"])
        mapping = imports.check_mapping(kind, body["columns"], body["values"])
        imports.save_mapping(node.id, mapping, actor=current_principal().actor)
        return mapping.as_dict()


def _check_kind(kind: str) -> None:
    if kind not in imports.FIELDS:
        raise NotFoundError(
            f"no import kind {kind!r}", errors={"kind": [f"One of {', '.join(imports.FIELDS)}."]}
        )

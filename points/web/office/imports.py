"""/office/imports: paper records and opening balances from a CSV or XLSX file
(points.imports), previewed by a dry run, the node's mapping edited, then posted.

The file's bytes are kept in `import_files` by their sha256, so the preview and the run it
confirms read the same bytes. Every run, dry or real, is done by `launch`: a thread with
its own app context, while the run's page shows its progress.
"""

from __future__ import annotations

from itertools import islice

from flask import Response, g, redirect, request, stream_with_context, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge

from points import directory, imports
from points.audit import current_actor
from points.errors import InvalidInputError, NotFoundError
from points.extensions import db
from points.imports import files, jobs
from points.models import District, ImportFile, ImportRun
from points.web.office import bp, node_in_reach, staff_page
from points.web.pages import field_errors, render_page

# The kinds the page offers, as it names them.
KINDS = {"records": ("服务记录", "service records"), "balances": ("期初积分", "opening balances")}
SAMPLE_ROWS = 5
SHOWN_PROBLEMS = 50
HISTORY = 20
# The upload's form fields and boundaries around the file.
FORM_SLACK = 64 * 1024
UPLOAD_ENDPOINTS = ("web_office.imports_upload",)


@bp.before_app_request
def allow_large_files() -> None:
    """An upload may be as large as an import file; every other request keeps the app's
    small limit (set before anything reads the body)."""
    if request.endpoint in UPLOAD_ENDPOINTS:
        request.max_content_length = files.MAX_FILE_BYTES + FORM_SLACK


def _labels() -> dict[str, str]:
    return {
        "district": _("Node"),
        "kind": _("What the file holds"),
        "file": _("File"),
        "columns": _("Columns"),
        "values": _("Kinds of service as written on paper"),
    }


def _field_names() -> dict[str, str]:
    return {
        "volunteer": _("Volunteer (card code, paper reference or phone)"),
        "kind": _("Kind of service"),
        "date": _("Date"),
        "minutes": _("Minutes"),
        "reference": _("Reference"),
        "points": _("Points"),
    }


@bp.app_template_global()
def field_name(name: str) -> str:
    """One of our import fields as the page names it."""
    return _field_names().get(name, name)


@bp.app_template_global()
def activity_kind_names() -> list[str]:
    """The kinds of service a record may name."""
    from points.imports.rows import kind_names

    return sorted(set(kind_names().values()))


@bp.app_template_global()
def run_status_name(run: ImportRun) -> str:
    """A run's state in words: a preview or an import, and how far it is."""
    status = "stopped" if jobs.stopped(run) else run.status
    words = {
        "running": _("running"),
        "done": _("done"),
        "failed": _("failed"),
        "stopped": _("stopped"),
    }.get(status, status)
    if run.dry_run:
        return _("Preview: %(status)s", status=words)
    return _("Import: %(status)s", status=words)


def _opener(content: bytes):
    return jobs.opener(content)


def _history(node) -> list[tuple[ImportRun, str]]:
    rows = db.session.execute(
        select(ImportRun, District.name)
        .join(District, District.id == ImportRun.district_id)
        .where(District.path.startswith(node.path, autoescape=True))
        .order_by(ImportRun.id.desc())
        .limit(HISTORY)
    )
    return [(run, name) for run, name in rows]


def _imports_page(node, status: int = 200, errors=None, form=None, stored=None):
    scope = None if g.principal.role == "admin" else g.principal.path
    return render_page(
        "web/office/imports/index.html",
        status,
        node=node,
        nodes=directory.tree(scope),
        kinds=KINDS,
        history=_history(node),
        errors=errors or {},
        form=form or {},
        stored=stored,
        labels=_labels(),
        max_megabytes=files.MAX_FILE_BYTES // (1024 * 1024),
    )


@bp.get("/imports", endpoint="imports")
@staff_page
def imports_index():
    """The upload form and the node's recent runs."""
    node = node_in_reach(request.args.get("district"))
    if node is None:
        raise NotFoundError("no such node in reach")
    return _imports_page(node)


@bp.errorhandler(RequestEntityTooLarge)
def too_large(error):
    """A file over the limit is refused before it is read, with a form error."""
    if request.endpoint == "web_office.imports_upload":
        return _too_large()
    return render_page(
        "web/error.html",
        413,
        audience="office",
        home_endpoint="web_office.home",
        status=413,
        title=_("This did not work"),
        detail=_("Please go back and try again."),
    )


@staff_page
def _too_large():
    errors = {"file": [_("The file is larger than %(size)s MB.", size=_megabytes())]}
    return _imports_page(node_in_reach(None), 413, errors)


def _megabytes() -> int:
    return files.MAX_FILE_BYTES // (1024 * 1024)


@bp.post("/imports", endpoint="imports_upload")
@staff_page(change=True)
def imports_upload():
    """Keep the file and preview it: a dry run of the node's mapping."""
    form = request.form
    errors: dict[str, list[str]] = {}
    node = node_in_reach(form.get("district"))
    if node is None:
        errors["district"] = [_("Choose a node in your reach.")]
    kind = form.get("kind", "")
    if kind not in KINDS:
        errors["kind"] = [_("Choose what the file holds.")]
    upload = request.files.get("file")
    content = upload.read(files.MAX_FILE_BYTES + 1) if upload is not None else b""
    name = (upload.filename or "") if upload is not None else ""
    if not name or not name.lower().endswith((".csv", ".xlsx")):
        errors["file"] = [_("Choose a CSV or XLSX file.")]
    elif not content:
        errors["file"] = [_("The file is empty.")]
    elif len(content) > files.MAX_FILE_BYTES:
        errors["file"] = [_("The file is larger than %(size)s MB.", size=_megabytes())]
    if errors:
        return _imports_page(node or node_in_reach(None), 422, errors, form)
    try:
        imports.read_rows(name, _opener(content))
    except InvalidInputError as error:
        return _imports_page(node, 422, _file_errors(error), form)
    sha = jobs.store_file(node, name, content, actor=current_actor().actor)
    return _preview(node, kind, sha, imports.saved_mapping(node.id, kind), form)


def _file_errors(error: InvalidInputError) -> dict[str, list[str]]:
    found = field_errors(error)
    return {"file" if name == "form" else name: messages for name, messages in found.items()}


def _preview(node, kind: str, sha: str, mapping, form):
    """Start the dry run and go to its page; a file that lacks a required column comes
    back with the mapping form to name it."""
    stored = db.session.get(ImportFile, sha)
    try:
        run_id = imports.start_run(
            node,
            kind,
            stored.name,
            _opener(stored.content),
            mapping,
            actor=current_actor().actor,
            dry_run=True,
        )
    except InvalidInputError as error:
        return _imports_page(
            node, 422, _file_errors(error), form, _stored(node, kind, stored, mapping)
        )
    jobs.launch(run_id, node, sha)
    return redirect(url_for("web_office.imports_show", run_id=run_id))


def _stored(node, kind: str, stored: ImportFile, mapping) -> dict:
    """What the mapping form needs of a stored file: its headers, first rows as mapped."""
    headers, rows = imports.read_rows(stored.name, _opener(stored.content))
    sample = [(line, mapping.apply(row, headers)) for line, row in islice(rows, SAMPLE_ROWS)]
    fields = imports.FIELDS[kind]
    return {
        "sha256": stored.sha256,
        "name": stored.name,
        "node": node,
        "kind": kind,
        "headers": [h for h in headers if h],
        "fields": fields,
        "reads": {name: mapping.header_of(name, headers) for name in fields},
        "columns": mapping.columns,
        "values": "\n".join(f"{a} = {b}" for a, b in mapping.values.get("kind", {}).items()),
        "sample": sample,
    }


def _value_lines(text: str) -> tuple[dict[str, str], list[str]]:
    """Lines "纸上的写法 = patrol" as a value mapping, and the lines that are not so."""
    found, wrong = {}, []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        theirs, sign, ours = line.partition("=")
        if not sign or not theirs.strip() or not ours.strip():
            wrong.append(_("Line %(number)s: write it as 巡街 = patrol.", number=number))
        else:
            found[theirs.strip()] = ours.strip()
    return found, wrong


@bp.post("/imports/mapping", endpoint="imports_mapping")
@staff_page(change=True)
def imports_mapping():
    """Save the node's mapping from the form, then preview the file with it."""
    form = request.form
    node = node_in_reach(form.get("district"))
    kind = form.get("kind", "")
    stored = db.session.get(ImportFile, form.get("sha256", ""))
    if node is None or kind not in KINDS or stored is None or not _uploaded_at(node, stored):
        raise NotFoundError("no such file or node in reach")
    saved = imports.saved_mapping(node.id, kind)
    headers, _rows = imports.read_rows(stored.name, _opener(stored.content))
    columns = {
        name: header
        for name, header in saved.columns.items()
        if name.startswith("details.")  # kept as they were: the form names our fields
    }
    for name in imports.FIELDS[kind]:
        header = form.get(f"column-{name}", "")
        if header and header not in headers:
            raise InvalidInputError("no such column", errors={"columns": [header]})
        if header:
            columns[name] = header
    values = {name: dict(mapped) for name, mapped in saved.values.items() if name != "kind"}
    errors: dict[str, list[str]] = {}
    if kind == "records":
        values["kind"], wrong = _value_lines(form.get("values", ""))
        if wrong:
            errors["values"] = wrong
    if not errors:
        try:
            mapping = imports.check_mapping(kind, columns, values)
        except InvalidInputError as error:
            errors = field_errors(error)
    if errors:
        shown = _stored(node, kind, stored, saved)
        shown["values"] = form.get("values", "")
        return _imports_page(node, 422, errors, form, shown)
    imports.save_mapping(node.id, mapping, actor=current_actor().actor)
    return _preview(node, kind, stored.sha256, mapping, form)


def _uploaded_at(node, stored: ImportFile) -> bool:
    """Whether the staff may read the file's rows at this node: it was sent from a node in
    their reach, or previewed at this one (a file is kept once per content, whoever sent
    it first)."""
    if node_in_reach(stored.district_id) is not None:
        return True
    return (
        db.session.scalar(
            select(ImportRun.id)
            .where(ImportRun.district_id == node.id, ImportRun.file_sha256 == stored.sha256)
            .limit(1)
        )
        is not None
    )


def _run_in_reach(run_id: int):
    run = db.session.get(ImportRun, run_id)
    if run is None:
        raise NotFoundError(f"no import run {run_id}")
    node = node_in_reach(run.district_id)
    if node is None:
        raise NotFoundError(f"no import run {run_id}")
    return run, node


@bp.get("/imports/<int:run_id>", endpoint="imports_show")
@staff_page
def imports_show(run_id: int):
    """A run: its progress while it runs; then its counts and refused rows, and for a
    dry run the file as the mapping reads it, the mapping form and the post button."""
    run, node = _run_in_reach(run_id)
    stored = db.session.get(ImportFile, run.file_sha256)
    shown = None
    if run.dry_run and run.status == "done" and stored is not None:
        mapping = imports.ColumnMapping(run.kind, run.mapping["columns"], run.mapping["values"])
        shown = _stored(node, run.kind, stored, mapping)
    return render_page(
        "web/office/imports/show.html",
        run=run,
        state=jobs.run_state(run),
        node=node,
        kinds=KINDS,
        stored=shown,
        problems=imports.problems_of(run.id, limit=SHOWN_PROBLEMS),
        errors={},
        labels=_labels(),
    )


@bp.get("/imports/<int:run_id>/status", endpoint="imports_status")
@staff_page
def imports_status(run_id: int):
    """The run's status and counts as JSON, for the progress bar."""
    run, _node = _run_in_reach(run_id)
    return jobs.run_state(run)


@bp.post("/imports/<int:run_id>/post", endpoint="imports_post")
@staff_page(change=True)
def imports_post(run_id: int):
    """Post the rows of a previewed file: a real run with the preview's mapping."""
    dry, node = _run_in_reach(run_id)
    real = jobs.confirm(dry, node, actor=current_actor().actor)
    return redirect(url_for("web_office.imports_show", run_id=real))


@bp.get("/imports/<int:run_id>/refused.csv", endpoint="imports_refused")
@staff_page
def imports_refused(run_id: int):
    """The refused rows as CSV, to correct and import again."""
    run, _node = _run_in_reach(run_id)
    return Response(
        stream_with_context(jobs.refused_csv(run.id)),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="import-{run.id}-refused.csv"',
            "Cache-Control": "no-store",
        },
    )

"""`points import records|balances FILE`: an import from the command line, with a
progress bar (rows/s and time left) and a file of the refused rows."""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask.cli import with_appcontext

from points.cli import PolicyGroup, fail


@click.group("import", cls=PolicyGroup)
def import_cli() -> None:
    """Import paper records, opening balances or a roster into a node."""


def _options(command):
    command = click.option(
        "--bad-rows",
        type=click.Path(dir_okay=False),
        default=None,
        help="Write the refused rows here (default: FILE.refused.csv beside FILE).",
    )(command)
    command = click.option(
        "--save-mapping", is_flag=True, help="Save --mapping as the node's mapping."
    )(command)
    command = click.option(
        "--mapping",
        "mapping_path",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help='JSON {"columns": {field: header}, "values": {field: {theirs: ours}}}; '
        "default: the node's saved mapping.",
    )(command)
    command = click.option(
        "--dry-run", is_flag=True, help="Check and evaluate every row; post nothing."
    )(command)
    command = click.option("--node", required=True, help="The node's code.")(command)
    command = click.argument("path", type=click.Path(exists=True, dir_okay=False))(command)
    return with_appcontext(command)


@import_cli.command("records")
@_options
def import_records(path, node, dry_run, mapping_path, save_mapping, bad_rows) -> None:
    """Import service records (volunteer, kind, date, minutes, details) from PATH."""
    _import("records", path, node, dry_run, mapping_path, save_mapping, bad_rows)


@import_cli.command("balances")
@_options
def import_balances(path, node, dry_run, mapping_path, save_mapping, bad_rows) -> None:
    """Import opening balances (volunteer, points, date, paper book reference) from PATH."""
    _import("balances", path, node, dry_run, mapping_path, save_mapping, bad_rows)


@import_cli.command("roster")
@click.option(
    "--sheet",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the card sheet with the activation codes here "
    "(default: FILE.cards.html beside FILE); the codes are kept nowhere else.",
)
@_options
def import_roster(path, node, dry_run, mapping_path, save_mapping, bad_rows, sheet) -> None:
    """Import stewards (reference, name, phone, node, card code, PIN) from PATH; those
    without a PIN get a one-time activation code on the card sheet written to --sheet."""
    registered = _import("roster", path, node, dry_run, mapping_path, save_mapping, bad_rows)
    codes = {r.volunteer_id: r.code for r in registered if r.code}
    if dry_run or not codes:
        return
    from points.web.cards import activation_sheet

    out = Path(sheet) if sheet else Path(path).with_suffix(".cards.html")
    out.write_text(activation_sheet(node, codes), encoding="utf-8")
    click.echo(
        f"card sheet with {len(codes)} activation codes written to {out}: print it, "
        "then delete the file (the codes are kept nowhere else)",
        err=True,
    )


def _import(kind, path, node_code, dry_run, mapping_path, save, bad_rows) -> list:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from points import imports
    from points.audit import current_actor
    from points.imports import jobs
    from points.policy import district_info

    node = district_info(node_code)
    if mapping_path is not None:
        try:
            given = json.loads(Path(mapping_path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            fail(f"cannot read the mapping {mapping_path}: {error}")
        if not isinstance(given, dict):
            fail("the mapping must be a JSON object with columns and values")
        mapping = imports.check_mapping(kind, given.get("columns", {}), given.get("values", {}))
        if save:
            imports.save_mapping(node.id, mapping, actor=current_actor().actor)
    else:
        mapping = imports.saved_mapping(node.id, kind)

    def opener():
        return open(path, "rb")

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} rows/s"),
        TimeRemainingColumn(),
    )
    # Shown from the run's first progress: a file refused for its columns shows no bar.
    bar = Progress(*columns, console=None, transient=False)
    task = bar.add_task("reading", total=None, rate="-", start=False)

    def progress(phase: str, done: int, total: int) -> None:
        if not bar.live.is_started:
            bar.start()
            bar.start_task(task)
        elapsed = bar.tasks[task].elapsed or 0
        rate = f"{done / elapsed:,.0f}" if elapsed > 0 and done else "-"
        bar.update(
            task,
            description=phase,
            completed=done,
            total=total if phase != "reading" else None,
            rate=rate,
        )

    registered: list = []
    try:
        run = imports.run_file(
            node,
            kind,
            Path(path).name,
            opener,
            mapping,
            actor=current_actor().actor,
            dry_run=dry_run,
            progress=progress,
            registered=registered,
        )
    finally:
        if bar.live.is_started:
            bar.stop()
    what = "would post" if dry_run else "posted"
    amounts = "" if kind == "roster" else f" ({run.points} points, {run.minutes} minutes)"
    click.echo(
        f"run {run.id}: {run.rows_total} rows, {what} {run.posted}{amounts}, "
        f"{run.duplicates} already imported, {run.refused} refused"
    )
    if run.refused:
        out = Path(bad_rows) if bad_rows else Path(path).with_suffix(".refused.csv")
        with out.open("w", encoding="utf-8", newline="") as file:
            for piece in jobs.refused_csv(run.id):
                file.write(piece)
        click.echo(f"refused rows (line and reason) written to {out}", err=True)
        for problem in imports.problems_of(run.id, limit=5):
            click.echo(f"  line {problem.line}: {problem.reason}", err=True)
    return registered

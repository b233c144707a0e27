"""Command-line interface: `points` is a Flask CLI group over create_app."""

from __future__ import annotations

import sys
from datetime import datetime

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from points.errors import PointsError


def _create_app():
    from points.app import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app)
def main() -> None:
    """Steward Points: volunteer points ledger and plugins."""


def fail(message: str) -> None:
    """Print a one-line error and exit non-zero."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.astimezone()  # a bare date or time is local time
    return value


class Handled(click.Group):
    """A click group whose commands turn PointsError into a one-line message."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PointsError as error:
            fail(error.detail)


@click.group("ledger", cls=Handled)
def ledger_cli() -> None:
    """Check and maintain the ledger."""


@ledger_cli.command("verify")
@with_appcontext
def verify_command() -> None:
    """Check every ledger invariant; exit 1 naming the offending rows if any fails."""
    from points.verify import verify

    report = verify()
    click.echo(report.summary())
    for problem in report.problems:
        click.echo(f"  [{problem.check}] {problem.message}", err=True)
        for row in problem.rows:
            click.echo(f"      {row}", err=True)
    if not report.ok:
        sys.exit(1)


@ledger_cli.command("seal")
@with_appcontext
def seal_command() -> None:
    """Link queued entries into their districts' hash chains."""
    from points import ledger

    click.echo(f"sealed {ledger.seal()} entries")


@ledger_cli.command("expire")
@click.option("--as-of", type=click.DateTime(), help="Expire lots due by this time (default now).")
@with_appcontext
def expire_command(as_of: datetime | None) -> None:
    """Expire lots that are due, one entry per volunteer."""
    from points import ledger

    entries = ledger.expire_lots(_aware(as_of))
    click.echo(f"expired {sum(e.postings[1][1] for e in entries)} points in {len(entries)} entries")


@ledger_cli.command("time-out-holds")
@with_appcontext
def time_out_command() -> None:
    """Release the points of pending holds past their expiry."""
    from points import ledger

    click.echo(f"timed out {ledger.time_out_holds()} holds")


@click.group("token", cls=Handled)
def token_cli() -> None:
    """Create and revoke API tokens."""


@token_cli.command("create")
@click.option(
    "--role", required=True, type=click.Choice(["admin", "office", "auditor", "kiosk", "volunteer"])
)
@click.option("--district", required=True, help="Code of the district node the token is for.")
@click.option("--volunteer", "volunteer_id", type=int, help="Volunteer id (role volunteer).")
@click.option("--name", default=None, help="What the token is for, shown in lists.")
@with_appcontext
def token_create(role: str, district: str, volunteer_id: int | None, name: str | None) -> None:
    """Create a token and print it; it is shown only this once."""
    from points.directory import create_token

    token, secret = create_token(
        role, district, name=name or f"{role}@{district}", volunteer_id=volunteer_id
    )
    click.echo(secret)
    click.echo(f"token {token.id}: {role} at {district}", err=True)


@token_cli.command("revoke")
@click.argument("token_id", type=int)
@with_appcontext
def token_revoke(token_id: int) -> None:
    """Revoke a token at once."""
    from points.directory import revoke_token

    revoke_token(token_id)
    click.echo(f"revoked token {token_id}")


@click.group("demo", cls=Handled)
def demo_cli() -> None:
    """Demo data."""


@demo_cli.command("load")
@click.option("--seed", default=2017, help="Random seed: the same seed gives the same demo.")
@with_appcontext
def demo_load(seed: int) -> None:
    """Load the Longtan street demo into an empty database and print its tokens."""
    from points.demo import load_demo

    if not current_app.config["SQLALCHEMY_DATABASE_URI"]:
        fail("no database configured")
    load_demo(seed=seed, echo=click.echo)

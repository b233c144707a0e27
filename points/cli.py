"""Command-line interface: `points` is a Flask CLI group over create_app."""

from __future__ import annotations

import sys
from datetime import datetime

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy.exc import DBAPIError, OperationalError

from points import __version__
from points.errors import PointsError


def _create_app():
    from points.app import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_version_option=False)
@click.version_option(__version__, prog_name="points")
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


def database_problem(error: DBAPIError) -> str:
    """Return a one-line message for a database error met by a command."""
    text = str(error.orig).lower()
    if "no such table" in text or ("relation" in text and "does not exist" in text):
        return "the database has no tables: run `points db upgrade`, or check POINTS_DATABASE_URL"
    if isinstance(error, OperationalError):
        return (
            f"cannot use the database: {error.orig.__class__.__name__}; check POINTS_DATABASE_URL"
        )
    return f"database error: {error.orig.__class__.__name__}"


class Handled(click.Group):
    """A click group whose commands turn PointsError and database errors into one line."""

    def invoke(self, ctx):
        from points import audit

        with audit.cli_actor():
            try:
                return self._invoke(ctx)
            except DBAPIError as error:
                fail(database_problem(error))

    def _invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PointsError as error:
            fail(error.detail)


def _fail_with(error: PointsError) -> None:
    """Print an error with its field errors, one per line, and exit non-zero."""
    click.echo(f"Error: {error.detail}", err=True)
    for name, messages in sorted((error.errors or {}).items()):
        for message in messages if isinstance(messages, list) else [messages]:
            click.echo(f"  {name}: {message}", err=True)
    sys.exit(1)


class PolicyGroup(Handled):
    """Like Handled, with field errors printed too."""

    def _invoke(self, ctx):
        try:
            return click.Group.invoke(self, ctx)
        except PointsError as error:
            _fail_with(error)


@click.group("ledger", cls=Handled)
def ledger_cli() -> None:
    """Check and maintain the ledger."""


@ledger_cli.command("verify")
@with_appcontext
def verify_command() -> None:
    """Check every ledger invariant; exit 1 naming the offending rows if any fails."""
    from points.verify import verify

    report = verify(unbounded=True)
    click.echo(report.summary())
    for problem in report.problems:
        click.echo(f"  [{problem.check}] {problem.message}", err=True)
        for row in problem.rows:
            click.echo(f"      {row}", err=True)
    if not report.ok:
        sys.exit(1)


@ledger_cli.command("rollups")
@with_appcontext
def rollups_command() -> None:
    """Write the ledger hours (the rollup reports read) again from the postings."""
    from points import rollups

    click.echo(f"rebuilt {rollups.rebuild()} ledger hours")


@ledger_cli.command("budgets")
@with_appcontext
def budgets_command() -> None:
    """Count every budget period's awards again from the entries (the counters
    `points ledger verify` checks)."""
    from points import budgets

    click.echo(f"rebuilt the counters of {budgets.rebuild()} budget periods")


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
    """Release the points of pending holds past their expiry; their redemptions expire."""
    from points.redemptions import expire_redemptions

    holds, redemptions = expire_redemptions()
    click.echo(f"timed out {holds} holds; {redemptions} redemptions expired")


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


@click.group("staff", cls=PolicyGroup)
def staff_cli() -> None:
    """Staff accounts of the office console (/office)."""


def _staff_by_username(username: str) -> int:
    from sqlalchemy import select

    from points.extensions import db
    from points.models import Staff

    found = db.session.scalar(select(Staff.id).where(Staff.username == username.strip().lower()))
    if found is None:
        fail(f"no staff account {username!r}")
    return found


@staff_cli.command("create")
@click.argument("username")
@click.option("--name", required=True, help="The person's name, as the console shows it.")
@click.option("--role", required=True, type=click.Choice(["office", "auditor", "admin"]))
@click.option("--district", required=True, help="Code of the district node they work for.")
@click.option(
    "--password",
    default=None,
    help="Their first password; left out, one is made and printed (to change at sign-in).",
)
@with_appcontext
def staff_create(username: str, name: str, role: str, district: str, password: str | None):
    """Create a staff account."""
    from points import staff

    made = password is None
    if made:
        password = staff.temporary_password()
    account = staff.create_staff(
        username, name, role, district, password, must_change_password=made
    )
    if made:
        click.echo(password)
    click.echo(f"staff {account.id}: {account.username}, {role} at {district}", err=True)


@staff_cli.command("disable")
@click.argument("username")
@with_appcontext
def staff_disable(username: str) -> None:
    """Disable an account at once; its sessions end."""
    from points import staff

    staff.set_status(_staff_by_username(username), "disabled")
    click.echo(f"disabled {username}")


@staff_cli.command("enable")
@click.argument("username")
@with_appcontext
def staff_enable(username: str) -> None:
    """Reactivate a disabled account."""
    from points import staff

    staff.set_status(_staff_by_username(username), "active")
    click.echo(f"enabled {username}")


@staff_cli.command("reset-password")
@click.argument("username")
@with_appcontext
def staff_reset_password(username: str) -> None:
    """Print a temporary password (shown once); the next sign-in must change it."""
    from points import staff

    click.echo(staff.reset_password(_staff_by_username(username)))


@staff_cli.command("list")
@with_appcontext
def staff_list() -> None:
    """List every staff account."""
    from sqlalchemy import select

    from points import staff
    from points.extensions import db
    from points.models import Staff

    for staff_id in db.session.scalars(select(Staff.id).order_by(Staff.username)):
        account = staff.staff_info(staff_id)
        click.echo(
            f"{account.username}\t{account.role}\t{account.district_code}\t{account.status}"
            f"\t{account.name}"
        )


@click.group("kiosk", cls=Handled)
def kiosk_cli() -> None:
    """Kiosks: create one, and pair its touch screen with a one-time code."""


@kiosk_cli.command("create")
@click.option("--district", required=True, help="Code of the district node the kiosk serves.")
@click.option("--name", required=True, help="Where the kiosk stands (recorded at check-in).")
@with_appcontext
def kiosk_create(district: str, name: str) -> None:
    """Create a kiosk and print its pairing code (valid 30 minutes, used once)."""
    from points.kiosks import create_kiosk

    code = create_kiosk(district, name)
    click.echo(code.code)
    click.echo(
        f"kiosk token {code.token_id} at {district}: open /kiosk/pair on the kiosk and type "
        f"the code before {code.expires_at:%Y-%m-%d %H:%M} UTC",
        err=True,
    )


def _base_url(given: str | None) -> str:
    """The address printed links and cards point at: --base-url, PUBLIC_URL, or local."""
    from points.cards import LOCAL_URL

    return (given or current_app.config.get("PUBLIC_URL") or LOCAL_URL).rstrip("/")


@click.group("provider", cls=Handled)
def provider_cli() -> None:
    """Service providers: the links to their voucher pages."""


@provider_cli.command("link")
@click.argument("code")
@click.option("--base-url", default=None, help="Where people reach the service (PUBLIC_URL).")
@with_appcontext
def provider_link(code: str, base_url: str | None) -> None:
    """Issue a link to provider CODE's voucher page and print it; it is shown only once."""
    from points.providers import issue_link

    link = issue_link(None, code)
    click.echo(link.url(_base_url(base_url)))
    click.echo(
        f"token {link.token_id}: provider link for {code} (revoke: points token revoke "
        f"{link.token_id})",
        err=True,
    )


@kiosk_cli.command("pairing-code")
@click.argument("token_id", type=int)
@with_appcontext
def kiosk_pairing_code(token_id: int) -> None:
    """Print a new pairing code for a kiosk token (to pair a new or reset screen)."""
    from points.kiosks import issue_pairing_code

    code = issue_pairing_code(token_id)
    click.echo(code.code)
    click.echo(f"valid until {code.expires_at:%Y-%m-%d %H:%M} UTC, once", err=True)


@click.group("cards", cls=Handled)
def cards_cli() -> None:
    """Printed volunteer cards."""


@cards_cli.command("print")
@click.option("--district", required=True, help="The node: its volunteers and those below it.")
@click.option("--out", "out", default=None, help="Write the A4 sheet here (default: stdout).")
@click.option("--base-url", default=None, help="Where the cards' QR codes point (PUBLIC_URL).")
@click.option(
    "--new-activation-codes",
    is_flag=True,
    help="Give the volunteers who have chosen no PIN yet new activation codes (their "
    "earlier codes stop) and print only their cards, each with its code.",
)
@with_appcontext
def cards_print(
    district: str, out: str | None, base_url: str | None, new_activation_codes: bool
) -> None:
    """Write an A4 sheet (HTML) of the cards of DISTRICT's volunteers, ready to print."""
    from flask_babel import refresh

    from points.cards import card_sheet
    from points.web.cards import render_sheet

    codes = None
    if new_activation_codes:
        from points.roster import issue_activations

        codes = issue_activations(None, district)
    sheet = card_sheet(district, _base_url(base_url), activation_codes=codes)
    # The sheet's words are in zh-CN, the pages' default language.
    with current_app.test_request_context("/office/cards"):
        refresh()
        page = render_sheet(sheet, standalone=True)
    if out is None:
        click.echo(page)
        return
    with open(out, "w", encoding="utf-8") as file:
        file.write(page)
    click.echo(f"wrote {len(sheet.cards)} cards of {district} to {out}", err=True)


@click.group("demo", cls=Handled)
def demo_cli() -> None:
    """Demo data."""


@demo_cli.command("load")
@click.option("--seed", default=2017, help="Random seed: the same seed gives the same demo.")
@click.option("--base-url", default=None, help="Where the demo is served, for its links.")
@with_appcontext
def demo_load(seed: int, base_url: str | None) -> None:
    """Load the Longtan street demo into an empty database and print its tokens."""
    from points.demo import load_demo

    if not current_app.config["SQLALCHEMY_DATABASE_URI"]:
        fail("no database configured")
    load_demo(seed=seed, echo=click.echo, base_url=_base_url(base_url))


# -- plugins and per-district policy -----------------------------------------------------


def _read_json(path: str) -> object:
    import json

    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError) as error:
        fail(f"cannot read JSON from {path}: {error}")


@click.group("plugins", cls=Handled)
def plugins_cli() -> None:
    """Installed plugins."""


@plugins_cli.command("list")
@with_appcontext
def plugins_list() -> None:
    """List registered plugins: name, where from, whether configurable, hooks."""
    from points.plugins import describe_plugins, plugin_manager

    for row in describe_plugins(plugin_manager()):
        flags = "configurable" if row["configurable"] else "-"
        if not row["default_enabled"]:
            flags += ",off-by-default"
        click.echo(f"{row['name']:<12} {row['source']:<24} {flags:<14} {' '.join(row['hooks'])}")


@click.group("policy", cls=PolicyGroup)
def policy_cli() -> None:
    """Per-district plugin configuration: show, set, preview, history."""


@policy_cli.command("show")
@click.argument("district")
@click.option("--plugin", default=None, help="Show only this plugin.")
@click.option("--as-of", type=click.DateTime(), help="As it stood at this time (default now).")
@with_appcontext
def policy_show(district: str, plugin: str | None, as_of: datetime | None) -> None:
    """Print the configuration in effect at DISTRICT, resolved down the tree, as JSON."""
    import json

    from points.policy import show_policy

    shown = show_policy(district, _aware(as_of))
    if plugin is not None:
        if plugin not in shown["plugins"]:
            fail(f"no plugin {plugin!r}")
        shown["plugins"] = {plugin: shown["plugins"][plugin]}
    click.echo(json.dumps(shown, ensure_ascii=False, indent=2))


@policy_cli.command("set")
@click.argument("district")
@click.argument("plugin")
@click.option("--file", "path", required=True, help="JSON object: the keys set at DISTRICT.")
@click.option("--effective-from", type=click.DateTime(), help="Date or time it takes effect.")
@click.option("--lock", "locked", multiple=True, help="A key children may not override.")
@click.option("--enable/--disable", "enabled", default=None, help="Turn the plugin on or off.")
@click.option("--comment", default=None, help="Why, for the history.")
@click.option("--author", default=None, help="Who (default cli:$USER).")
@with_appcontext
def policy_set(district, plugin, path, effective_from, locked, enabled, comment, author) -> None:
    """Store a new version of PLUGIN's configuration at DISTRICT."""
    import getpass

    from points.policy import set_policy

    version = set_policy(
        district,
        plugin,
        _read_json(path),
        author=author or f"cli:{getpass.getuser()}",
        locked=locked,
        enabled=enabled,
        effective_from=_aware(effective_from),
        comment=comment,
    )
    click.echo(
        f"{plugin} at {district}: version {version.version} (config version {version.id}), "
        f"effective from {version.effective_from.isoformat()}"
    )


@policy_cli.command("preview")
@click.argument("district")
@click.argument("plugin")
@click.option("--file", "path", required=True, help="JSON object: the draft for DISTRICT.")
@click.option("--from", "start", type=click.DateTime(), required=True, help="Period start.")
@click.option("--to", "end", type=click.DateTime(), required=True, help="Period end (excluded).")
@click.option("--lock", "locked", multiple=True, help="A key the draft locks.")
@click.option("--enable/--disable", "enabled", default=None, help="The draft turns it on/off.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@with_appcontext
def policy_preview(district, plugin, path, start, end, locked, enabled, as_json) -> None:
    """Re-run a past period's service records under a draft; write nothing."""
    import json

    from points.service import preview_policy

    preview = preview_policy(
        district,
        plugin,
        _read_json(path),
        start=_aware(start),
        end=_aware(end),
        locked=locked,
        enabled=enabled,
    )
    if as_json:
        click.echo(json.dumps(preview.as_dict(), ensure_ascii=False, indent=2))
        return
    click.echo(f"{'volunteer':<24} {'records':>7} {'current':>8} {'draft':>8} {'change':>8}")
    for row in preview.rows:
        click.echo(
            f"{row.name:<24} {row.records:>7} {row.current:>8} {row.draft:>8} "
            f"{row.draft - row.current:>+8}"
        )
    click.echo(
        f"{'total':<24} {preview.records:>7} {preview.current_total:>8} "
        f"{preview.draft_total:>8} {preview.draft_total - preview.current_total:>+8}"
    )


@policy_cli.command("history")
@click.argument("district")
@click.argument("plugin")
@with_appcontext
def policy_history_command(district: str, plugin: str) -> None:
    """List every version of PLUGIN's configuration set at DISTRICT, newest first."""
    import json

    from points.policy import policy_history

    versions = policy_history(district, plugin)
    if not versions:
        click.echo(f"no versions of {plugin} set at {district}: it inherits or uses defaults")
    for version in versions:
        click.echo(
            f"v{version.version} (id {version.id}) by {version.author} at "
            f"{version.created_at.isoformat()}, effective {version.effective_from.isoformat()}"
            + (f" — {version.comment}" if version.comment else "")
        )
        click.echo(f"    config {json.dumps(version.config, ensure_ascii=False)}")
        if version.locked:
            click.echo(f"    locked {', '.join(version.locked)}")
        if version.enabled is not None:
            click.echo(f"    enabled {str(version.enabled).lower()}")


@click.group("webhooks", cls=Handled)
def webhooks_cli() -> None:
    """Send webhook deliveries (docs/webhooks.md)."""


@webhooks_cli.command("deliver")
@click.option("--forever", is_flag=True, help="Keep delivering, polling when nothing is due.")
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 3600),
    default=5.0,
    show_default=True,
    help="Seconds between polls with --forever.",
)
@click.option("--limit", type=click.IntRange(1), help="At most this many tries in one pass.")
@with_appcontext
def webhooks_deliver(forever: bool, interval: float, limit: int | None) -> None:
    """Send the webhook deliveries that are due: one pass (for cron), or --forever."""
    from points import webhooks

    if forever:
        webhooks.deliver_forever(interval)
        return
    outcomes = webhooks.deliver(limit)
    click.echo(
        f"delivered {outcomes['delivered']}, to retry {outcomes['retry']}, "
        f"failed {outcomes['failed']}, lost {outcomes['lost']}"
    )


@click.group("activities", cls=Handled)
def activities_cli() -> None:
    """Activities: the closing job (docs/operations.md)."""


@activities_cli.command("close-due")
@click.option(
    "--as-of", type=click.DateTime(), help="Close as if it were this (local) time; default now."
)
@with_appcontext
def activities_close_due(as_of: datetime | None) -> None:
    """Close every open activity that ended more than two hours ago: who checked in and
    never out gets a record of the scheduled minutes for the office's review (cron)."""
    from points import activities, audit

    closed = activities.close_due(now=_aware(as_of), actor=audit.current_actor().actor)
    click.echo(f"closed {closed} activities")

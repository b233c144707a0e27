"""The application factory: create_app and its register_* steps."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from points import config as defaults
from points.api import register_api
from points.api.problems import http_problem
from points.database import configure_engine
from points.errors import PointsError, problem, problem_from
from points.extensions import db, migrate
from points.observability import register_observability


def migrations_folder() -> str:
    """Return the Alembic folder: beside the package in a checkout (an editable install),
    else in the working directory (a plain install, run from the checkout)."""
    beside = os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")
    return beside if os.path.isdir(beside) else os.path.join(os.getcwd(), "migrations")


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Create the Flask app: defaults, then POINTS_* environment variables, then test_config."""
    app = Flask("points", instance_relative_config=True)
    app.config.from_object(defaults)
    app.config.from_prefixed_env("POINTS")
    if test_config:
        app.config.update(test_config)
    if not app.config.get("DATABASE_URL"):
        os.makedirs(app.instance_path, exist_ok=True)
        app.config["DATABASE_URL"] = defaults.sqlite_default(app.instance_path)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = defaults.instance_secret(app.instance_path)
    app.config["SQLALCHEMY_DATABASE_URI"] = defaults.database_url(app.config["DATABASE_URL"])
    # No pool pre-ping: it costs a round trip per transaction. A connection found dead is
    # invalidated; a unit of work is then retried (ledger.atomic), a read answers 503.
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    app.json.ensure_ascii = False

    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_commands(app)
    register_observability(app)
    return app


def register_extensions(app: Flask) -> None:
    db.init_app(app)
    migrate.init_app(app, db, directory=migrations_folder(), render_as_batch=True)
    # One plugin manager per app, never a module global: tests build apps side by side.
    from points.plugins import make_plugin_manager

    app.extensions["points.plugins"] = make_plugin_manager(app.config.get("DISABLED_PLUGINS", ""))
    with app.app_context():
        configure_engine(db.engine, busy_seconds=app.config["SQLITE_BUSY_SECONDS"])
    from points.ledger.units import release_autocommit_connection

    app.teardown_appcontext(release_autocommit_connection)


def register_blueprints(app: Flask) -> None:
    register_api(app)


def register_errorhandlers(app: Flask) -> None:
    @app.errorhandler(PointsError)
    def points_error(error: PointsError):
        db.session.rollback()
        return problem_from(error)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return http_problem(error)

    @app.errorhandler(OperationalError)
    def database_unavailable(error: OperationalError):
        app.logger.warning(
            "database unavailable on %s %s: %s",
            request.method,
            request.path,
            error.orig.__class__.__name__,
        )
        db.session.rollback()
        response = problem(503, "Database unavailable", "Try again in a moment.")
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        # The log keeps the trace; the client learns nothing internal.
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        db.session.rollback()
        return problem(500, "Internal server error", "The error was logged.")


def register_commands(app: Flask) -> None:
    from points.cli import demo_cli, ledger_cli, token_cli

    app.cli.add_command(ledger_cli)
    app.cli.add_command(demo_cli)
    app.cli.add_command(token_cli)
    register_plugin_commands(app)


def register_plugin_commands(app: Flask) -> None:
    """Add the plugin and policy commands, then each plugin's own (register_commands)."""
    from points.cli import plugins_cli, policy_cli
    from points.plugins import call_each

    app.cli.add_command(plugins_cli)
    app.cli.add_command(policy_cli)
    call_each(app.extensions["points.plugins"], "register_commands", {"cli": app.cli})

"""Rate limits per token, counted in a store that every worker sees (Flask-Limiter).

Each request with a valid bearer token counts against its token (a kiosk session against
its kiosk), one fixed window per token, with a limit per role from configuration:
`RATELIMIT_<ROLE>` ("120/minute"; "0" or "off": none), else `API_RATE_LIMIT_PER_MINUTE`.
The counts live in Redis when `RATELIMIT_STORAGE_URL` names it, else in an SQLite file
in the instance folder that all workers of the machine share (`SQLiteStorage`). A request
without a valid token is not counted: it is refused by the view, as before.

Flask-Limiter checks the limit in its before_request hook. The key (the token) and the
limit (its role) come from authenticating the request there; the principal is kept in
the request's environ, so the view does not authenticate twice.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time

from flask import Flask, current_app, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded
from limits.storage import Storage
from sqlalchemy.exc import SQLAlchemyError

from points.errors import AuthenticationError, RateLimitedError, problem_from
from points.extensions import db
from points.signals import rate_limited

API_PREFIX = "/api/v1/"
ROLES = ("admin", "office", "auditor", "kiosk", "volunteer")
_NO_PRINCIPAL = object()


def _principal():
    """Return the request's principal for counting, or None: not the API, no valid token."""
    environ = request.environ
    found = environ.get("points.ratelimit.principal")
    if found is None:
        found = _NO_PRINCIPAL
        if request.path.startswith(API_PREFIX) and "Authorization" in request.headers:
            from points.auth import current_principal

            try:
                found = current_principal()
            except AuthenticationError:
                pass  # not counted: the view refuses it (401) as without a limiter
            except SQLAlchemyError:
                # Not counted either: the view meets the database's error and answers
                # it (503). Raised here, Flask-Limiter would take its store for dead.
                db.session.rollback()
        environ["points.ratelimit.principal"] = found
    return None if found is _NO_PRINCIPAL else found


def _role(principal) -> str:
    # A kiosk session acts for its kiosk and counts against it, at the kiosk's limit.
    return "kiosk" if principal.at_kiosk else principal.role


def limit_for(role: str) -> str | None:
    """Return the limit of `role` from configuration ("120/minute"), or None for none."""
    config = current_app.config
    value = config.get(f"RATELIMIT_{role.upper()}")
    if value is None:
        per_minute = int(config.get("API_RATE_LIMIT_PER_MINUTE") or 0)
        return f"{per_minute}/minute" if per_minute > 0 else None
    value = str(value).strip()
    return None if value.lower() in ("", "0", "off", "none") else value


def _limit() -> str:
    # Evaluated by Flask-Limiter before _exempt; an exempt request's limit is never used.
    principal = _principal()
    return (limit_for(_role(principal)) if principal else None) or "1/second"


def _exempt() -> bool:
    principal = _principal()
    return principal is None or limit_for(_role(principal)) is None


def _key() -> str:
    principal = _principal()
    return f"token:{principal.owner_id}" if principal else ""


def _refused(error: RateLimitExceeded):
    """Answer a refused request as problem+json with Retry-After, as every other 429."""
    limiter: Limiter = current_app.extensions["points.limiter"]
    retry_after = 1
    current = limiter.current_limit
    if current is not None:
        # reset_at is rounded up to the next second: never say more than a window.
        wait = min(current.reset_at - time.time(), current.limit.get_expiry())
        retry_after = max(1, math.ceil(wait))
    principal = _principal()
    if principal is not None:
        rate_limited.send(_role(principal))
    response = problem_from(
        RateLimitedError("too many requests from this token; slow down", retry_after=retry_after)
    )
    response.headers["Retry-After"] = str(retry_after)
    return response


def storage_url(app: Flask) -> str:
    """Return where the counts are kept: RATELIMIT_STORAGE_URL, else an SQLite file in the
    instance folder (a test app, which lives in one process, counts in memory)."""
    configured = app.config.get("RATELIMIT_STORAGE_URL")
    if configured:
        return configured
    if app.testing:
        return "memory://"
    os.makedirs(app.instance_path, exist_ok=True)
    return "sqlite:///" + os.path.join(app.instance_path, "ratelimit.sqlite")


def register_rate_limits(app: Flask) -> Limiter:
    """Count every authenticated API request against its token's limit, in shared storage."""
    # If the storage fails, count in each worker's memory until it is back, rather than
    # refuse or fail requests: a points ledger had better stay up.
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    app.config.setdefault("RATELIMIT_KEY_PREFIX", "points")
    limiter = Limiter(
        key_func=_key,
        application_limits=[ApplicationLimit(_limit, scope="api", exempt_when=_exempt)],
        storage_uri=storage_url(app),
        strategy=app.config.get("RATELIMIT_STRATEGY", "fixed-window"),
        headers_enabled=False,
    )
    limiter.init_app(app)
    app.extensions["points.limiter"] = limiter
    app.register_error_handler(RateLimitExceeded, _refused)
    return limiter


class SQLiteStorage(Storage):
    """A `limits` storage in an SQLite file: fixed windows that every process sees.

    One row per key; each hit is one statement (an upsert that starts a new window when
    the old one ended) in autocommit mode, so concurrent workers never lose a count.
    Counts are not worth an fsync: the file runs with synchronous=OFF.
    """

    STORAGE_SCHEME = ["sqlite"]  # noqa: RUF012 (the registry reads a class attribute)
    # Forget ended windows after this many hits of one process.
    PRUNE_EVERY = 1000

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        path = uri.split(":///", 1)[1] if ":///" in uri else ""
        if not path:
            raise ValueError(f"an SQLite rate limit storage needs a file: {uri!r}")
        self.path = path
        self._local = threading.local()
        self._hits = 0

    @property
    def base_exceptions(self) -> type[Exception]:
        return sqlite3.Error

    def _connection(self) -> sqlite3.Connection:
        # One connection per process and thread, opened after any fork.
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            connection = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            for attempt in range(20):
                try:
                    connection.execute("PRAGMA journal_mode=WAL")
                    connection.execute("PRAGMA synchronous=OFF")
                    connection.execute(
                        "CREATE TABLE IF NOT EXISTS hits ("
                        "key TEXT PRIMARY KEY, count INTEGER NOT NULL, expires_at REAL NOT NULL)"
                    )
                    break
                except sqlite3.OperationalError:
                    # Workers starting together race to create the file.
                    if attempt == 19:
                        raise
                    time.sleep(0.05)
            local.connection, local.pid = connection, os.getpid()
        return local.connection

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        connection = self._connection()
        (count,) = connection.execute(
            "INSERT INTO hits (key, count, expires_at) VALUES (?1, ?2, ?3 + ?4) "
            "ON CONFLICT (key) DO UPDATE SET "
            "count = CASE WHEN expires_at <= ?3 THEN ?2 ELSE count + ?2 END, "
            "expires_at = CASE WHEN expires_at <= ?3 THEN ?3 + ?4 ELSE expires_at END "
            "RETURNING count",
            (key, amount, now, expiry),
        ).fetchall()[0]  # fetched to the end: the statement, and its lock, are done
        self._hits += 1
        if self._hits % self.PRUNE_EVERY == 0:
            connection.execute("DELETE FROM hits WHERE expires_at <= ?", (now,))
        return count

    def get(self, key: str) -> int:
        row = (
            self._connection()
            .execute("SELECT count FROM hits WHERE key = ? AND expires_at > ?", (key, time.time()))
            .fetchone()
        )
        return row[0] if row else 0

    def get_expiry(self, key: str) -> float:
        row = (
            self._connection()
            .execute("SELECT expires_at FROM hits WHERE key = ?", (key,))
            .fetchone()
        )
        return max(row[0], time.time()) if row else time.time()

    def check(self) -> bool:
        try:
            self._connection().execute("SELECT 1").fetchall()
        except sqlite3.Error:
            return False
        return True

    def reset(self) -> int | None:
        return self._connection().execute("DELETE FROM hits").rowcount

    def clear(self, key: str) -> None:
        self._connection().execute("DELETE FROM hits WHERE key = ?", (key,))

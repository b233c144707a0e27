"""A real server for end-to-end tests and benchmarks: a database, gunicorn, an HTTP client.

`prepared_database` makes a migrated database (an SQLite file, or a private PostgreSQL
database); `Server` runs gunicorn on a free port against it, configured as the README
recommends (sync workers); `Http` talks JSON to it with the standard library.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text

from points.app import create_app
from points.config import database_url
from points.extensions import db

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).with_name("gunicorn")
SECRET_KEY = "e2e-secret"
# Cheap PIN hashes: the tests measure the API, not scrypt.
PIN_HASH_METHOD = "pbkdf2:sha256:1000"


def app_config(url: str) -> dict[str, Any]:
    """The configuration shared by the server and the test process that seeds its data."""
    return {
        "DATABASE_URL": url,
        "SECRET_KEY": SECRET_KEY,
        "PIN_HASH_METHOD": PIN_HASH_METHOD,
        "PASSWORD_HASH_METHOD": PIN_HASH_METHOD,
    }


@contextlib.contextmanager
def prepared_database(
    backend: str, directory: Path, name: str, server_url: str | None = None
) -> Iterator[str]:
    """Yield the URL of a new, migrated database; drop it afterwards (PostgreSQL).

    PostgreSQL connects to `server_url` (default POINTS_TEST_DATABASE_URL) only to create
    a database of its own beside it, named `name` plus the process id, so that it never
    meets the test suite's.
    """
    if backend == "sqlite":
        url = f"sqlite:///{directory / (name + '.sqlite')}"
        _migrate(url)
        yield url
        return
    server_url = server_url or os.environ.get("POINTS_TEST_DATABASE_URL")
    if not server_url:
        raise RuntimeError("PostgreSQL needs POINTS_TEST_DATABASE_URL")
    server = make_url(database_url(server_url))
    database = f"{name}_{os.getpid()}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{database}"'))
        url = server.set(database=database).render_as_string(hide_password=False)
        _migrate(url)
        yield url
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _migrate(url: str) -> None:
    from flask_migrate import upgrade

    app = create_app(app_config(url))
    with app.app_context():
        upgrade()
        db.engine.dispose()


@contextlib.contextmanager
def seeding(url: str) -> Iterator[Any]:
    """An app context on the server's database, for setting up data in-process."""
    app = create_app(app_config(url))
    with app.app_context():
        try:
            yield app
        finally:
            db.session.remove()
            db.engine.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    """gunicorn serving wsgi:app on a free port of 127.0.0.1, as the README runs it."""

    url: str
    workers: int = 2
    environment: dict[str, str] = field(default_factory=dict)
    app: str = "wsgi:app"
    log_path: Path | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> Server:
        environment = {
            **os.environ,
            "POINTS_DATABASE_URL": self.url,
            "POINTS_SECRET_KEY": SECRET_KEY,
            "POINTS_PIN_HASH_METHOD": PIN_HASH_METHOD,
            "POINTS_PASSWORD_HASH_METHOD": PIN_HASH_METHOD,
            **self.environment,
        }
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                str(GUNICORN),
                "--workers",
                str(self.workers),
                "--worker-class",
                "sync",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--graceful-timeout",
                "5",
                self.app,
            ],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=log,
        )
        if log is not subprocess.DEVNULL:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}: {self.log()}")
            try:
                if Http(self.base).get("/api/v1/health").status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not answer in {timeout}s: {self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """kill -9 the whole server, the arbiter and every worker at once: no request in
        flight is answered, no worker finishes anything."""
        if self.process is None:
            return
        arbiter = self.process.pid
        workers = []
        for status in Path("/proc").glob("[0-9]*/status"):
            with contextlib.suppress(OSError):
                for line in status.read_text().splitlines():
                    if line.startswith("PPid:") and int(line.split()[1]) == arbiter:
                        workers.append(int(status.parent.name))
        for pid in [arbiter, *workers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def log(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-4000:]
        return ""

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


@dataclass(frozen=True)
class Reply:
    """An HTTP response: status, headers and the JSON body (None if there was none)."""

    status: int
    headers: dict[str, str]
    body: Any

    @property
    def replayed(self) -> bool:
        return self.headers.get("idempotent-replayed") == "true"


class Http:
    """A small JSON client on urllib (gunicorn's sync workers close every connection)."""

    def __init__(self, base: str, timeout: float = 30):
        self.base = base
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        url = self.base + (path if path.startswith("/") else "/api/v1/" + path)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return self._reply(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            with error:
                return self._reply(error.code, error.headers, error.read())

    @staticmethod
    def _reply(status: int, headers, raw: bytes) -> Reply:
        lowered = {name.lower(): value for name, value in headers.items()}
        return Reply(status, lowered, json.loads(raw) if raw else None)

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> Reply:
        return self.request("GET", path, token, **kwargs)

    def post(self, path: str, token: str | None = None, body: Any = None, **kwargs: Any) -> Reply:
        return self.request("POST", path, token, body, **kwargs)

    def put(self, path: str, token: str | None = None, body: Any = None, **kwargs: Any) -> Reply:
        return self.request("PUT", path, token, body, **kwargs)

    def delete(self, path: str, token: str | None = None, **kwargs: Any) -> Reply:
        return self.request("DELETE", path, token, **kwargs)

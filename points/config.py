"""Configuration defaults; every key can be overridden by an environment variable POINTS_<KEY>."""

import os

# The instance folder holds the default SQLite database; create_app fills in the path.
DATABASE_URL = None

# How long a pending hold (a redemption not yet delivered) keeps its points, in minutes.
HOLD_MINUTES = 60 * 24 * 7

# On PostgreSQL, write an earn or a redemption in one call (points/ledger/fused.py);
# false takes the step-by-step path, which writes the same rows in more round trips.
FUSED_WRITES = True

# Retries of a unit of work that lost a race (PostgreSQL 40001/40P01, SQLite busy).
WRITE_RETRIES = 8

# SQLite waits this long for the write lock before giving up, in seconds.
SQLITE_BUSY_SECONDS = 30

# SQLite's synchronous pragma for the ledger's database: FULL syncs the write-ahead log
# at every commit, so a commit a client was told of survives a power loss; NORMAL syncs
# only at checkpoints (faster; a power loss may roll back the last commits). OFF, NORMAL,
# FULL or EXTRA: see docs/operations.md.
SQLITE_SYNCHRONOUS = "FULL"

# Bounds on every wait for the database, in seconds (0 turns one off); a request that
# meets one answers 503 with Retry-After. See docs/operations.md, "Timeouts".
# Connecting to PostgreSQL (libpq counts whole seconds, at least 2).
DATABASE_CONNECT_SECONDS = 5
# PostgreSQL statement_timeout: the server cancels a statement running longer.
DATABASE_STATEMENT_SECONDS = 10
# PostgreSQL lock_timeout: a statement waiting this long for a row or table lock fails.
DATABASE_LOCK_SECONDS = 5
# PostgreSQL idle_in_transaction_session_timeout: the server ends a session left idle
# inside a transaction (a stuck worker's), releasing its locks.
DATABASE_IDLE_IN_TRANSACTION_SECONDS = 60
# The client's own bound on any one reply from PostgreSQL, for when the server cannot
# cancel anything (paused, its host or network stalled): the connection is closed. Keep
# it above DATABASE_STATEMENT_SECONDS, and connect + reply well below gunicorn's
# --timeout (30 s by default).
DATABASE_REPLY_SECONDS = 15
# Waiting for a free connection in the process's pool.
DATABASE_POOL_SECONDS = 10

# Signs sessions and keys the PIN hashes. Left empty, create_app keeps a random one in
# the instance folder, so that a restart does not invalidate every PIN.
SECRET_KEY = None

# werkzeug.security method for PIN hashes (tests choose a cheap one).
PIN_HASH_METHOD = "scrypt"

# werkzeug.security method for one-time activation codes (12 digits, 10^6 times a PIN's
# space, so a thousandth of its work still costs a guesser more): see docs/operations.md.
ACTIVATION_HASH_METHOD = "pbkdf2:sha256:20000"

# werkzeug.security method for staff passwords: scrypt is memory-hard (tests choose a
# cheap one).
PASSWORD_HASH_METHOD = "scrypt"

# A staff member's console session lasts this long from sign-in (a working day).
STAFF_SESSION_HOURS = 12

# Default time zone of a district node when none is given.
DEFAULT_TIMEZONE = "Asia/Shanghai"


def database_url(url: str) -> str:
    """Return the SQLAlchemy URL for `url`, choosing psycopg 3 for plain postgresql:// URLs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def sqlite_default(instance_path: str) -> str:
    """Return the URL of the default SQLite database in the instance folder."""
    return "sqlite:///" + os.path.join(instance_path, "points.sqlite")


def instance_secret(instance_path: str) -> str:
    """Return the secret key kept in the instance folder, creating it on first use."""
    import secrets

    path = os.path.join(instance_path, "secret_key")
    os.makedirs(instance_path, exist_ok=True)
    # Written to a private temporary file and linked into place: of several workers
    # starting at once, the first link wins and all read the same complete key.
    temporary = f"{path}.{os.getpid()}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(32))
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)
    with open(path) as file:
        return file.read().strip()


# Pages: the session cookie (signed; HttpOnly; Secure is added when served over HTTPS by
# setting POINTS_SESSION_COOKIE_SECURE=true). It is not signed again on every page: the
# volunteer's page token inside carries its own expiry.
SESSION_COOKIE_NAME = "points_session"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_REFRESH_EACH_REQUEST = False

# Where people reach this service (https://points.example.cn): printed on cards (their QR
# codes open <PUBLIC_URL>/me/sign-in?card=...) and in provider links. Unset: the address
# a request came to, and for the command line http://127.0.0.1:5000.
PUBLIC_URL = None

# Reverse proxies in front of the service that set X-Forwarded-For and -Proto (nginx: 1).
# 0 (the default) trusts no header: the client's address is the TCP peer's. Behind a
# proxy, set it, or every request seems to come from the proxy: one address for the
# objection limit of the public notices, for kiosk logs, for /metrics' allow list.
PROXY_HOPS = 0

# Webhooks (docs/webhooks.md): each try of a delivery waits at most this long for the
# receiver at each step (connecting, sending, the answer), in seconds.
WEBHOOKS_TIMEOUT_SECONDS = 10
# Webhooks are never sent to loopback, private, link-local (cloud metadata) or other
# inner addresses, unless they lie in one of these networks: CIDRs separated by commas
# ("10.20.0.0/16"), for a receiver on the office's own network.
WEBHOOKS_ALLOWED_NETWORKS = ""

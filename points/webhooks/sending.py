"""Signing a webhook body and sending it over HTTP to addresses the server may reach."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

# What a receiver's answer may be read of: enough for an error message, not a download.
ANSWER_BYTES = 2048
USER_AGENT = "steward-points-webhooks/1"


def secret_for(secret_key: str | bytes, salt: str) -> str:
    """The endpoint's signing secret: HMAC-SHA256(SECRET_KEY, "webhook:" + salt), in hex."""
    key = secret_key.encode() if isinstance(secret_key, str) else secret_key
    return hmac.new(key, f"webhook:{salt}".encode(), hashlib.sha256).hexdigest()


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The `Points-Signature` header: `t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">`."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class AddressRefusedError(OSError):
    """Raised when a webhook's host resolves only to addresses the server may not call."""


def refused_address(address: str, allowed: Iterable[str]) -> bool:
    """True for a loopback, private, link-local (cloud metadata), multicast, reserved or
    unspecified address outside the `allowed` networks (CIDR strings)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in ipaddress.ip_network(network, strict=False) for network in allowed):
        return False
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def _guarded_connect(allowed: tuple[str, ...]):
    """A `socket.create_connection` that connects only to an address it has checked, so
    a name that resolves to an inner address (or changes its answer) is refused."""

    def connect(address, timeout=None, source_address=None):
        host, port = address
        problem: OSError | None = None
        for family, kind, proto, _name, sockaddr in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        ):
            if refused_address(sockaddr[0], allowed):
                problem = AddressRefusedError(f"{host} resolves to {sockaddr[0]}, not allowed")
                continue
            sock = socket.socket(family, kind, proto)
            try:
                if timeout is not None:
                    sock.settimeout(timeout)
                sock.connect(sockaddr)
                return sock
            except OSError as error:
                sock.close()
                problem = error
        raise problem or OSError(f"{host} has no address")

    return connect


@dataclass(frozen=True)
class Answer:
    """What one try gave: the receiver's status, or the error that stopped it."""

    status_code: int | None
    error: str | None
    milliseconds: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    allowed: tuple[str, ...] = (),
) -> Answer:
    """POST `body` to `url` (http or https, no redirects followed) within `timeout`
    seconds a step; never raises for the receiver's or the network's faults."""
    started = time.monotonic()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Answer(None, "not an http(s) URL", 0)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname, parts.port, timeout=timeout)
    connection._create_connection = _guarded_connect(allowed)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                **headers,
            },
        )
        response = connection.getresponse()
        text = response.read(ANSWER_BYTES)
        status = response.status
        error = None
        if not 200 <= status < 300:
            error = f"HTTP {status} {response.reason}: {text.decode('utf-8', 'replace')}"[:500]
        return Answer(status, error, _since(started))
    except TimeoutError:
        return Answer(None, f"timed out after {timeout:g} s", _since(started))
    except (OSError, http.client.HTTPException, ValueError) as error:
        # ValueError (UnicodeError): a host name that IDNA cannot encode.
        return Answer(None, f"{type(error).__name__}: {error}"[:500], _since(started))
    finally:
        connection.close()


def _since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)

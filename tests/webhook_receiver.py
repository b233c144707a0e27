"""A real HTTP receiver for webhook tests: answers 200, 500 or too late, as told."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def event_id(self) -> str:
        return self.headers["Points-Event-Id"]


class Receiver:
    """Listens on 127.0.0.1; `answers` is a queue of "ok", "fail" or "slow" (sleeps
    past the sender's timeout), then `otherwise` for every later request."""

    def __init__(self, slow_seconds: float = 1.0):
        self.received: list[Received] = []
        self.answers: deque[str] = deque()
        self.otherwise = "ok"
        self.slow_seconds = slow_seconds
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.received.append(Received(dict(self.headers.items()), body))
                    answer = receiver.answers.popleft() if receiver.answers else receiver.otherwise
                if answer == "slow":
                    time.sleep(receiver.slow_seconds)
                status = 500 if answer == "fail" else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                with contextlib.suppress(OSError):  # the sender may have given up
                    self.wfile.write(b"no" if status == 500 else b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def verify(secret: str, received: Received, tolerance: int = 300) -> bool:
    """What a receiver does (docs/webhooks.md): check the signature and its age."""
    fields = dict(part.split("=", 1) for part in received.headers["Points-Signature"].split(","))
    timestamp = int(fields["t"])
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + received.body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])

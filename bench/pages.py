"""Pages against the API endpoints that return the same data, as ratios in one run.

    python bench/pages.py [--seconds 4] [--rounds 3] [--clients 4] [--workers 4]
                          [--backends sqlite,postgresql] [--pg-url postgresql://...]

gunicorn (sync workers, as the README runs it) serves make run's demo on a fresh
database of each backend. Client processes drive a closed loop for a fixed time against
one URL at a time, alternating page and endpoint in rounds:

  volunteer home   GET /me/  (signed in by card and PIN)   vs  GET /api/v1/volunteers/N/balance
  kiosk catalog    GET /kiosk/catalog (a kiosk session)    vs  GET /api/v1/districts/C/catalog
                                                                ?volunteer_id=N (its token)

Each ratio is the page's requests/s over its endpoint's; the median over rounds is
reported (the machine is shared). Target: every page at least 0.5 of its endpoint.
Every answer must be 200, or the run fails.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
from pathlib import Path  # noqa: E402

TARGET = 0.5


def _client(port: int, path: str, headers: dict[str, str], seconds: float, out) -> None:
    done = failed = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        connection.close()
        if response.status == 200:
            done += 1
        else:
            failed += 1
    out.put((done, failed))


def measure(port: int, path: str, headers: dict[str, str], seconds: float, clients: int) -> float:
    """Requests per second of `clients` processes on one URL for `seconds`."""
    queue = multiprocessing.Queue()
    processes = [
        multiprocessing.Process(target=_client, args=(port, path, headers, seconds, queue))
        for _ in range(clients)
    ]
    for process in processes:
        process.start()
    results = [queue.get() for _ in processes]
    for process in processes:
        process.join()
    failed = sum(f for _, f in results)
    if failed:
        raise SystemExit(f"{failed} answers to {path} were not 200")
    return sum(d for d, _ in results) / seconds


def _form_post(port: int, path: str, fields: dict[str, str], cookie: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(
        "POST",
        path,
        body=urllib.parse.urlencode(fields),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie},
    )
    response = connection.getresponse()
    response.read()
    set_cookie = response.getheader("Set-Cookie") or ""
    return response.status, set_cookie.split(";")[0] or cookie


def _get(port: int, path: str, cookie: str = "") -> tuple[str, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path, headers={"Cookie": cookie} if cookie else {})
    response = connection.getresponse()
    body = response.read().decode()
    set_cookie = response.getheader("Set-Cookie") or ""
    return body, set_cookie.split(";")[0] or cookie


def _csrf(body: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', body).group(1)


def volunteer_cookie(port: int, card: str, pin: str) -> str:
    """Sign in on /me as a person would; return the session cookie."""
    body, cookie = _get(port, "/me/sign-in")
    status, cookie = _form_post(
        port, "/me/sign-in", {"csrf_token": _csrf(body), "card_code": card, "pin": pin}, cookie
    )
    if status != 302:
        raise SystemExit(f"sign-in answered {status}")
    return cookie


def pairs(port: int, demo) -> dict[str, tuple[str, dict, str, dict]]:
    """What to compare: name -> (page path, page headers, API path, API headers)."""
    volunteer = demo.volunteers[0]
    cookie = volunteer_cookie(port, volunteer.card_code, volunteer.pin)
    found = {
        "volunteer home": (
            "/me/",
            {"Cookie": cookie},
            f"/api/v1/volunteers/{volunteer.id}/balance",
            {"Authorization": f"Bearer {demo.tokens['volunteer']}"},
        )
    }
    found["kiosk catalog"] = kiosk_pair(port, demo)
    return found


def _api(port: int, method: str, path: str, token: str, body: dict | None = None) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(
        method,
        path,
        body=json.dumps(body or {}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    answer = json.loads(response.read() or b"{}")
    if response.status >= 300:
        raise SystemExit(f"{method} {path} answered {response.status}: {answer}")
    return answer


def _browse(port: int, jar: dict[str, str], method: str, path: str, form=None) -> tuple[int, str]:
    """One request as a browser makes it: the jar's cookies sent, its answer's kept."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    text = response.read().decode()
    for header in response.msg.get_all("Set-Cookie") or []:
        name, _, value = header.split(";")[0].partition("=")
        jar[name.strip()] = value
    return response.status, text


def kiosk_pair(port: int, demo) -> tuple[str, dict, str, dict]:
    """An office makes a kiosk and its pairing code (API); the screen pairs and signs a
    volunteer in by card and PIN; the same kiosk opens an API session for that volunteer.
    Returns the catalog page with the screen's cookies and the catalog endpoint with the
    session's token."""
    volunteer = next(v for v in demo.volunteers if v.community == "xizhaosi")
    office = demo.tokens["office"]
    kiosk = {"role": "kiosk", "district": "xizhaosi", "name": "bench"}
    made = _api(port, "POST", "/api/v1/tokens", office, kiosk)
    code = _api(port, "POST", f"/api/v1/tokens/{made['id']}/pairing-code", office)["pairing_code"]
    jar: dict[str, str] = {}
    for path, fields in [
        ("/kiosk/pair", {"code": code}),
        ("/kiosk/card", {"card_code": volunteer.card_code}),
        ("/kiosk/pin", {"pin": volunteer.pin}),
    ]:
        _, page = _browse(port, jar, "GET", path)
        status, _ = _browse(port, jar, "POST", path, {"csrf_token": _csrf(page), **fields})
        if status != 302:
            raise SystemExit(f"POST {path} answered {status}")
    opened = _api(
        port,
        "POST",
        "/api/v1/kiosk/sessions",
        jar["points_kiosk"],
        {"card_code": volunteer.card_code, "pin": volunteer.pin},
    )
    return (
        "/kiosk/catalog",
        {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())},
        f"/api/v1/districts/xizhaosi/catalog?volunteer_id={volunteer.id}",
        {"Authorization": f"Bearer {opened['token']}"},
    )


def run_backend(backend: str, args) -> dict[str, float]:
    from points.demo import load_demo
    from tests.e2e.server import Server, prepared_database, seeding

    with (
        tempfile.TemporaryDirectory() as directory,
        prepared_database(backend, Path(directory), "points_bench_pages", args.pg_url) as url,
    ):
        with seeding(url):
            demo = load_demo(echo=lambda _text: None)
        # The kiosk page signs its person out after a minute without a touch; the bench
        # replays one cookie, whose last touch never moves, for longer than that.
        environment = {
            "POINTS_API_RATE_LIMIT_PER_MINUTE": "0",
            "POINTS_KIOSK_PAGE_IDLE_SECONDS": "3600",
        }
        with Server(url, workers=args.workers, environment=environment) as server:
            compared = pairs(server.port, demo)
            ratios: dict[str, list[float]] = {name: [] for name in compared}
            for round_ in range(args.rounds):
                for name, (page, page_headers, api, api_headers) in compared.items():
                    rate = {
                        side: measure(server.port, path, headers, args.seconds, args.clients)
                        for side, path, headers in (
                            ("page", page, page_headers),
                            ("api", api, api_headers),
                        )
                    }
                    ratios[name].append(rate["page"] / rate["api"])
                    print(
                        f"  {backend} round {round_ + 1} {name}: page {rate['page']:.0f}/s, "
                        f"endpoint {rate['api']:.0f}/s, ratio {rate['page'] / rate['api']:.2f}"
                    )
            return {name: statistics.median(values) for name, values in ratios.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per segment")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("POINTS_TEST_DATABASE_URL"),
        help="a PostgreSQL server to create a private database on",
    )
    args = parser.parse_args()
    failed = False
    for backend in args.backends.split(","):
        if backend == "postgresql" and not args.pg_url:
            print("postgresql: skipped (no --pg-url or POINTS_TEST_DATABASE_URL)")
            continue
        for name, ratio in run_backend(backend, args).items():
            verdict = "ok" if ratio >= TARGET else f"BELOW {TARGET}"
            print(f"{backend} {name}: page/endpoint {ratio:.2f} ({verdict})")
            failed |= ratio < TARGET
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

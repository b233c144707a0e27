"""What a PIN hash and an activation code hash cost here, and 2,000 of each on two cores.

    .venv/bin/python bench/activation.py

Prints the median of single hashes (PIN_HASH_METHOD and ACTIVATION_HASH_METHOD, their
defaults), then the wall time of hashing a 2,000-volunteer roster in a process pool of
two, as a roster import would.
"""

from __future__ import annotations

import os
import sys

# Run as `python bench/activation.py`, Python puts bench/ first on sys.path, where a
# sibling (bench/http.py) would shadow the standard library's module of that name.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial

from points import config
from points.activation import hash_activation, new_activation_code

SECRET = "bench-secret"
ROSTER = 2000


def _median_ms(method: str, runs: int = 15) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        hash_activation(new_activation_code(), SECRET, method)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _pool_seconds(method: str) -> float:
    codes = [new_activation_code() for _ in range(ROSTER)]
    started = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        list(
            pool.map(
                partial(hash_activation, secret_key=SECRET, method=method), codes, chunksize=50
            )
        )
    return time.perf_counter() - started


def main() -> None:
    pin, code = config.PIN_HASH_METHOD, config.ACTIVATION_HASH_METHOD
    pin_ms, code_ms = _median_ms(pin), _median_ms(code)
    print(f"PIN hash        {pin:24} {pin_ms:8.1f} ms")
    print(f"activation hash {code:24} {code_ms:8.1f} ms  ({pin_ms / code_ms:.0f}x cheaper)")
    # A guesser with the database and SECRET_KEY tries every value: 10^6 PINs, 10^12 codes.
    print(f"all PINs        {1e6 * pin_ms / 1000 / 3600:12.1f} CPU hours")
    print(f"all codes       {1e12 * code_ms / 1000 / 3600 / 24 / 365:12.0f} CPU years")
    for name, method in (("PINs", pin), ("codes", code)):
        print(f"{ROSTER} {name:6} on 2 processes {_pool_seconds(method):8.1f} s")


if __name__ == "__main__":
    main()

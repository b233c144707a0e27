"""gunicorn's settings for Steward Points (read from the working directory, or with -c).

Metrics count every worker: prometheus-client keeps each worker's values in files in
PROMETHEUS_MULTIPROC_DIR (a fresh temporary folder unless one is given), a scrape of any
worker sums them, and a worker's live gauges are dropped when it exits.
"""

import os
import re
import shutil
import tempfile

worker_class = "sync"

# Set here, before any worker imports prometheus_client (which reads it once, at import).
_made_metrics_dir = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _made_metrics_dir = tempfile.mkdtemp(prefix="points-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _made_metrics_dir

_METRIC_FILE = re.compile(r"(counter|histogram|summary|gauge_\w+)_\d+\.db")


def on_starting(server):
    """Start from empty metrics: files left by an earlier run would count again."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if _METRIC_FILE.fullmatch(name):
            os.unlink(os.path.join(directory, name))


def child_exit(server, worker):
    """Forget a dead worker's live gauges (its counters still count)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _made_metrics_dir:
        shutil.rmtree(_made_metrics_dir, ignore_errors=True)

"""Prometheus metrics, correct with several gunicorn workers.

With PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py makes sure it is), every worker
writes its values to files there and /metrics merges them, whichever worker answers.
Process memory comes from a per-worker gauge, because prometheus_client's own process
collector only ever describes the one process that serves /metrics.
"""

from __future__ import annotations

import os
import resource

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("cropapp_requests_total", "HTTP requests answered", ["endpoint", "code"])
LATENCY = Histogram(
    "cropapp_request_duration_seconds", "Time from request to response", ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
IN_FLIGHT = Gauge("cropapp_requests_in_flight", "Requests being served", multiprocess_mode="livesum")
RESIDENT_MEMORY = Gauge(
    "cropapp_worker_resident_memory_bytes", "Resident memory of each worker (label pid)",
    multiprocess_mode="liveall",
)
PEAK_MEMORY = Gauge(
    "cropapp_worker_peak_resident_memory_bytes", "Highest resident memory of each worker so far (label pid)",
    multiprocess_mode="liveall",
)
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def record_memory() -> None:
    try:
        with open("/proc/self/statm") as statm:
            RESIDENT_MEMORY.set(int(statm.read().split()[1]) * _PAGE_SIZE)
    except OSError:  # not Linux: the peak below is all there is
        pass
    PEAK_MEMORY.set(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def exposition() -> tuple[bytes, str]:
    """The metrics text of all workers (or of this process outside gunicorn)."""
    record_memory()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST

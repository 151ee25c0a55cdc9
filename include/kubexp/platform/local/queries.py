"""The Prometheus queries collected by default on the local platform (app replicas, HAProxy, etcd)."""

from __future__ import annotations

from kubexp.collect.queries import ETCD_QUERIES, histogram_mean

# Two scrapes of the local Prometheus (1 s scrapes) and some margin.
RATE_WINDOW = "5s"

# The local platform labels its scrape targets component=app|haproxy|etcd (+ replica, member).
LOCAL_QUERIES: dict[str, str] = {
    "app_requests_per_second_by_code": "sum by (code) (rate(cropapp_requests_total[$rate_window]))",
    "app_request_mean_seconds": histogram_mean("cropapp_request_duration_seconds"),
    "app_request_p95_seconds": (
        "histogram_quantile(0.95, sum by (le) (rate(cropapp_request_duration_seconds_bucket[$rate_window])))"
    ),
    "app_in_flight_requests": "sum by (replica) (cropapp_requests_in_flight)",
    "app_resident_memory_bytes": "sum by (replica) (cropapp_worker_resident_memory_bytes)",
    "scrape_up": "max by (component, replica, member) (up)",
    "haproxy_responses_per_second_by_code": (
        'sum by (code) (rate(haproxy_backend_http_responses_total{component="haproxy"}[$rate_window]))'
    ),
    "haproxy_active_servers": 'sum by (proxy) (haproxy_backend_active_servers{component="haproxy"})',
    "haproxy_retries_per_second": (
        'sum (rate(haproxy_backend_retry_warnings_total{component="haproxy"}[$rate_window]))'
    ),
    "haproxy_check_failures_total": 'sum by (server) (haproxy_server_check_failures_total{component="haproxy"})',
    **ETCD_QUERIES,
}

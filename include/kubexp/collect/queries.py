"""The named PromQL queries an experiment collects by default, per platform, and a suite's own.

Queries are templates: `$namespace` (the app's namespace, from the suite's `kubernetes.namespace`)
and `$rate_window` (the range of every rate(), `metrics.rate_window`) are filled in per suite.
A rate window must hold at least two scrapes: 5 s for the local Prometheus (1 s scrapes); for a
cluster, at least twice its scrape interval (default 1m, typical of a Prometheus Operator).

Means from histograms are sum/count (etcd's smallest fsync bucket is 1 ms, so quantiles of fast
disks say little); a second without observations gives 0/0 = NaN, which the collector drops.
"""

from __future__ import annotations

from collections.abc import Mapping
from string import Template
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubexp.suite import Suite

DEFAULT_RATE_WINDOW = {"local": "5s", "kubernetes": "1m"}
DEFAULT_NAMESPACE = "kubexp"  # kubexp.platform.kubernetes.manifests' default


def _mean(metric: str, by: str = "", selector: str = "") -> str:
    """sum(rate(x_sum)) / sum(rate(x_count)): the mean of a histogram's observations per window."""
    group = f" by ({by})" if by else ""
    return (f"sum{group} (rate({metric}_sum{selector}[$rate_window])) / "
            f"sum{group} (rate({metric}_count{selector}[$rate_window]))")


ETCD_QUERIES: dict[str, str] = {
    "etcd_wal_fsync_mean_seconds": _mean("etcd_disk_wal_fsync_duration_seconds", by="instance"),
    "etcd_backend_commit_mean_seconds": _mean("etcd_disk_backend_commit_duration_seconds", by="instance"),
    "etcd_leader_changes_total": "sum by (instance) (etcd_server_leader_changes_seen_total)",
    "etcd_has_leader": "max by (instance) (etcd_server_has_leader)",
    "etcd_slow_applies_total": "sum by (instance) (etcd_server_slow_apply_total)",
}

_NS = '{namespace="$namespace"}'
_POD = '{namespace="$namespace", container!="", container!="POD"}'
_NON_STREAMING = '{verb!~"WATCH|CONNECT"}'

KUBERNETES_QUERIES: dict[str, str] = {
    "pod_cpu_cores": f"sum by (pod) (rate(container_cpu_usage_seconds_total{_POD}[$rate_window]))",
    "pod_memory_working_set_bytes": f"sum by (pod) (container_memory_working_set_bytes{_POD})",
    "container_restarts_total": f"sum by (pod, container) (kube_pod_container_status_restarts_total{_NS})",
    "replicas_desired": f"sum by (deployment) (kube_deployment_spec_replicas{_NS})",
    "replicas_available": f"sum by (deployment) (kube_deployment_status_replicas_available{_NS})",
    "replicas_unavailable": f"sum by (deployment) (kube_deployment_status_replicas_unavailable{_NS})",
    # kube-state-metrics renamed kube_hpa_* to kube_horizontalpodautoscaler_* in v2; either answers.
    "hpa_desired_replicas": (
        f"sum by (horizontalpodautoscaler) (kube_horizontalpodautoscaler_status_desired_replicas{_NS})"
        f" or sum by (hpa) (kube_hpa_status_desired_replicas{_NS})"
    ),
    "istio_requests_per_second_by_code": (
        'sum by (response_code) (rate(istio_requests_total{reporter="destination", '
        'destination_workload_namespace="$namespace"}[$rate_window]))'
    ),
    "apiserver_request_mean_seconds": _mean("apiserver_request_duration_seconds", by="verb", selector=_NON_STREAMING),
    "apiserver_request_p99_seconds": (
        "histogram_quantile(0.99, sum by (le) "
        f"(rate(apiserver_request_duration_seconds_bucket{_NON_STREAMING}[$rate_window])))"
    ),
    **ETCD_QUERIES,
}

# The local platform labels its scrape targets component=app|haproxy|etcd (+ replica, member).
LOCAL_QUERIES: dict[str, str] = {
    "app_requests_per_second_by_code": "sum by (code) (rate(cropapp_requests_total[$rate_window]))",
    "app_request_mean_seconds": _mean("cropapp_request_duration_seconds"),
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

DEFAULT_QUERIES = {"local": LOCAL_QUERIES, "kubernetes": KUBERNETES_QUERIES}


class QueryError(ValueError):
    """A query template that cannot be filled in; names the suite file and the query."""


def render(queries: Mapping[str, str], variables: Mapping[str, str], where: str = "metrics.queries") -> dict[str, str]:
    """Fill `$name` placeholders; an unknown placeholder is an error naming the query."""
    filled = {}
    for name, template in queries.items():
        try:
            filled[name] = Template(template).substitute(variables)
        except (KeyError, ValueError) as exc:
            raise QueryError(
                f"{where}.{name}: placeholder {exc} is unknown or malformed; known: "
                f"{', '.join('$' + key for key in sorted(variables))} (write $$ for a literal $)"
            ) from None
    return filled


def queries_for(suite: Suite) -> dict[str, str]:
    """The platform's defaults (unless `metrics.default_queries: false`) overlaid with `metrics.queries`."""
    metrics: Mapping[str, Any] = suite.metrics
    chosen = dict(DEFAULT_QUERIES[suite.platform]) if metrics.get("default_queries", True) else {}
    chosen.update(metrics.get("queries") or {})
    variables = {
        "namespace": str(suite.kubernetes.get("namespace") or DEFAULT_NAMESPACE),
        "rate_window": str(metrics.get("rate_window") or DEFAULT_RATE_WINDOW[suite.platform]),
    }
    return render(chosen, variables, where=f"{suite.path}: metrics.queries")

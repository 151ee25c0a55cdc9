"""The Prometheus queries collected by default on a cluster (cAdvisor, kube-state-metrics, Istio, the
API server, etcd); `$namespace` is the app's namespace."""

from __future__ import annotations

from kubexp.collect.queries import ETCD_QUERIES, histogram_mean

# At least two scrapes of a cluster's Prometheus (1m: typical of a Prometheus Operator's 30 s interval).
RATE_WINDOW = "1m"

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
    "apiserver_request_mean_seconds": histogram_mean("apiserver_request_duration_seconds", by="verb",
                                                     selector=_NON_STREAMING),
    "apiserver_request_p99_seconds": (
        "histogram_quantile(0.99, sum by (le) "
        f"(rate(apiserver_request_duration_seconds_bucket{_NON_STREAMING}[$rate_window])))"
    ),
    **ETCD_QUERIES,
}

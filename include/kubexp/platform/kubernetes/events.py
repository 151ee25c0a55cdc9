"""Kubernetes events of an experiment's window, read through the cncf-kubernetes provider's KubernetesHook.

Events of the app's namespaces and kube-system whose reason is one of `DEFAULT_REASONS` (probe
failures, back-offs, kills, scaling, HPA metric failures, leader elections) become PlatformEvents
with kind = the event's reason and t = whole seconds from t0 (floor, so an event falls into the
load second it happened in). Kubernetes aggregates repeats into one event with a count: it is kept
once, at its first occurrence if that lies in the window (the onset), else at its last.

A container's OOM kill is no event in most Kubernetes versions (the kubelet records it in the pod's
status), so pods of the app's namespaces are read too: a container whose last or current
termination says OOMKilled, with finishedAt in the window, gives an "OOMKilled" event. Only the
latest termination per container is visible there; restarts counted by Prometheus tell the rest.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from kubexp.records import PlatformEvent

SOURCE = "kubernetes"
SYSTEM_NAMESPACES = ("kube-system",)
DEFAULT_REASONS: frozenset[str] = frozenset({
    "OOMKilled", "OOMKilling", "SystemOOM", "Evicted",  # memory
    "BackOff", "Unhealthy", "Killing", "NodeNotReady",  # restarts and probes
    "ScalingReplicaSet", "SuccessfulRescale", "FailedGetResourceMetric", "FailedComputeMetricsReplicas",  # scaling
    "LeaderElection",  # kube-controller-manager / kube-scheduler lease changes
})
_PAGE = 500


class KubeEventsError(RuntimeError):
    """Events could not be read; names the connection and namespace."""


def collect(conn_id: str, namespaces: Sequence[str], start: datetime, end: datetime, t0: datetime,
            reasons: Collection[str] | None = DEFAULT_REASONS,
            system_namespaces: Sequence[str] = SYSTEM_NAMESPACES) -> list[PlatformEvent]:
    """Events in [start, end] of `namespaces` plus kube-system, and OOM kills of the app's pods, sorted by time.

    `reasons=None` keeps every event. `conn_id` is an Airflow Kubernetes connection (kubeconfig)."""
    from kubexp import connections

    try:
        api = connections.kubernetes_hook(conn_id).core_v1_client
    except Exception as exc:  # connection lookup and kubeconfig errors alike
        raise KubeEventsError(f"cannot open the Kubernetes API via Airflow connection {conn_id!r} ({exc}); "
                              f"check its kube_config / kube_config_path") from exc
    found: list[PlatformEvent] = []
    for namespace in dict.fromkeys([*namespaces, *system_namespaces]):
        items = _list(api.list_namespaced_event, conn_id, namespace, "events")
        found += events_from_items(items, start, end, t0, reasons)
    for namespace in dict.fromkeys(namespaces):
        pods = _list(api.list_namespaced_pod, conn_id, namespace, "pods")
        found += oom_kills_from_pods(pods, start, end, t0)
    return sorted(found, key=lambda event: (event.at, event.kind, event.obj))


def _list(method: Any, conn_id: str, namespace: str, what: str) -> Iterator[Any]:
    """Every item of a namespaced list, page by page."""
    token = None
    while True:
        try:
            page = method(namespace, limit=_PAGE, **({"_continue": token} if token else {}))
        except Exception as exc:  # ApiException, urllib3 connection errors
            status = getattr(exc, "status", None)
            detail = f"HTTP {status} {getattr(exc, 'reason', '')}".strip() if status else str(exc)
            raise KubeEventsError(f"cannot list {what} in namespace {namespace!r} via connection {conn_id!r} "
                                  f"({detail}); the connection's user needs list on {what}") from exc
        yield from page.items or []
        token = page.metadata._continue if page.metadata else None
        if not token:
            return


def events_from_items(items: Iterable[Any], start: datetime, end: datetime, t0: datetime,
                      reasons: Collection[str] | None = DEFAULT_REASONS) -> list[PlatformEvent]:
    """PlatformEvents from core/v1 Event objects (kubernetes client models) in [start, end]."""
    kept = []
    for item in items:
        reason = item.reason or ""
        if reasons is not None and reason not in reasons:
            continue
        meta = item.metadata
        series = item.series
        first = item.first_timestamp or item.event_time or (meta.creation_timestamp if meta else None)
        last = (series.last_observed_time if series else None) or item.last_timestamp or first
        if first is None or last is None:
            continue
        first, last = first.astimezone(UTC), last.astimezone(UTC)
        at = first if first >= start else last
        if not start <= at <= end:
            continue
        count = (series.count if series else None) or item.count or 1
        message = " ".join((item.message or "").split())
        if count > 1:
            message += f" (x{count} from {first.isoformat()} to {last.isoformat()})"
        kept.append(PlatformEvent(t=_t(at, t0), at=at, source=SOURCE, kind=reason,
                                  obj=_object_name(item.involved_object), message=message))
    return kept


def oom_kills_from_pods(pods: Iterable[Any], start: datetime, end: datetime, t0: datetime) -> list[PlatformEvent]:
    """An "OOMKilled" event per container whose latest termination (current or last state) was an OOM kill."""
    kept = []
    for pod in pods:
        status = pod.status
        for container in (status.container_statuses or []) if status else []:
            for state in (container.state, container.last_state):
                terminated = state.terminated if state else None
                if terminated is None or terminated.reason != "OOMKilled" or terminated.finished_at is None:
                    continue
                at = terminated.finished_at.astimezone(UTC)
                if start <= at <= end:
                    kept.append(PlatformEvent(
                        t=_t(at, t0), at=at, source=SOURCE, kind="OOMKilled",
                        obj=f"{pod.metadata.namespace}/pod/{pod.metadata.name}",
                        message=f"container {container.name} OOMKilled (exit code {terminated.exit_code}); "
                                f"restarts so far {container.restart_count}",
                    ))
    return kept


def _object_name(ref: Any) -> str:
    """namespace/kind/name of an involvedObject, kind in lower case as kubectl writes it (node/worker-1)."""
    if ref is None:
        return "?"
    name = f"{(ref.kind or '?').lower()}/{ref.name or '?'}"
    return f"{ref.namespace}/{name}" if ref.namespace else name


def _t(at: datetime, t0: datetime) -> int:
    return math.floor((at - t0).total_seconds())

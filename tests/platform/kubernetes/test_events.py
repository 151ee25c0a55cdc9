"""Kubernetes events through the provider's KubernetesHook against kmock 0.8 (HTTP-level fake apiserver).

The fake holds Event and Pod objects as a cluster would after an experiment; there is no real
kubelet or controller here, so the objects are written as those components write them.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import kmock
import pytest

from kubexp.platform.kubernetes import events as kube_events
from kubexp.platform.kubernetes.events import KubeEventsError

T0 = datetime(2025, 3, 4, 10, 0, 0, 500000, tzinfo=UTC)
START, END = T0 - timedelta(seconds=30), T0 + timedelta(seconds=60)
EVENTS = kmock.resource("", "v1", "events")
PODS = kmock.resource("", "v1", "pods")


def stamp(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def event(namespace: str, name: str, reason: str, kind: str, obj: str, first: float, last: float | None = None,
          count: int = 1, message: str = "") -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": stamp(first)},
        "involvedObject": {"kind": kind, "name": obj, "namespace": namespace if kind != "Node" else None},
        "reason": reason, "message": message or f"{reason} of {obj}", "type": "Warning",
        "firstTimestamp": stamp(first), "lastTimestamp": stamp(first if last is None else last), "count": count,
        "source": {"component": "kubelet"},
    }


def pod(namespace: str, name: str, terminated_at: float, reason: str = "OOMKilled") -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "cropapp", "image": "cropapp:0.1.0"}]},
        "status": {"phase": "Running", "containerStatuses": [{
            "name": "cropapp", "image": "cropapp:0.1.0", "imageID": "", "ready": False, "restartCount": 3,
            "state": {"running": {"startedAt": stamp(terminated_at + 1)}},
            "lastState": {"terminated": {"reason": reason, "exitCode": 137, "startedAt": stamp(terminated_at - 9),
                                         "finishedAt": stamp(terminated_at)}},
        }]},
    }


def fill(fake: kmock.KubernetesEmulator) -> None:
    for item in [
        event("shop", "e1", "Unhealthy", "Pod", "cropapp-a", 12, message="Readiness probe failed: HTTP 503"),
        event("shop", "e2", "BackOff", "Pod", "cropapp-a", 20, 50, count=4),
        event("shop", "e3", "BackOff", "Pod", "cropapp-b", -600, 40, count=30),  # onset long before: kept at last
        event("shop", "e4", "Killing", "Pod", "cropapp-c", -300),  # before the window: dropped
        event("shop", "e5", "Pulled", "Pod", "cropapp-a", 5),  # not a reason we keep
        event("shop", "e6", "SuccessfulRescale", "HorizontalPodAutoscaler", "cropapp", 33),
        event("kube-system", "e7", "LeaderElection", "Lease", "kube-scheduler", 44,
              message="node-2_5d1c became leader"),
        event("other", "e8", "Killing", "Pod", "x", 10),  # a namespace we were not asked about
    ]:
        fake.objects[EVENTS, item["metadata"]["namespace"], item["metadata"]["name"]] = item
    fake.objects[PODS, "shop", "cropapp-a"] = pod("shop", "cropapp-a", 25.9)
    fake.objects[PODS, "shop", "cropapp-z"] = pod("shop", "cropapp-z", -900)  # killed before the window
    fake.objects[PODS, "shop", "cropapp-e"] = pod("shop", "cropapp-e", 30, reason="Error")


@pytest.fixture
def connection(kmock: kmock.KubernetesEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": str(kmock.url).rstrip("/")}}],
        "users": [{"name": "kubexp", "user": {"token": "kx-events-token"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kubexp", "namespace": "shop"}}],
    }
    monkeypatch.setenv("AIRFLOW_CONN_KUBEXP_EVENTS_TEST", json.dumps(
        {"conn_type": "kubernetes", "extra": {"kube_config": kubeconfig, "namespace": "shop"}}))
    return "kubexp_events_test"


async def test_events_of_the_window_with_t_from_t0(kmock: kmock.KubernetesEmulator, connection: str) -> None:
    fill(kmock)
    found = await asyncio.to_thread(kube_events.collect, connection, ["shop"], START, END, T0)

    assert [(e.t, e.kind, e.obj) for e in found] == [
        (11, "Unhealthy", "shop/pod/cropapp-a"),
        (19, "BackOff", "shop/pod/cropapp-a"),
        (25, "OOMKilled", "shop/pod/cropapp-a"),
        (32, "SuccessfulRescale", "shop/horizontalpodautoscaler/cropapp"),
        (39, "BackOff", "shop/pod/cropapp-b"),
        (43, "LeaderElection", "kube-system/lease/kube-scheduler"),
    ]
    assert all(e.source == "kubernetes" and e.at.tzinfo is not None for e in found)
    by_kind = {e.kind + e.obj: e for e in found}
    assert by_kind["Unhealthyshop/pod/cropapp-a"].message == "Readiness probe failed: HTTP 503"
    assert by_kind["BackOffshop/pod/cropapp-a"].message.endswith(
        f"(x4 from {T0.replace(microsecond=0) + timedelta(seconds=20):%Y-%m-%dT%H:%M:%S}+00:00 to "
        f"{T0.replace(microsecond=0) + timedelta(seconds=50):%Y-%m-%dT%H:%M:%S}+00:00)")
    assert "OOMKilled (exit code 137); restarts so far 3" in by_kind["OOMKilledshop/pod/cropapp-a"].message
    # The hook sent the connection's token, and only the namespaces asked for (+ kube-system) were read.
    paths = sorted({r.url.path for r in kmock})
    assert paths == ["/api/v1/namespaces/kube-system/events", "/api/v1/namespaces/shop/events",
                     "/api/v1/namespaces/shop/pods"]
    assert all(r.headers.get("Authorization") == "Bearer kx-events-token" for r in kmock)


async def test_every_reason_when_asked(kmock: kmock.KubernetesEmulator, connection: str) -> None:
    fill(kmock)
    found = await asyncio.to_thread(kube_events.collect, connection, ["shop"], START, END, T0, None)
    assert "Pulled" in {e.kind for e in found}


async def test_api_errors_name_namespace_and_connection(kmock: kmock.KubernetesEmulator, connection: str) -> None:
    kmock["get", "/api/v1/namespaces/shop/events"] << 403 << {"kind": "Status", "code": 403, "reason": "Forbidden"}
    with pytest.raises(KubeEventsError, match=r"cannot list events in namespace 'shop' via connection "
                                              r"'kubexp_events_test' \(HTTP 403"):
        await asyncio.to_thread(kube_events.collect, connection, ["shop"], START, END, T0)


def test_missing_connection_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KubeEventsError, match="'kubexp_no_such_cluster'"):
        kube_events.collect("kubexp_no_such_cluster", ["shop"], START, END, T0)


def test_pages_are_followed() -> None:
    pages = {None: (["a", "b"], "next-1"), "next-1": (["c"], None)}
    calls: list[tuple[str, dict[str, Any]]] = []

    def list_events(namespace: str, **options: Any) -> Any:
        calls.append((namespace, options))
        items, token = pages[options.get("_continue")]
        return SimpleNamespace(items=items, metadata=SimpleNamespace(_continue=token))

    assert list(kube_events._list(list_events, "c", "shop", "events")) == ["a", "b", "c"]
    assert calls == [("shop", {"limit": 500}), ("shop", {"limit": 500, "_continue": "next-1"})]

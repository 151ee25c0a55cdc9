"""A real metrics stack for the collector tests: the app under gunicorn behind HAProxy, a real etcd,
and a real Prometheus (basic auth on) scraping all three every second, with the app's /metrics
stopped (SIGSTOP) for a few seconds in the middle of the window.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import bcrypt
import requests
from cropapp_server import running_app

from kubexp.collect.prometheus import PrometheusInstance
from kubexp.platform.local import haproxy
from kubexp.processes import ManagedProcess, free_port

ETCD = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "etcd"
USER, PASSWORD = "kubexp", "s3cret-for-tests"


@dataclass(frozen=True)
class MetricsStack:
    instance: PrometheusInstance
    t0: datetime  # "load start": the window's t = 0
    stopped_at: datetime  # app SIGSTOPped (its scrapes fail from here)
    resumed_at: datetime  # app SIGCONTed
    end: datetime
    state_dir: Path
    app_replica: str = "replica-1"


def prometheus_process(state_dir: Path, port: int, targets: dict[str, tuple[int, dict[str, str]]]) -> ManagedProcess:
    """Prometheus with a 1 s scrape of each target (job = key) and basic auth USER/PASSWORD."""
    base = state_dir / "prometheus"
    base.mkdir(parents=True, exist_ok=True)
    jobs = "".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        f"        labels: {labels!r}\n"
        for job, (target_port, labels) in targets.items()
    )
    (base / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 800ms\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n{jobs}"
    )
    digest = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    (base / "web.yml").write_text(f"basic_auth_users:\n  {USER}: '{digest}'\n")
    url = f"http://127.0.0.1:{port}"
    return ManagedProcess(
        name="prometheus",
        argv=[shutil.which("prometheus") or "prometheus", f"--config.file={base / 'prometheus.yml'}",
              f"--web.config.file={base / 'web.yml'}", f"--storage.tsdb.path={base / 'data'}",
              f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
        state_dir=state_dir, ports=[port],
        ready=lambda: _answers(f"{url}/-/ready"),
    )


def _answers(url: str) -> bool:
    try:
        return requests.get(url, auth=(USER, PASSWORD), timeout=1).status_code == 200
    except requests.RequestException:
        return False


def etcd_process(state_dir: Path, name: str = "etcd", delay_us: int = 0) -> tuple[ManagedProcess, int]:
    """A single-member etcd 3.5 on free ports; with delay_us, every fdatasync is delayed through strace."""
    client, peer = free_port(), free_port()
    client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    argv = [str(ETCD), "--name", name, "--data-dir", str(state_dir / f"{name}-data"),
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"{name}={peer_url}"]
    if delay_us:
        argv = [shutil.which("strace") or "strace", "-f", "--seccomp-bpf", "-qq", "-o", "/dev/null",
                "-e", "trace=fdatasync", "-e", f"inject=fdatasync:delay_exit={delay_us}", *argv]
    ready = lambda: _healthy(f"{client_url}/health")  # noqa: E731
    return ManagedProcess(name=name, argv=argv, state_dir=state_dir, ports=[client, peer], ready=ready), client


def _healthy(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).json().get("health") == "true"
    except (requests.RequestException, ValueError):
        return False


def _wait_all_up(instance: PrometheusInstance, jobs: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    with instance.session() as session:
        while time.monotonic() < deadline:
            answer = session.get(f"{instance.url}/api/v1/query", params={"query": "sum(up)"}, timeout=2).json()
            result = answer["data"]["result"]
            if result and float(result[0]["value"][1]) == jobs:
                return
            time.sleep(0.3)
    raise TimeoutError(f"Prometheus did not see {jobs} targets up within {timeout_s} s")


def _light_load(url: str, until: threading.Event) -> None:
    """About 20 cheap requests per second through HAProxy, so counters and histograms move."""
    with requests.Session() as session:
        while not until.is_set():
            try:
                session.get(url, timeout=1)
            except requests.RequestException:
                pass
            time.sleep(0.05)


@contextmanager
def running_stack(state_dir: Path, before_s: float = 5, gap_s: float = 5, after_s: float = 6) -> Iterator[MetricsStack]:
    with ExitStack() as stack:
        front, stats, prom_port = free_port(), free_port(), free_port()
        app = stack.enter_context(running_app("app", state_dir))
        app_port = app.ports[0]
        etcd, etcd_port = etcd_process(state_dir)
        etcd.start(timeout=30)
        stack.callback(etcd.stop)
        config = haproxy.HAProxyConfig(front, stats, [("replica-1", app_port)], 1.0, "native")
        (state_dir / "haproxy.cfg").write_text(config.render())
        proxy = haproxy.process(shutil.which("haproxy") or "haproxy", state_dir / "haproxy.cfg", state_dir,
                                [front, stats])
        proxy.start(timeout=30)
        stack.callback(proxy.stop)
        prometheus = prometheus_process(state_dir, prom_port, {
            "app": (app_port, {"component": "app", "replica": "replica-1"}),
            "haproxy": (stats, {"component": "haproxy"}),
            "etcd": (etcd_port, {"component": "etcd", "member": "etcd"}),
        })
        prometheus.start(timeout=30)
        stack.callback(prometheus.stop)
        instance = PrometheusInstance("test", f"http://127.0.0.1:{prom_port}", username=USER, password=PASSWORD)
        _wait_all_up(instance, jobs=3)

        done = threading.Event()
        loader = threading.Thread(target=_light_load, args=(f"http://127.0.0.1:{front}/images", done), daemon=True)
        loader.start()
        stack.callback(loader.join, 5)
        stack.callback(done.set)
        time.sleep(1)
        t0 = datetime.now(UTC)
        time.sleep(before_s)
        app_group = app.running_pid()
        assert app_group is not None
        stopped_at = datetime.now(UTC)
        os.killpg(app_group, signal.SIGSTOP)
        try:
            time.sleep(gap_s)
        finally:
            os.killpg(app_group, signal.SIGCONT)
        resumed_at = datetime.now(UTC)
        time.sleep(after_s)
        end = datetime.now(UTC)
        time.sleep(1.5)  # Prometheus scrapes the last second of the window
        yield MetricsStack(instance, t0, stopped_at, resumed_at, end, state_dir)

"""Orchestration overhead per experiment: DAG run wall time minus load duration, on the local platform
or (--kube-local) on the real single-node Kubernetes of `kubexp cluster up`.

Starts the local services (PostgreSQL, Prometheus, the four Airflow components) on free ports in a
temporary KUBEXP_HOME, writes the suite, triggers runs one after the other over the REST API and
prints, per run and on average, the run's wall time, the load duration, the overhead, each task's
duration and the scheduler's gaps between tasks. Local: a one-scenario suite with the local
platform's shipped defaults (no `local:` section). --kube-local: the shipped suite kube-local (its
four scenarios in the order the select step picks them) with the load shortened to --duration; the
cluster is started if it is not running (as root) and stopped again at the end. Everything it
started is stopped at the end.

    .venv/bin/python benchmarks/orchestration_overhead.py [--runs 3] [--duration 10] [--kube-local] [--keep]
        [--etcd-restart always|on-change] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import statistics
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import figures
import yaml

from kubexp import settings
from kubexp.processes import free_port

SUITE = "bench-overhead"
# What the figure used: the local platform's shipped defaults (no `local:` section), i.e. a 10 s readiness
# probe period (Kubernetes' default), the etcd fingerprint of 300 puts (at most 15 s), one JMeter server.
SUITE_SETTINGS = "1 pod, 2 workers, 50 ms think time, 1 JMeter server, no local: section"


def suite_document(duration_s: int, runs: int, results_dir: Path) -> dict:
    return {"suite": SUITE, "description": "orchestration overhead benchmark", "platform": "local",
            "cluster": "bench-local", "repetitions": runs, "seed": 1, "allow_dirty": True,
            "defaults": {"pods": 1, "duration_s": duration_s, "think_time_ms": 50, "memory_limit_mib": 256,
                         "cpu_limit_millicores": 1000},
            "matrix": {"workers": [2]}, "load": {"servers": 1, "results_dir": str(results_dir)}}


def seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


PAPER_FIXED_WAITS_S = 65  # the paper's framework: fixed waits of at least 65 s per experiment (+300 s per reboot)


def kube_local_document(duration_s: int, runs: int, results_dir: Path, etcd_restart: str | None = None) -> dict:
    """The shipped kube-local suite, its load shortened to `duration_s`, enough repetitions for `runs`
    (and kubernetes.etcd.restart set to `etcd_restart` if given)."""
    suite = yaml.safe_load((settings.SUITES_DIR / "kube-local.yaml").read_text())
    if etcd_restart:
        suite["kubernetes"]["etcd"]["restart"] = etcd_restart
    scenarios = math.prod(len(levels) for levels in suite["matrix"].values())
    suite["defaults"]["duration_s"] = duration_s
    suite["repetitions"] = math.ceil(runs / scenarios)
    suite["allow_dirty"] = True
    suite["load"]["results_dir"] = str(results_dir)
    return suite


@contextlib.contextmanager
def kube_cluster(home: Path) -> Iterator[None]:
    """`kubexp cluster up` unless the cluster runs (down again at the end), registered with the run folder."""
    from kubexp.platform.kubernetes.localcluster.integration import register_cluster
    from kubexp.platform.kubernetes.localcluster.node import LocalCluster

    node = LocalCluster.from_env()
    with node.exclusive("tests"):  # test sessions and this benchmark take turns on the machine's one cluster
        was_running = node.running()
        if not was_running:
            node.up()
        try:
            register_cluster(node, run_dir=home)
            yield
        finally:
            if not was_running:
                node.down()


def measure(runs: int, duration_s: int, keep: bool = False, json_out: Path | None = None,
            kube_local: bool = False, etcd_restart: str | None = None) -> None:
    from kubexp.local_services import LocalServices
    from kubexp.orchestration.airflow_api import AirflowClient

    root = Path(tempfile.mkdtemp(prefix="kubexp-bench-", dir="/tmp"))
    root.chmod(0o755)
    results_dir = Path("/dev/shm") / root.name
    (root / "suites").mkdir()
    suite = (kube_local_document(duration_s, runs, results_dir, etcd_restart) if kube_local
             else suite_document(duration_s, runs, results_dir))
    dag_id = suite["suite"]
    (root / "suites" / f"{dag_id}.yaml").write_text(yaml.safe_dump(suite))
    os.environ.update({"KUBEXP_HOME": str(root / "home"), "KUBEXP_SUITES_DIR": str(root / "suites"),
                       "KUBEXP_POSTGRES_PORT": str(free_port()), "KUBEXP_AIRFLOW_PORT": str(free_port()),
                       "KUBEXP_PROMETHEUS_PORT": str(free_port())})
    services = LocalServices.from_env()
    load_before = os.getloadavg()[0]
    where, goal = ("single-node Kubernetes (kube-local)", 30) if kube_local else ("local platform", 20)
    restart = f", kubernetes.etcd.restart: {etcd_restart}" if etcd_restart else ""
    what = (f"the shipped suite kube-local ({suite['repetitions']} repetitions of its 4 scenarios{restart}), "
            f"kubexp cluster up" if kube_local else f"shipped defaults (suite: {SUITE_SETTINGS})")
    with contextlib.ExitStack() as stack:
        if kube_local:
            stack.enter_context(kube_cluster(root / "home"))
        try:
            services.up(log=lambda line: None)
            client = AirflowClient.from_env()
            client.wait_for_dag(dag_id, timeout_s=180)
            rows = []
            for number in range(1, runs + 1):
                run_id = f"bench-{number}"
                client.trigger(dag_id, run_id)
                run = client.wait_for_run(dag_id, run_id, timeout_s=900, poll_s=1)
                tasks = [ti for ti in client.task_instances(dag_id, run_id) if ti["start_date"]]
                tasks.sort(key=lambda ti: ti["start_date"])
                wall = seconds(run["start_date"], run["end_date"])
                busy = {ti["task_id"]: float(ti["duration"] or 0) for ti in tasks}
                gaps = sum(max(0.0, seconds(a["end_date"], b["start_date"])) for a, b in zip(tasks, tasks[1:],
                                                                                            strict=False))
                rows.append((run["state"], wall, busy, gaps))
                print(f"run {number}: {run['state']}, wall {wall:.1f} s, load duration {duration_s} s, overhead "
                      f"{wall - duration_s:.1f} s (scheduler gaps between tasks {gaps:.1f} s); longest tasks: "
                      + ", ".join(f"{task} {busy[task]:.1f}" for task in sorted(busy, key=busy.get, reverse=True)[:5]))
            good = [row for row in rows if row[0] == "success"]
            if not good:
                print("no successful run")
                return
            walls = [row[1] for row in good]
            machine = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, {os.cpu_count()} cores"
            print(f"\noverhead per experiment (wall - {duration_s} s load), {len(good)} runs: "
                  f"mean {statistics.mean(walls) - duration_s:.1f} s, min {min(walls) - duration_s:.1f} s, "
                  f"max {max(walls) - duration_s:.1f} s; goal <= {goal} s ({machine})")
            print("mean seconds per task (the load task includes JMeter's start-up and tear-down):")
            for task_id in good[0][2]:
                print(f"  {task_id:<25} {statistics.mean(row[2].get(task_id, 0.0) for row in good):6.1f}")
            print(f"  {'(gaps between tasks)':<25} {statistics.mean(row[3] for row in good):6.1f}")
            tasks = ", ".join(f"{task_id} {statistics.mean(row[2].get(task_id, 0.0) for row in good):.1f}"
                              for task_id in good[0][2])
            figures.write(json_out, [figures.figure(
                f"orchestration overhead per experiment (run wall time - load), {where}",
                round(statistics.mean(walls) - duration_s, 1), "s", peer="paper's fixed waits (constant, not measured)",
                peer_value=PAPER_FIXED_WAITS_S,
                settings=f"mean of {len(good)} runs ({min(walls) - duration_s:.1f}-{max(walls) - duration_s:.1f} s), "
                         f"{duration_s} s load, {what}, {machine}; mean s per task: "
                         f"{tasks}")])
        finally:
            services.down(log=lambda line: None)
            shutil.rmtree(results_dir, ignore_errors=True)
            if keep:
                print(f"task logs kept in {root / 'home' / 'airflow' / 'logs'}")
            else:
                shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="load duration per experiment, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (task logs) for a closer look")
    parser.add_argument("--json", type=Path, help="append the figures to this JSON list (make bench)")
    parser.add_argument("--kube-local", action="store_true",
                        help="the real single-node Kubernetes (kubexp cluster up; as root) with the suite kube-local")
    parser.add_argument("--etcd-restart", choices=("always", "on-change"),
                        help="with --kube-local: kubernetes.etcd.restart for the suite (default: the suite's, always)")
    args = parser.parse_args()
    if args.etcd_restart and not args.kube_local:
        parser.error("--etcd-restart needs --kube-local")
    measure(args.runs, args.duration, args.keep, args.json, args.kube_local, args.etcd_restart)


if __name__ == "__main__":
    main()

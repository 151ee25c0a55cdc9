"""`kubexp services up/down`: real processes, nothing left behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from scratch_dirs import reachable_tmpdir

from kubexp import settings
from kubexp.processes import ManagedProcess, ProcessError, free_port, port_is_free


def _env(home: Path, **ports: int) -> dict[str, str]:
    env = {**os.environ, "KUBEXP_HOME": str(home)}
    env.update({f"KUBEXP_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    return env


def _kubexp(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    kubexp = str(Path(sys.executable).parent / "kubexp")
    return subprocess.run([kubexp, *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_services_up_down_leaves_nothing_behind() -> None:
    home = reachable_tmpdir("kubexp-services-") / "run"
    ports = {"postgres": free_port(), "airflow": free_port(), "prometheus": free_port()}
    env = _env(home, **ports)
    before = {p.pid for p in psutil.process_iter()}

    up = _kubexp("services", "up", env=env)
    assert up.returncode == 0, up.stderr
    status = json.loads(_kubexp("services", "status", "--json", env=env).stdout)
    assert all(pid for pid in status.values()), status
    again = _kubexp("services", "up", env=env)
    assert again.returncode == 0 and "already running" in again.stdout

    down = _kubexp("services", "down", env=env)
    assert down.returncode == 0, down.stderr
    status = json.loads(_kubexp("services", "status", "--json", env=env).stdout)
    assert not any(status.values()), status
    assert all(port_is_free(port) for port in ports.values())
    leftovers = [p for p in psutil.process_iter(["pid", "cmdline"])
                 if p.pid not in before and str(home) in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []
    assert not list((home / "pids").glob("*.pid"))
    shutil.rmtree(home.parent)


def test_taken_port_is_named(tmp_path: Path) -> None:
    port = free_port()
    holder = ManagedProcess("holder", [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                            tmp_path, ports=[port])
    holder.start()
    try:
        clash = ManagedProcess("clash", [sys.executable, "-c", "pass"], tmp_path / "b", ports=[port])
        with pytest.raises(ProcessError, match=f"port {port}"):
            clash.start()
    finally:
        holder.stop()
    assert port_is_free(port)


def test_free_ports_are_distinct_and_outside_the_ephemeral_range() -> None:
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(not low <= port <= high for port in ports)
    assert all(port_is_free(port) for port in ports)


def test_process_that_dies_while_starting_reports_its_log(tmp_path: Path) -> None:
    proc = ManagedProcess("dies", [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], tmp_path,
                          ready=lambda: False)
    with pytest.raises(ProcessError, match="exited with code 3(.|\n)*boom"):
        proc.start(timeout=10)
    assert proc.running_pid() is None


def _inside_airflow_task(monkeypatch: pytest.MonkeyPatch, connection: str | None) -> None:
    """What a task sees: the runner's context variables, no KUBEXP_DATABASE_URL, the connection from env."""
    monkeypatch.delenv("KUBEXP_DATABASE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "demo")
    if connection is None:
        monkeypatch.delenv("AIRFLOW_CONN_KUBEXP_RESULTS", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW_CONN_KUBEXP_RESULTS", connection)


@pytest.mark.parametrize("form", ["uri", "json"])
def test_results_database_inside_airflow_is_the_kubexp_results_connection(
        form: str, database_url: str, kubexp_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from urllib.parse import urlsplit

    from kubexp.store import db

    parts = urlsplit(database_url)
    if form == "uri":  # extras that are not libpq parameters would make psycopg refuse the URI
        connection = f"{database_url}?sslmode=disable&cursor=dictcursor"
    else:  # nested extras: get_uri() packs all extras into one __extra__ JSON parameter
        connection = json.dumps({"conn_type": "postgres", "host": parts.hostname, "port": parts.port,
                                 "login": parts.username, "password": parts.password,
                                 "schema": parts.path.lstrip("/"),
                                 "extra": {"sslmode": "disable", "options": {"nested": True}}})
    _inside_airflow_task(monkeypatch, connection)

    url = settings.database_url()
    assert url.startswith("postgresql://") and "sslmode=disable" in url
    assert "cursor" not in url and "__extra__" not in url
    with db.connect() as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (parts.path.lstrip("/"),)
    assert not (kubexp_home / "secrets.json").exists()  # the local services' database was not consulted

    monkeypatch.setenv("KUBEXP_DATABASE_URL", database_url.replace(parts.path, "/elsewhere"))
    assert settings.database_url().endswith("/elsewhere")  # the explicit variable wins


def test_missing_results_connection_inside_airflow_is_named(kubexp_home: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _inside_airflow_task(monkeypatch, None)
    with pytest.raises(settings.SettingsError, match="kubexp_results.*AIRFLOW_CONN_KUBEXP_RESULTS"):
        settings.database_url()
    monkeypatch.setenv("AIRFLOW_CONN_KUBEXP_RESULTS", "http://example.org/x")
    with pytest.raises(settings.SettingsError, match="kubexp_results.*PostgreSQL"):
        settings.database_url()
    assert not (kubexp_home / "secrets.json").exists()


def test_outside_airflow_the_local_services_database_is_used(kubexp_home: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEXP_DATABASE_URL", raising=False)
    monkeypatch.delenv("AIRFLOW_CTX_DAG_ID", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_KUBEXP_RESULTS", "postgresql://other:x@db.example:5432/other")
    monkeypatch.setenv("KUBEXP_POSTGRES_PORT", "25432")
    assert settings.database_url().endswith("@127.0.0.1:25432/kubexp")


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A live process kubexp did not start, leading its own process group like a managed one."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def test_stale_pid_file_never_signals_an_unrelated_process(tmp_path: Path,
                                                           bystander: subprocess.Popen[bytes]) -> None:
    started = psutil.Process(bystander.pid).create_time()
    stale = ManagedProcess("stale", ["sleep"], tmp_path)
    stale.pidfile.parent.mkdir(parents=True)
    # The PID was reused: the file records the start time of the process that had it before.
    stale.pidfile.write_text(f"{bystander.pid}\n{started - 3600:.3f}\n")
    assert stale.running_pid() is None
    assert stale.stop(timeout=1) is False
    # An old one-line file, written before this process started (a reboot ago).
    stale.pidfile.write_text(f"{bystander.pid}\n")
    os.utime(stale.pidfile, (started - 3600, started - 3600))
    assert stale.running_pid() is None
    assert stale.stop(timeout=1) is False
    assert bystander.poll() is None and psutil.Process(bystander.pid).status() != psutil.STATUS_ZOMBIE
    assert not stale.pidfile.exists()  # a stale record is dropped


def test_pid_file_records_the_start_time_and_old_files_still_work(tmp_path: Path,
                                                                   bystander: subprocess.Popen[bytes]) -> None:
    proc = ManagedProcess("sleeper", ["sleep", "300"], tmp_path, ready=lambda: True)
    proc.start()
    pid, started = proc.pidfile.read_text().splitlines()
    assert int(pid) == proc.running_pid() and abs(float(started) - psutil.Process(int(pid)).create_time()) < 0.01
    assert proc.stop(timeout=5) and not psutil.pid_exists(int(pid))
    # `echo $! > file` after the start: the process is the recorded one and is stopped.
    legacy = ManagedProcess("legacy", [], tmp_path)
    legacy.pidfile.write_text(f"{bystander.pid}\n")
    assert legacy.running_pid() == bystander.pid
    assert legacy.stop(timeout=5) and bystander.wait(timeout=5) is not None

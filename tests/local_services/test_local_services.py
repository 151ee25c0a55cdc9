"""`kubexp services up/down`: real processes, nothing left behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from scratch_dirs import reachable_tmpdir

from kubexp import settings
from kubexp.local_services import Postgres
from kubexp.processes import ManagedProcess, ProcessError, free_port, port_is_free


def _env(home: Path, **ports: int) -> dict[str, str]:
    env = {**os.environ, "KUBEXP_HOME": str(home)}
    env.update({f"KUBEXP_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    return env


def _kubexp(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    kubexp = str(Path(sys.executable).parent / "kubexp")
    return subprocess.run([kubexp, *args], env=env, capture_output=True, text=True, timeout=300)


AIRFLOW_LOG_SERVER_PORTS = (8793, 8794)  # what scheduler and triggerer would open on 0.0.0.0


def _process_tree(pids: list[int]) -> list[psutil.Process]:
    tree = []
    for pid in pids:
        root = psutil.Process(pid)
        tree += [root, *root.children(recursive=True)]
    return tree


def _exited(proc: psutil.Process) -> bool:
    """Gone, or a zombie (exited; its new parent reaps it). is_running() checks the start time too."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_services_up_down_leaves_nothing_behind() -> None:
    scratch = reachable_tmpdir("kubexp-services-")
    home = scratch / "run"
    # The services' own temp dir (TMPDIR): whatever up, the services or down leave there is ours.
    private_tmp = scratch / "tmp"
    private_tmp.mkdir(mode=0o1777)
    private_tmp.chmod(0o1777)
    ports = {"postgres": free_port(), "airflow": free_port(), "prometheus": free_port()}
    env = {**_env(home, **ports), "TMPDIR": str(private_tmp)}
    system_tmp = Path(tempfile.gettempdir())
    tmp_before = set(os.listdir(system_tmp))

    up = _kubexp("services", "up", env=env)
    assert up.returncode == 0, up.stderr
    # up waits until the api-server has built its task execution API (at its first request), so that the
    # first task of the first experiment does not wait for it
    api_log = (home / "logs" / "airflow-api-server.log").read_text()
    assert re.search(r"method=GET path=/execution/health query=\S* status_code=200", api_log), api_log[-2000:]
    status = json.loads(_kubexp("services", "status", "--json", env=env).stdout)
    assert all(pid for pid in status.values()), status
    tree = _process_tree(list(status.values()))
    assert len(tree) > len(status)  # PostgreSQL's backends, Airflow's workers: the descendants count
    listening = {(conn.laddr.ip, conn.laddr.port) for proc in tree
                 for conn in proc.net_connections(kind="inet") if conn.status == psutil.CONN_LISTEN}
    assert listening == {("127.0.0.1", port) for port in ports.values()}  # nothing else, nothing on 0.0.0.0
    assert not {port for _, port in listening} & set(AIRFLOW_LOG_SERVER_PORTS)
    again = _kubexp("services", "up", env=env)
    assert again.returncode == 0 and "already running" in again.stdout

    down = _kubexp("services", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert all(f"{name:<27} stopped" in down.stdout for name in status), down.stdout
    status = json.loads(_kubexp("services", "status", "--json", env=env).stdout)
    assert not any(status.values()), status
    assert [(proc.pid, proc.name()) for proc in tree if not _exited(proc)] == []
    assert all(port_is_free(port) for port in ports.values())
    assert not list((home / "pids").glob("*.pid"))
    assert list(private_tmp.iterdir()) == []
    # Entries in the system temp dir that name our ports (PostgreSQL's socket and lock, say) or run folder;
    # other entries appearing meanwhile belong to whatever else runs on this machine.
    ours = [name for name in set(os.listdir(system_tmp)) - tmp_before
            if any(str(port) in name for port in ports.values()) or scratch.name in name]
    assert ours == []
    shutil.rmtree(scratch)


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


def test_down_stops_what_an_interrupted_experiment_left(tmp_path: Path) -> None:
    home = tmp_path / "run"
    sleep = ["sleep", "300"]
    platform = home / "local-platform"
    left = [ManagedProcess("supervisor", sleep, platform, ready=lambda: True),
            ManagedProcess("replica-0", sleep, platform, ready=lambda: True),
            ManagedProcess("haproxy", sleep, platform, ready=lambda: True),
            ManagedProcess("jmeter-server-0", sleep, home / "jmeter-servers" / "demo", ready=lambda: True)]
    for proc in left:
        proc.start()
    pids = [proc.running_pid() for proc in left]
    env = _env(home, postgres=free_port(), airflow=free_port(), prometheus=free_port())

    down = _kubexp("services", "down", env=env)

    assert down.returncode == 0, down.stderr
    assert [proc.running_pid() for proc in left] == [None] * len(left)
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in pids if pid)
    lines = down.stdout.splitlines()
    assert all(line.endswith("stopped") for line in lines)
    stopped = [line.split()[0] for line in lines]
    assert stopped[0] == "local-platform/supervisor"  # first: it would restart the replicas
    assert sorted(stopped[1:]) == ["jmeter-servers/demo/jmeter-server-0", "local-platform/haproxy",
                                   "local-platform/replica-0"]
    again = _kubexp("services", "down", env=env)
    assert again.returncode == 0 and "nothing was running" in again.stdout


def test_status_and_down_write_nothing(tmp_path: Path) -> None:
    home = tmp_path / "never-started"
    env = _env(home, postgres=free_port(), airflow=free_port(), prometheus=free_port())
    for args in (("services", "status"), ("services", "status", "--json"), ("services", "down"),
                 ("services", "info")):
        result = _kubexp(*args, env=env)
        assert result.returncode == 0, result.stderr
    assert not home.exists()  # no secrets.json, passwords.json, prometheus.yml, nor folders


@pytest.mark.parametrize("value, problem", [("abc", "='abc' is not a port number"),
                                            ("70000", "=70000 is out of range")])
@pytest.mark.parametrize("command", ["up", "down", "status", "info"])
def test_bad_port_setting_is_one_line_naming_the_variable(tmp_path: Path, command: str, value: str,
                                                          problem: str) -> None:
    env = {**_env(tmp_path / "run"), "KUBEXP_AIRFLOW_PORT": value}
    result = _kubexp("services", command, env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"Error: KUBEXP_AIRFLOW_PORT{problem}; set it to an integer 1-65535"]
    assert not (tmp_path / "run").exists()


_IGNORES_TERM = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                 "open({ready!r}, 'w').close(); time.sleep(600)")


def _orphaned_worker(tmp_path: Path) -> tuple[ManagedProcess, psutil.Process]:
    """A managed 'scheduler' whose worker child ignores SIGTERM, then the scheduler is killed with -9:
    the worker is orphaned (reparented) but stays in the scheduler's session."""
    ready = tmp_path / "worker-ready"
    code = _IGNORES_TERM.format(ready=str(ready))
    proc = ManagedProcess("scheduler", ["sh", "-c", f'{sys.executable} -c "{code}" & wait'], tmp_path,
                          ready=ready.exists)
    proc.start(timeout=30)
    assert proc.pid is not None
    [worker] = [child for child in psutil.Process(proc.pid).children(recursive=True)
                if "SIG_IGN" in " ".join(child.cmdline())]
    os.kill(proc.pid, 9)
    psutil.Process(proc.pid).wait(5)
    assert worker.is_running() and worker.ppid() != proc.pid
    return proc, worker


def test_stop_ends_the_orphaned_children_of_a_killed_service(tmp_path: Path) -> None:
    proc, worker = _orphaned_worker(tmp_path)
    assert proc.stop(timeout=2)  # the recorded leader is gone, its session is not
    worker.wait(10)
    assert not worker.is_running()


def test_start_clears_the_orphans_of_an_earlier_run_first(tmp_path: Path) -> None:
    proc, worker = _orphaned_worker(tmp_path)
    (tmp_path / "worker-ready").unlink()
    again = ManagedProcess("scheduler", ["sleep", "600"], tmp_path)
    assert again.start(timeout=10)
    worker.wait(10)
    assert not worker.is_running()
    assert again.stop(timeout=5)


def test_secrets_file_is_never_left_half_written(kubexp_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(values: object, out: object) -> None:
        out.write('{"postgres_password": "abc')  # type: ignore[attr-defined]
        raise KeyboardInterrupt  # the process is stopped mid-write

    monkeypatch.setattr(json, "dump", crash)
    with pytest.raises(KeyboardInterrupt):
        settings.local_secrets()
    monkeypatch.undo()
    monkeypatch.setenv("KUBEXP_HOME", str(kubexp_home))
    assert not (kubexp_home / "secrets.json").exists() and list(kubexp_home.iterdir()) == []
    first = settings.local_secrets()
    assert settings.local_secrets() == first
    assert (kubexp_home / "secrets.json").stat().st_mode & 0o777 == 0o600


def test_results_role_is_no_superuser_and_initdb_secrets_stay_private(postgres_server: Postgres,
                                                                      database_url: str) -> None:
    import psycopg

    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = "
                            "current_user").fetchone() == (False, False, False)
        assert conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
                            ).fetchone() == ("kubexp",)
    assert not (postgres_server.root / "postgres" / "pwfile").exists()


def test_initdb_password_file_is_0600_and_only_the_database_folder_changes_owner(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen from inside initdb: the password file's mode, and who owns the run folder meanwhile."""
    import kubexp.local_services as services_module

    seen: dict[str, int] = {}

    def fake_initdb(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        pwfile = Path(argv[argv.index("--pwfile") + 1])
        seen.update(pwfile_mode=pwfile.stat().st_mode & 0o777, root_uid=tmp_path.stat().st_uid)
        return subprocess.CompletedProcess(argv, 0, "", "")

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "initdb").touch()
    monkeypatch.setattr(services_module.subprocess, "run", fake_initdb)
    monkeypatch.setattr(services_module, "PG_BIN", bin_dir)
    pg = services_module.Postgres(tmp_path, free_port(), "pw")
    pg.data_dir.mkdir(parents=True)
    pg.init()
    assert seen["pwfile_mode"] == 0o600 and seen["root_uid"] == os.geteuid()
    assert not (tmp_path / "postgres" / "pwfile").exists()

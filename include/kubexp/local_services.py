"""The local services of the embedded default: PostgreSQL, Prometheus and Airflow.

Each runs as a plain process on 127.0.0.1 under the run folder (`kubexp.settings.run_dir`),
recorded by PID. `up` is idempotent; `down` stops what `up` recorded and every other process
recorded by a PID file under the run folder (the local platform's and JMeter's, left by an
interrupted experiment); `status` only reads PID files.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import requests

from kubexp import settings
from kubexp.processes import ManagedProcess, ProcessError


def _postgres_bin() -> Path:
    """KUBEXP_PG_BIN, else the newest /usr/lib/postgresql/<major>/bin (Debian's and Ubuntu's layout)."""
    if os.environ.get("KUBEXP_PG_BIN"):
        return Path(os.environ["KUBEXP_PG_BIN"])
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin")
             if p.parent.name.isdigit() and (p / "initdb").exists()]
    return max(found, key=lambda p: int(p.parent.name)) if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _postgres_bin()
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
SERVICE_NAMES = ("postgres", "prometheus", *(f"airflow-{component}" for component in AIRFLOW_COMPONENTS))
# The scheduler and triggerer would serve task logs on 0.0.0.0:8793/8794; every component
# shares one log folder (AIRFLOW__LOGGING__BASE_LOG_FOLDER), so the api-server reads them there.
SKIP_SERVE_LOGS = {"scheduler": ["--skip-serve-logs"], "triggerer": ["--skip-serve-logs"]}
STOP_SIGNALS = {"postgres": signal.SIGINT}  # PostgreSQL's fast shutdown


def _as_postgres_user() -> list[str]:
    """initdb and postgres refuse root: run them as the `postgres` user when we are root."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


# initdb's superuser; kubexp and Airflow connect as the role `kubexp`, which owns their databases only.
ADMIN_ROLE = "kubexp_admin"


@dataclass
class Postgres:
    """A PostgreSQL 15 server with its own data dir under `root`."""

    root: Path
    port: int
    password: str

    @property
    def data_dir(self) -> Path:
        return self.root / "postgres" / "data"

    def url(self, database: str, driver: str = "postgresql", user: str = "kubexp") -> str:
        return f"{driver}://{user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def process(self) -> ManagedProcess:
        sockets = self.root / "postgres" / "run"
        return ManagedProcess(
            name="postgres",
            argv=[*_as_postgres_user(), str(PG_BIN / "postgres"), "-D", str(self.data_dir),
                  "-p", str(self.port), "-h", "127.0.0.1", "-k", str(sockets)],
            state_dir=self.root, ports=[self.port], stop_signal=STOP_SIGNALS["postgres"],
            ready=self.accepts_connections,
        )

    def accepts_connections(self) -> bool:
        """The port opens before recovery ends ("the database system is starting up"): wait for a session."""
        import psycopg

        for user in (ADMIN_ROLE, "kubexp"):  # a data folder from before ADMIN_ROLE knows only kubexp
            try:
                with psycopg.connect(self.url("postgres", user=user), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                continue
        return False

    def init(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        if not (PG_BIN / "initdb").exists():
            raise ProcessError(f"PostgreSQL not found in {PG_BIN}; run `make setup` (installs postgresql) or set "
                               f"KUBEXP_PG_BIN to the folder holding initdb and postgres")
        base = self.root / "postgres"
        (base / "run").mkdir(parents=True, exist_ok=True)
        pwfile = base / "pwfile"
        pwfile.unlink(missing_ok=True)
        with os.fdopen(os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(self.password + "\n")
        if os.geteuid() == 0:  # the database folder only: the run folder holds JMeter, PID files, secrets
            user = pwd.getpwnam("postgres")
            for path in (base, base / "run", pwfile):
                os.chown(path, user.pw_uid, user.pw_gid)
        try:
            subprocess.run(
                [*_as_postgres_user(), str(PG_BIN / "initdb"), "-D", str(self.data_dir), "-U", ADMIN_ROLE,
                 "--pwfile", str(pwfile), "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
                 "-E", "UTF8", "--no-locale"],
                check=True, capture_output=True, text=True,
            )
        except subprocess.CalledProcessError as exc:
            raise ProcessError(
                f"initdb of {self.data_dir} failed:\n{exc.stderr}\nThe postgres user must be able to reach "
                f"this folder: choose a KUBEXP_HOME whose parent folders are world-traversable."
            ) from exc
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("fsync = on\nmax_connections = 200\nshared_buffers = 256MB\n")

    def start(self) -> bool:
        self.init()
        started = self.process().start(timeout=60)
        self.create_databases("kubexp", "airflow")
        return started

    def create_databases(self, *names: str) -> None:
        """Create the role `kubexp` (no superuser) if missing, and each database it owns.

        A data folder initialised before ADMIN_ROLE existed has `kubexp` as its superuser: used as it is."""
        import psycopg
        from psycopg import sql

        try:
            conn = psycopg.connect(self.url("postgres", user=ADMIN_ROLE), autocommit=True, connect_timeout=10)
        except psycopg.OperationalError:
            conn = psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10)
        with conn:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'kubexp'").fetchone():
                conn.execute(sql.SQL("CREATE ROLE kubexp LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}")
                             .format(sql.Literal(self.password)))
            for name in names:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
                if not exists:
                    conn.execute(sql.SQL("CREATE DATABASE {} OWNER kubexp").format(sql.Identifier(name)))


def prometheus_process(root: Path, port: int) -> ManagedProcess:
    """Prometheus scraping every second whatever the local platform lists in targets/."""
    base = root / "prometheus"
    (base / "targets").mkdir(parents=True, exist_ok=True)
    config = base / "prometheus.yml"
    # `kubexp cluster up` leaves the single-node cluster's scrape jobs in cluster.yml (Prometheus 2.42
    # has no scrape_config_files, so they are copied in).
    cluster = base / "cluster.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: kubexp-local\n"
        "    file_sd_configs:\n"
        f"      - files: ['{base / 'targets'}/*.json']\n"
        + (textwrap.indent(cluster.read_text(), "  ") if cluster.exists() else "")
    )
    binary = shutil.which("prometheus") or "prometheus"
    return ManagedProcess(
        name="prometheus",
        argv=[binary, f"--config.file={config}", f"--storage.tsdb.path={base / 'data'}",
              f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=7d",
              "--web.enable-lifecycle"],
        state_dir=root, ports=[port],
        ready=lambda: _http_ok(f"http://127.0.0.1:{port}/-/ready"),
    )


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        return requests.get(url, timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def write_airflow_passwords(root: Path, secrets: dict[str, str]) -> Path:
    """The simple auth manager's password file (mode 0600), written once."""
    passwords = root / "airflow" / "passwords.json"
    passwords.parent.mkdir(parents=True, exist_ok=True)
    if not passwords.exists():
        fd = os.open(passwords, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"admin": secrets["airflow_admin_password"]}, out)
    return passwords


def airflow_env(root: Path, ports: settings.Ports, pg: Postgres, secrets: dict[str, str]) -> dict[str, str]:
    """Environment shared by every Airflow component and the `airflow` CLI (writes nothing)."""
    home = root / "airflow"
    passwords = home / "passwords.json"
    base_url = f"http://127.0.0.1:{ports.airflow}"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__FERNET_KEY": secrets["airflow_fernet_key"],
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.url("airflow", "postgresql+psycopg2"),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(ports.airflow),
        "AIRFLOW__API__SECRET_KEY": secrets["airflow_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets["airflow_jwt_secret"],
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "10",
        # An idle scheduler loop sleeps 1 s by default: ~0.6 s between one task's end and the next's
        # start, 8 s per experiment run. 0.25 s cuts that to ~2 s for a few % of one core.
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW_CONN_KUBEXP_RESULTS": pg.url("kubexp"),
        # Connections written after the services started (`kubexp cluster up`) are read from this file.
        "AIRFLOW__SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
        "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"connections_file_path": str(home / "connections.json")}),
        "KUBEXP_DATABASE_URL": pg.url("kubexp"),
        "KUBEXP_HOME": str(root),
        "KUBEXP_PROMETHEUS_URL": f"http://127.0.0.1:{ports.prometheus}",
    }


def _api_server_ready(port: int) -> bool:
    """The REST API answers, and so does the task execution API: the api-server builds that one at its first
    request (11 s here), which would otherwise fall into the first task of the first experiment."""
    return (_http_ok(f"http://127.0.0.1:{port}/api/v2/monitor/health")
            and _http_ok(f"http://127.0.0.1:{port}/execution/health", timeout=60))


def airflow_processes(root: Path, env: dict[str, str], port: int) -> list[ManagedProcess]:
    airflow = str(Path(sys.executable).parent / "airflow")
    procs = []
    for component in AIRFLOW_COMPONENTS:
        is_api = component == "api-server"
        procs.append(ManagedProcess(
            name=f"airflow-{component}", argv=[airflow, component, *SKIP_SERVE_LOGS.get(component, [])],
            state_dir=root, env=env,
            ports=[port] if is_api else [],
            ready=(lambda: _api_server_ready(port)) if is_api else (lambda: True),
        ))
    return procs


@dataclass
class LocalServices:
    """All local services under one run folder."""

    root: Path
    ports: settings.Ports

    @classmethod
    def from_env(cls) -> LocalServices:
        return cls(root=settings.run_dir(), ports=settings.Ports.from_env())

    @property
    def postgres(self) -> Postgres:
        secrets = settings.local_secrets()
        return Postgres(self.root, self.ports.postgres, secrets["postgres_password"])

    def airflow_env(self) -> dict[str, str]:
        return airflow_env(self.root, self.ports, self.postgres, settings.local_secrets())

    def processes(self) -> list[ManagedProcess]:
        """The services, ready to start (writes their secrets and Prometheus' configuration if missing)."""
        return [
            self.postgres.process(),
            prometheus_process(self.root, self.ports.prometheus),
            *airflow_processes(self.root, self.airflow_env(), self.ports.airflow),
        ]

    def recorded(self) -> list[ManagedProcess]:
        """The services as their PID files record them: enough to check and stop them, writes nothing."""
        return [ManagedProcess(name, (), self.root, stop_signal=STOP_SIGNALS.get(name, signal.SIGTERM))
                for name in SERVICE_NAMES]

    def up(self, with_airflow: bool = True, log=print) -> None:
        pg = self.postgres
        log(f"postgres    127.0.0.1:{self.ports.postgres}  " + ("started" if pg.start() else "already running"))
        from kubexp.store import migrations  # lazily, like psycopg: other commands need no database driver

        applied = migrations.upgrade(pg.url("kubexp"))
        log("schema      " + (f"results db: applied {', '.join(applied)}" if applied else "results db up to date"))
        prom = prometheus_process(self.root, self.ports.prometheus)
        log(f"prometheus  127.0.0.1:{self.ports.prometheus}  " + ("started" if prom.start() else "already running"))
        if not with_airflow:
            return
        write_airflow_passwords(self.root, settings.local_secrets())
        connections = self.root / "airflow" / "connections.json"
        if not connections.exists():  # the secrets backend's file: `kubexp cluster up` adds to it
            os.close(os.open(connections, os.O_WRONLY | os.O_CREAT, 0o600))
            connections.write_text("{}")
        env = self.airflow_env()
        procs = airflow_processes(self.root, env, self.ports.airflow)
        if any(p.running_pid() is None for p in procs):
            log("airflow     migrating metadata database ...")
            subprocess.run([procs[0].argv[0], "db", "migrate"], env={**os.environ, **env}, check=True,
                           stdout=subprocess.DEVNULL)
        for proc in procs:
            state = "started" if proc.start(timeout=120) else "already running"
            log(f"{proc.name:<27} {state}")

    def down(self, log=print) -> list[str]:
        """Stop Airflow first (its tasks start experiments), then every other process recorded under the
        run folder (supervisors before the replicas they would restart), then Prometheus and PostgreSQL.
        Returns what was stopped, as `<folder relative to the run folder>/<name>`."""
        services = {proc.name: proc for proc in self.recorded()}
        airflow = [services[name] for name in reversed(SERVICE_NAMES) if name.startswith("airflow-")]
        order = [*airflow, *self.leftovers(), services["prometheus"], services["postgres"]]
        stopped = []
        for proc in order:
            where = proc.state_dir.relative_to(self.root)
            label = proc.name if where == Path(".") else f"{where}/{proc.name}"
            if proc.stop(timeout=30 if proc.name in services else 10):
                log(f"{label:<27} stopped")
                stopped.append(label)
        return stopped

    def leftovers(self) -> list[ManagedProcess]:
        """Processes recorded by PID files under the run folder other than the services' own: the local
        platform's (supervisor, replicas, HAProxy, etcd) and JMeter servers of an interrupted experiment."""
        found: list[Path] = []
        for folder, dirs, _ in os.walk(self.root):
            depth = len(Path(folder).relative_to(self.root).parts)
            if depth == 0:  # the services' own data: PostgreSQL's, Prometheus' and Airflow's (logs)
                dirs[:] = [d for d in dirs if d not in ("postgres", "prometheus", "airflow")]
            elif depth >= 3:
                dirs[:] = [d for d in dirs if d == "pids"]
            if Path(folder).name == "pids" and Path(folder) != self.root / "pids":
                found.extend(Path(folder).glob("*.pid"))
        found.sort(key=lambda path: (path.stem != "supervisor", str(path)))
        return [ManagedProcess(path.stem, (), path.parent.parent) for path in found]

    def status(self) -> dict[str, int | None]:
        return {proc.name: proc.running_pid() for proc in self.recorded()}

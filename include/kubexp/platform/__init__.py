"""Platforms an experiment can be deployed onto, by the name a suite gives (`platform:`).

`PLATFORMS` is the registry: everything that differs between platforms (settings, refusals, default
queries, rate window, collectors) is a member of the platform's class, never a test of its name
elsewhere. A platform's code is imported only when a suite asks for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kubexp.platform.base import Endpoint, NodeStatus, Platform, PlatformError, Unsupported

if TYPE_CHECKING:
    from kubexp.suite import Suite

__all__ = ["PLATFORMS", "Endpoint", "NodeStatus", "Platform", "PlatformError", "Unsupported", "create", "kind",
           "lease_key"]


def _local() -> type[Platform]:
    from kubexp.platform.local import LocalPlatform

    return LocalPlatform


def _kubernetes() -> type[Platform]:
    from kubexp.platform.kubernetes import KubernetesPlatform

    return KubernetesPlatform


PLATFORMS: dict[str, Callable[[], type[Platform]]] = {"local": _local, "kubernetes": _kubernetes}


def kind(name: str) -> type[Platform]:
    """The platform class a suite's `platform:` names (the suite schema allows only these names)."""
    try:
        return PLATFORMS[name]()
    except KeyError:
        raise PlatformError(f"platform {name!r} is unknown; allowed: {', '.join(PLATFORMS)}") from None


def create(suite: Suite) -> Platform:
    """The platform a suite names, configured from the suite's platform section."""
    return kind(suite.platform).from_suite(suite)


def lease_key(suite: Suite) -> str:
    """The key of the cluster lease the suite's runs take: its real target (see Platform.lease_key)."""
    return kind(suite.platform).lease_key(suite)

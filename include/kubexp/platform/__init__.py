"""Platforms an experiment can be deployed onto; `create` picks one for a suite."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubexp.platform.base import Endpoint, NodeStatus, Platform, PlatformError, Unsupported

if TYPE_CHECKING:
    from kubexp.suite import Suite

__all__ = ["Endpoint", "NodeStatus", "Platform", "PlatformError", "Unsupported", "create"]


def create(suite: Suite) -> Platform:
    """The platform a suite names, configured from the suite's platform section."""
    if suite.platform == "local":
        from kubexp.platform.local import LocalPlatform

        return LocalPlatform.from_suite(suite)
    from kubexp.platform.kubernetes import KubernetesPlatform

    return KubernetesPlatform.from_suite(suite)

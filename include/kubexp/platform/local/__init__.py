"""The local platform: a one-machine testbed standing in for a Kubernetes cluster (docs/local-platform.md)."""

from kubexp.platform.local.config import LocalSettings
from kubexp.platform.local.testbed import LocalPlatform

__all__ = ["LocalPlatform", "LocalSettings"]

"""Collectors: each reads one source over an experiment's window and returns the one shape, `Collected`.

An experiment's collectors are the JTL's (kubexp.collect.jtl), Prometheus' (kubexp.collect.prometheus)
and its platform's (`Platform.collectors`: events, etcd's log, the SUT's log files); `collect_all`
runs them in order and joins what they return for one store call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from kubexp.records import Collected, PlatformEvent, Window

log = logging.getLogger(__name__)


class Collector(Protocol):
    @property
    def name(self) -> str:
        """What it collects, for logs."""
        ...

    def collect(self, window: Window) -> Collected:
        """Its data of the window, t relative to window.t0; raw files archived into window.dest_dir."""
        ...


def collect_all(collectors: Iterable[Collector], window: Window) -> Collected:
    """Every collector's data, joined in their order (the first error stops collection)."""
    total = Collected()
    for collector in collectors:
        started = time.monotonic()
        total += collector.collect(window)
        log.info("collect: %s took %.1f s", collector.name, time.monotonic() - started)
    return total


@dataclass(frozen=True)
class Events:
    """A platform's events, read by `read(start, end, t0)`."""

    name: str
    read: Callable[[datetime, datetime, datetime], Iterable[PlatformEvent]]

    def collect(self, window: Window) -> Collected:
        return Collected(events=list(self.read(window.start, window.end, window.t0)))


@dataclass(frozen=True)
class LogFiles:
    """The log files `files()` names that exist when collecting, archived."""

    name: str
    files: Callable[[], Mapping[str, Path]]

    def collect(self, window: Window) -> Collected:
        from kubexp.artifacts import archive

        return Collected(artifacts=[archive(path, window.dest_dir) for path in self.files().values()
                                    if path.exists()])

"""Fixtures for the local platform: an isolated platform per test, always torn down, and a crop load."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from kubexp.platform.local import LocalPlatform
from kubexp.platform.local.appserver import DEFAULT_CROP_PATH


@pytest.fixture
def make_platform(kubexp_home: Path) -> Iterator[Callable[..., LocalPlatform]]:
    """Build LocalPlatforms whose state lives under the test's KUBEXP_HOME; all torn down at the end."""
    made: list[LocalPlatform] = []

    def make(settings: dict[str, Any] | None = None, name: str = "local-platform") -> LocalPlatform:
        platform = LocalPlatform(settings or {}, kubexp_home / name)
        made.append(platform)
        return platform

    yield make
    for platform in made:
        platform.teardown()


@dataclass
class CropLoad:
    """A closed-loop load of large crops against an endpoint, in a background thread pool."""

    url: str
    threads: int
    seconds: float
    think_s: float = 0.02
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        self.samples: list[tuple[float, int | None]] = []  # (wall time, status or None = no response)
        self.t0 = datetime.now(UTC)
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def start(self) -> CropLoad:
        self.t0 = datetime.now(UTC)
        stop_at = time.monotonic() + self.seconds
        for _ in range(self.threads):
            worker = threading.Thread(target=self._run, args=(stop_at,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def _run(self, stop_at: float) -> None:
        session = requests.Session()
        while time.monotonic() < stop_at:
            try:
                status: int | None = session.get(self.url + DEFAULT_CROP_PATH, timeout=self.timeout_s).status_code
            except requests.RequestException:
                status = None
            with self._lock:
                self.samples.append((time.time(), status))
            time.sleep(self.think_s)

    def wait(self) -> pd.DataFrame:
        """Per-second requests, successes and failures by class (t from the load start)."""
        for worker in self._workers:
            worker.join(self.seconds + self.timeout_s + 5)
        start = self.t0.timestamp()
        rows = pd.DataFrame(self.samples, columns=["at", "status"])
        rows["t"] = (rows["at"] - start).floordiv(1).astype(int)
        rows["ok"] = rows["status"].between(200, 399)
        rows["f5xx"] = rows["status"].between(500, 599)
        rows["other"] = rows["status"].isna()
        return rows.groupby("t").agg(requests=("ok", "size"), successes=("ok", "sum"),
                                     failures_5xx=("f5xx", "sum"), failures_other=("other", "sum")).reset_index()


@pytest.fixture
def crop_load() -> Callable[..., CropLoad]:
    return CropLoad

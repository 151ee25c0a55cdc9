"""Prometheus scrape targets of the local platform, as file_sd JSON in the services' targets folder.

The local Prometheus (`kubexp services up`) reads run_dir()/prometheus/targets/*.json and
scrapes each target every second; removing the file removes the targets.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubexp import settings


def targets_dir() -> Path:
    return settings.run_dir() / "prometheus" / "targets"


@dataclass(frozen=True)
class ScrapeTarget:
    address: str  # host:port
    labels: dict[str, str] = field(default_factory=dict)  # component, replica ...
    metrics_path: str = "/metrics"

    def group(self, platform: str) -> dict[str, object]:
        labels = {"platform": platform, **self.labels}
        if self.metrics_path != "/metrics":
            labels["__metrics_path__"] = self.metrics_path
        return {"targets": [self.address], "labels": labels}


def write(path: Path, targets: list[ScrapeTarget], platform: str) -> None:
    """Replace the file atomically: Prometheus may read it at any moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps([t.group(platform) for t in targets], indent=1))
    os.replace(tmp, path)


def read(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else []


def addresses(path: Path) -> list[str]:
    """Every target address (host:port) in the file."""
    return [str(address) for group in read(path) for address in group["targets"]]

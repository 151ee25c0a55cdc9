"""The figures a benchmark hands to `make bench` (benchmarks/bench.py): one JSON list per script.

A figure is kubexp's value beside a peer's measured in the same run on the same machine (or a stated
constant, or no peer), with the unit, which direction is better, and the settings that produced it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def figure(name: str, kubexp: float, unit: str, *, peer: str | None = None, peer_value: float | None = None,
           better: str = "lower", settings: str = "") -> dict[str, Any]:
    return {"figure": name, "kubexp": kubexp, "unit": unit, "peer": peer, "peer_value": peer_value,
            "better": better, "settings": settings, "load_average": round(os.getloadavg()[0], 1)}


def write(path: Path | None, figures: list[dict[str, Any]]) -> None:
    """Append `figures` to the JSON list in `path` (nothing without a path)."""
    if path is None:
        return
    existing = json.loads(path.read_text()) if path.exists() and path.stat().st_size else []
    path.write_text(json.dumps(existing + figures, indent=1))

"""The event journal: what the supervisor saw, one JSON line per event, read by `events()`.

The supervisor runs in its own process and every Airflow task builds a fresh platform
object, so events live in a file under the platform's state folder, not in memory.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kubexp.records import PlatformEvent


@dataclass(frozen=True)
class JournalEntry:
    at: datetime
    source: str
    kind: str
    obj: str
    message: str = ""


def append(path: Path, source: str, kind: str, obj: str, message: str = "", at: datetime | None = None) -> None:
    entry = {"at": (at or datetime.now(UTC)).isoformat(), "source": source, "kind": kind, "obj": obj,
             "message": message}
    with open(path, "a") as out:  # one short write per line: readers never see half an event
        out.write(json.dumps(entry) + "\n")


def read(path: Path) -> list[JournalEntry]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            raw = json.loads(line)
            entries.append(JournalEntry(datetime.fromisoformat(raw["at"]), raw["source"], raw["kind"],
                                        raw["obj"], raw.get("message", "")))
        except (ValueError, KeyError):
            continue  # a line being written right now
    return entries


def window(entries: list[JournalEntry], start: datetime, end: datetime, t0: datetime) -> list[PlatformEvent]:
    """Entries with start <= at <= end as PlatformEvents, t = whole seconds since t0 (floor)."""
    for name, value in (("start", start), ("end", end), ("t0", t0)):
        if value.tzinfo is None:
            raise ValueError(f"events(): {name}={value.isoformat()} has no timezone; pass UTC datetimes")
    return [
        PlatformEvent(t=math.floor((e.at - t0).total_seconds()), at=e.at, source=e.source, kind=e.kind,
                      obj=e.obj, message=e.message)
        for e in entries if start <= e.at <= end
    ]

"""The load step's JTL as a collector: exactly the archived bytes, aggregated per second (kubexp.load.jtl)."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kubexp.artifacts import archived_bytes
from kubexp.records import Artifact, Collected, Window

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JtlCollector:
    """Per-second load rows of the load step's JTL, with every file the load step archived.

    Whatever changed the live file after the load (a JMeter server still writing, a hand edit) is not
    measured data: the rows come from the archive's bytes (the live file while it still holds them)."""

    live: Path  # the JTL the load step wrote
    archived: Artifact  # its archive
    kept: list[Artifact]  # every file the load step archived
    t0_ms: int  # t = 0 in epoch milliseconds, as in the JTL
    max_malformed_share: float
    scratch_dir: Path  # a private folder for an unpacked copy
    name: str = "JTL"

    def collect(self, window: Window) -> Collected:
        from kubexp.load import jtl

        with tempfile.TemporaryDirectory(prefix="collect-", dir=self.scratch_dir) as scratch:
            source = archived_bytes(self.live, self.archived, Path(scratch))
            if source != self.live:
                log.warning("%s differs from its archive %s (or is gone): collecting from the archive", self.live,
                            self.archived.path)
            parsed = jtl.aggregate(source, self.t0_ms, max_malformed_share=self.max_malformed_share)
        return Collected(load=parsed.frame, load_whole=parsed.whole, artifacts=list(self.kept), facts={"jtl": {
            "rows": parsed.rows, "malformed": parsed.malformed, "max_malformed_share": self.max_malformed_share}})

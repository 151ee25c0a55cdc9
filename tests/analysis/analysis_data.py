"""Synthetic analysis data of the documented shapes: frames in memory, or suites in a real store."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from kubexp.analysis import steady, synthetic
from kubexp.analysis.figures import GROUPING_PARAMETERS
from kubexp.local_services import Postgres
from kubexp.store import db, migrations
from kubexp.suite import PARAMETER_DEFAULTS, Suite, load_suite

PAPER_ETCD_MATRIX = {"pods": [10, 20], "workers": [60, 120], "mesh": ["native", "istio"],
                     "etcd_storage": ["ramdisk", "disk"]}


@dataclass
class Frames:
    experiments: pd.DataFrame
    seconds: pd.DataFrame
    events: pd.DataFrame
    windows: pd.DataFrame
    steady: pd.DataFrame
    per_experiment: pd.DataFrame


def build_frames(matrix: dict[str, list[object]], repetitions: int, seconds: int = 240, seed: int = 1) -> Frames:
    rng = np.random.default_rng(seed)
    experiments, frames, events = [], [], []
    for index, combo in enumerate(itertools.product(*matrix.values())):
        params = {**PARAMETER_DEFAULTS, "duration_s": seconds, **dict(zip(matrix, combo, strict=True))}
        params["pods_max"] = params["pods"]
        for repetition in range(1, repetitions + 1):
            experiment_id = f"s{index}-r{repetition}"
            load, happened = synthetic.load_seconds(params, seconds=seconds, rng=rng)
            experiments.append({"experiment_id": experiment_id, "scenario_id": f"s{index:02d}", "scenario_index": index,
                                "repetition": repetition, "status": "finished", **params})
            frames.append(load.assign(experiment_id=experiment_id))
            events += [{"experiment_id": experiment_id, "t": e.t, "at": e.at, "source": e.source, "kind": e.kind,
                        "obj": e.obj, "message": e.message} for e in happened]
    experiment_frame = pd.DataFrame(experiments)
    second_frame = pd.concat(frames, ignore_index=True)
    windows = steady.steady_windows(second_frame, warmup_s=20, cooldown_s=5)
    kept = steady.trim(second_frame, windows)
    params = [c for c in ["scenario_id", *GROUPING_PARAMETERS] if c in experiment_frame]
    kept = kept.merge(experiment_frame[["experiment_id", *params]], on="experiment_id")
    per_experiment = steady.summarize(kept).merge(experiment_frame, on="experiment_id")
    event_frame = pd.DataFrame(events, columns=["experiment_id", "t", "at", "source", "kind", "obj", "message"])
    return Frames(experiment_frame, second_frame, event_frame, windows, kept, per_experiment)


@dataclass(frozen=True)
class StoredSuite:
    """A results database holding a suite with finished and unfinished experiments."""

    url: str
    suite: Suite
    finished: int


def store_synthetic_suite(server: Postgres, folder: Path, name: str, matrix: dict[str, list[object]], *,
                          repetitions: int, duration_s: int, analysis: dict[str, object] | None = None,
                          unfinished_every: int = 0) -> StoredSuite:
    database = "a_" + secrets.token_hex(6)
    server.create_databases(database)
    url = server.url(database)
    migrations.upgrade(url)
    document = synthetic.suite_document(name, matrix, repetitions=repetitions, duration_s=duration_s,
                                        analysis=analysis)
    document["description"] = "synthetic <b>data</b> & not a measurement"  # checks HTML escaping
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    suite = load_suite(path)
    with db.connect(url) as conn:
        finished = synthetic.populate(conn, suite, seed=5, unfinished_every=unfinished_every)
    return StoredSuite(url, suite, finished)

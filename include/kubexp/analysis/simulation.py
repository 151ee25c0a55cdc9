"""A seeded simulation of the regression gate (kubexp.analysis.gate) against a known effect.

Each simulated experiment serves `level` successful responses/s (the candidate: level x the true ratio),
times a run-to-run factor drawn per experiment from a log-normal distribution with `between_cv`; its
seconds scatter around that with AR(1) noise (lag-1 correlation 0.5, Poisson-like spread sqrt(level)),
and its value is the median of its `seconds` steady-state seconds, as the store's experiment_aggregate
computes it. `simulate` decides many such baseline-vs-candidate pairs and counts the outcomes.

`python -m kubexp.analysis.simulation` prints the table of docs/ci.md.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from kubexp.analysis import gate


@dataclass(frozen=True)
class Setting:
    ratio: float  # the true candidate / baseline ratio of the median successful responses/s
    experiments: int  # per level
    margin: float = gate.DEFAULT_MARGIN
    confidence: float = 0.95
    between_cv: float = 0.05  # run-to-run variation of an experiment's level
    seconds: int = 30
    level: float = 100.0


def experiment_values(rng: np.random.Generator, level: float, setting: Setting, runs: int) -> np.ndarray:
    """runs x experiments per-experiment values (medians of AR(1) seconds around a log-normal level)."""
    shape = (runs, setting.experiments)
    sigma = np.sqrt(np.log1p(setting.between_cv ** 2))
    levels = level * rng.lognormal(-sigma ** 2 / 2, sigma, shape)
    phi = 0.5
    noise = np.empty((*shape, setting.seconds))
    noise[..., 0] = rng.normal(0, 1, shape)
    for t in range(1, setting.seconds):
        noise[..., t] = phi * noise[..., t - 1] + np.sqrt(1 - phi ** 2) * rng.normal(0, 1, shape)
    seconds = levels[..., None] + np.sqrt(levels)[..., None] * noise
    return np.median(np.maximum(seconds, 0.0), axis=-1)


def simulate(setting: Setting, *, runs: int, seed: int) -> dict[str, float]:
    """The share of each outcome over `runs` simulated comparisons."""
    rng = np.random.default_rng(seed)
    baseline = experiment_values(rng, setting.level, setting, runs)
    candidate = experiment_values(rng, setting.level * setting.ratio, setting, runs)
    found = Counter(gate.decide(x, y, margin=setting.margin, confidence=setting.confidence).outcome
                    for x, y in zip(baseline, candidate, strict=True))
    return {outcome: found.get(outcome, 0) / runs for outcome in ("worse", "inconclusive", "equivalent", "better")}


GRID = [*(Setting(ratio, n) for n in (5, 10, 20) for ratio in (0.8, 0.95, 1.0, 1.05, 1.25)),
        *(Setting(1.0, n, between_cv=0.02) for n in (10, 20)),
        *(Setting(ratio, 20, between_cv=0.2) for ratio in (0.5, 0.8, 1.0))]


def main(runs: int = 2000, seed: int = 19) -> None:
    print(f"{runs} simulated comparisons per row, seed {seed}; confidence 95 %, margin 5 %, 30 s per experiment "
          "around 100 responses/s (`python -m kubexp.analysis.simulation`)")
    print("| true ratio | experiments per level | run-to-run CV | worse | inconclusive | equivalent | better |")
    print("|---|---|---|---|---|---|---|")
    for setting in GRID:
        shares = simulate(setting, runs=runs, seed=seed)
        print(f"| {setting.ratio:g} | {setting.experiments} | {setting.between_cv:.0%} | "
              + " | ".join(f"{share:.1%}" for share in shares.values()) + " |")


if __name__ == "__main__":
    main()

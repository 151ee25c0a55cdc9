"""The regression gate: the shift interval, the four outcomes at their stated error rates (seeded simulation),
and `kubexp compare` over a real store."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import xmlschema
import yaml
from analysis_data import store_values
from click.testing import CliRunner

from kubexp.analysis import gate, simulation, stats
from kubexp.cli import main
from kubexp.store import db, migrations
from kubexp.suite import load_suite

JUNIT_XSD = Path(__file__).with_name("data") / "junit-10.xsd"


def brute_force_cdf(n: int, m: int) -> list[float]:
    """P(U <= u) by listing every way to place n of n + m ranks (U = pairs with a y below an x)."""
    found: Counter[int] = Counter()
    for xs in itertools.combinations(range(n + m), n):
        found[sum(1 for x in xs for y in range(x) if y not in xs)] += 1
    total = sum(found.values())
    return list(np.cumsum([found[u] for u in range(n * m + 1)]) / total)


@pytest.mark.parametrize(("n", "m"), [(1, 1), (2, 5), (3, 3), (4, 6), (6, 5)])
def test_rank_sum_distribution_is_exact(n: int, m: int) -> None:
    assert stats._rank_sum_cdf(n, m) == pytest.approx(brute_force_cdf(n, m), abs=1e-12)


def test_shift_interval_is_the_order_statistics_of_the_pairwise_differences() -> None:
    # n = m = 3 at 90 %: C(6, 3) = 20 arrangements, the full range [min, max] of the 9 differences covers 90 %.
    interval = stats.shift_interval([1, 2, 3], [4, 5, 6], confidence=0.9)
    assert (interval.low, interval.high, interval.coverage) == (1.0, 5.0, pytest.approx(0.9))
    assert stats.shift_interval([1, 2, 3], [4, 5, 6], confidence=0.95).low is None  # 3 + 3 cannot give 95 %
    interval = stats.shift_interval(np.arange(10.0), np.arange(10.0) + 3)
    assert interval.low < 3 < interval.high and interval.coverage >= 0.95


def test_decide_reads_the_interval_against_the_margin() -> None:
    base = [100.0, 101.0, 99.0, 100.5, 99.5, 100.2]
    assert gate.decide(base, [v * 0.7 for v in base]).outcome == "worse"
    assert gate.decide(base, [v * 1.3 for v in base]).outcome == "better"
    assert gate.decide(base, [100.1, 99.8, 100.4, 99.9, 100.3, 100.0]).outcome == "equivalent"
    assert gate.decide(base, [v * 0.95 for v in base]).outcome == "inconclusive"  # the interval holds 0.95
    few = gate.decide(base[:3], [v * 0.5 for v in base[:3]])
    assert few.outcome == "inconclusive" and "give no 95% interval" in few.reason and few.ratio == pytest.approx(0.5)
    assert gate.decide(base, [0.0] * 6).outcome == "inconclusive"


RUNS = 2000
ALPHA_HALF = 0.025
# The largest share a rate of 2.5 % shows in 2000 runs with probability above 0.999 (binomial, 3.1 sigma).
TOLERATED = ALPHA_HALF + 3.1 * (ALPHA_HALF * (1 - ALPHA_HALF) / RUNS) ** 0.5


@pytest.mark.parametrize("experiments", [5, 10, 20])
def test_simulation_error_rates_are_within_the_stated_bounds(experiments: int) -> None:
    """Within the margin (true ratio 0.95, 1, 1.05) 'worse' and 'better' come out at most alpha/2 of the time;
    outside it (0.8, 1.25) 'equivalent' never; at the margin's edge 'equivalent' at most alpha/2."""
    for ratio in (0.95, 1.0, 1.05):
        shares = simulation.simulate(simulation.Setting(ratio, experiments), runs=RUNS, seed=19)
        assert shares["worse"] <= TOLERATED and shares["better"] <= TOLERATED, (ratio, shares)
        if ratio != 1.0:
            assert shares["equivalent"] <= TOLERATED, (ratio, shares)
    for ratio in (0.8, 1.25):
        assert simulation.simulate(simulation.Setting(ratio, experiments), runs=RUNS, seed=19)["equivalent"] == 0


def test_simulation_shows_each_outcome_where_it_belongs() -> None:
    def most(setting: simulation.Setting) -> tuple[str, float]:
        shares = simulation.simulate(setting, runs=RUNS, seed=7)
        return max(shares.items(), key=lambda item: item[1])

    worse, better = most(simulation.Setting(0.8, 10)), most(simulation.Setting(1.25, 10))
    assert worse[0] == "worse" and worse[1] >= 0.99 and better[0] == "better" and better[1] >= 0.99
    equivalent = most(simulation.Setting(1.0, 20, between_cv=0.02))
    assert equivalent[0] == "equivalent" and equivalent[1] >= 0.9
    edge = most(simulation.Setting(0.95, 10))  # true ratio on the margin: neither worse nor equivalent is sure
    assert edge[0] == "inconclusive" and edge[1] >= 1 - 2 * TOLERATED


def test_a_noisier_cluster_needs_more_experiments_for_the_same_regression() -> None:
    quiet = simulation.simulate(simulation.Setting(0.8, 5, between_cv=0.05), runs=500, seed=3)["worse"]
    noisy = simulation.simulate(simulation.Setting(0.8, 5, between_cv=0.2), runs=500, seed=3)["worse"]
    assert quiet > 0.85 and noisy < 0.5


@pytest.fixture
def compare_store(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """workers x cpu_limit_millicores: at workers=2 the 200 m candidate halves the throughput, at workers=4 it
    changes nothing, at workers=8 only 2 experiments per level finished."""
    migrations.upgrade(database_url)
    monkeypatch.setenv("KUBEXP_DATABASE_URL", database_url)
    path = tmp_path / "gate.yaml"
    path.write_text(yaml.safe_dump({
        "suite": "gate", "platform": "local", "repetitions": 6, "defaults": {"duration_s": 20},
        "matrix": {"workers": [2, 4, 8], "cpu_limit_millicores": [1000, 200]}}, sort_keys=False))
    base = [100, 101, 99, 102, 98, 100]
    with db.connect(database_url) as conn:  # scenario index = 2 * workers position + cpu position
        store_values(conn, load_suite(path), {0: base, 1: [v // 2 for v in base], 2: base,
                                              3: [100, 99, 101, 100, 98, 102], 4: base[:2], 5: base[:2]})
    return path


def test_compare_says_worse_per_combination_and_exits_1(compare_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["compare", "gate", "--factor", "cpu_limit_millicores", "--baseline", "1000",
                                       "--candidate", "200", "--junit", str(out / "c.xml"), "--json",
                                       str(out / "c.json"), "--markdown", str(out / "c.md")])
    assert result.exit_code == 1, result.output
    assert "compare gate cpu_limit_millicores=200 vs cpu_limit_millicores=1000: 0 better, 1 worse, 1 equivalent, " \
           "1 inconclusive" in result.output
    document = json.loads((out / "c.json").read_text())
    by_workers = {c["combination"]["workers"]: c for c in document["comparisons"]}
    assert {w: c["outcome"] for w, c in by_workers.items()} == {2: "worse", 4: "equivalent", 8: "inconclusive"}
    assert by_workers[2]["ratio"] == pytest.approx(0.5, abs=0.01) and by_workers[2]["ci_high"] < 0.95
    assert document["margin"] == 0.05 and "Moses" in document["method"]
    schema = xmlschema.XMLSchema(JUNIT_XSD)
    schema.validate(out / "c.xml")
    suite = schema.to_dict(out / "c.xml")["testsuite"][0]
    assert (suite["@tests"], suite["@failures"], suite["@skipped"]) == ("3", "1", "1")
    assert "| worse | workers=2 | 0.500 |" in (out / "c.md").read_text()


def test_compare_the_other_way_says_better_and_exits_0(compare_store: Path) -> None:
    result = CliRunner().invoke(main, ["compare", str(compare_store), "--factor", "cpu_limit_millicores",
                                       "--baseline", "200", "--candidate", "1000", "--margin", "0.1"])
    assert result.exit_code == 0, result.output
    assert "1 better, 0 worse, 1 equivalent, 1 inconclusive" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--factor", "pods", "--baseline", "1", "--candidate", "2"],
     "--factor pods is not a matrix parameter; allowed: workers, cpu_limit_millicores"),
    (["--factor", "workers", "--baseline", "2", "--candidate", "3"], "--candidate 3 is not a level of workers; "
                                                                     "allowed: 2, 4, 8"),
    (["--factor", "workers", "--baseline", "2", "--candidate", "4", "--margin", "150%"], "150% is outside"),
])
def test_compare_refuses_what_the_suite_does_not_hold(compare_store: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["compare", "gate", *args])
    assert result.exit_code != 0 and message in result.output, result.output

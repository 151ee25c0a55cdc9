"""The regression gate and the SLO verdict on experiments really run on the local platform.

e2e-gate: 3 interleaved repetitions of cpu_limit_millicores 1000 (baseline), 1001 (nothing differs) and 100
(a tenth of the CPU: really slower), 6 s of load each, 90 % intervals.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import xmlschema
from e2e_harness import E2E

KUBEXP = str(Path(sys.executable).parent / "kubexp")
JUNIT_XSD = Path(__file__).parent.parent / "analysis" / "data" / "junit-10.xsd"


def kubexp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KUBEXP, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_compare_says_worse_for_a_lower_cpu_limit_and_never_worse_when_nothing_differs(e2e: E2E,
                                                                                        tmp_path: Path) -> None:
    runs = e2e.dag_test("e2e-gate", *range(1, 10), timeout=1200)
    assert [run["state"] for run in runs] == ["success"] * 9, e2e.failed_tasks_log("e2e-gate")
    order = [row[0] for row in e2e.query(
        "SELECT (sc.params ->> 'cpu_limit_millicores')::int FROM selection s JOIN scenario sc ON sc.id = s.scenario_id "
        "WHERE s.suite = 'e2e-gate' ORDER BY s.id")]
    assert sorted(order[:3]) == sorted(order[3:6]) == sorted(order[6:]) == [100, 1000, 1001]  # interleaved rounds
    # finalize stored both SLOs' values of every experiment
    [(values, experiments)] = e2e.query(
        "SELECT count(*), count(DISTINCT v.experiment_id) FROM slo_value v JOIN experiment e "
        "ON e.id = v.experiment_id AND e.finished_attempt_id = v.attempt_id WHERE e.suite = 'e2e-gate'")
    assert (values, experiments) == (18, 9)

    worse = kubexp("compare", "e2e-gate", "--factor", "cpu_limit_millicores", "--baseline", "1000",
                   "--candidate", "100", "--junit", str(tmp_path / "worse.xml"), "--json", str(tmp_path / "worse.json"))
    assert worse.returncode == 1, worse.stdout + worse.stderr
    [comparison] = json.loads((tmp_path / "worse.json").read_text())["comparisons"]
    assert comparison["outcome"] == "worse" and comparison["ci_high"] < 0.95, comparison
    xmlschema.XMLSchema(JUNIT_XSD).validate(tmp_path / "worse.xml")

    same = kubexp("compare", "e2e-gate", "--factor", "cpu_limit_millicores", "--baseline", "1000",
                  "--candidate", "1001", "--margin", "10%", "--json", str(tmp_path / "same.json"))
    assert same.returncode == 0, same.stdout + same.stderr
    [comparison] = json.loads((tmp_path / "same.json").read_text())["comparisons"]
    assert comparison["outcome"] in ("equivalent", "inconclusive"), comparison

    # 3 experiments per scenario give no 90 % interval of a median (the range covers 75 %): undecided, exit 0
    verdict = kubexp("verdict", "e2e-gate", "--junit", str(tmp_path / "verdict.xml"))
    assert verdict.returncode == 0 and "0 met, 0 missed, 6 undecided" in verdict.stdout, verdict.stdout
    xmlschema.XMLSchema(JUNIT_XSD).validate(tmp_path / "verdict.xml")

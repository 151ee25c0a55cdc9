"""The report and the notebook, from experiments really run on the local platform (two scenarios)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from e2e_harness import E2E
from figure_checks import (
    NOTEBOOK_IMAGES,
    REPORT_FIGURES,
    assert_nontrivial_image,
    assert_nontrivial_png,
    execute_notebook,
)

from kubexp.analysis.dataset import load_suite_data
from kubexp.analysis.report import timeline_experiments
from kubexp.store import db


@pytest.mark.slow
def test_report_and_notebook_from_real_local_experiments(e2e: E2E, tmp_path: Path) -> None:
    runs = e2e.dag_test("e2e-report", 1, 2)
    assert [run["state"] for run in runs] == ["success", "success"], e2e.failed_tasks_log("e2e-report")
    [(finished,)] = e2e.query("SELECT count(*) FROM experiment WHERE suite = 'e2e-report' AND status = 'finished'")
    assert finished == 2

    out = tmp_path / "report"
    kubexp = str(Path(sys.executable).parent / "kubexp")
    built = subprocess.run([kubexp, "report", "e2e-report", "--out", str(out)], capture_output=True, text=True,
                           timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    html = (out / "report.html").read_text()
    assert "e2e-report" in html and "data:image/png;base64," in html
    # Every figure of a suite with finished experiments; a second timeline only when the store holds
    # platform events of an experiment other than the first timeline's (the report's own rule).
    with db.connect(e2e.database_url) as conn:
        data = load_suite_data(conn, "e2e-report")
    assert len(data.per_experiment) == 2 and data.parameters == ["workers"]
    expected = set(REPORT_FIGURES) | ({"timeline-2"} if len(timeline_experiments(data)) == 2 else set())
    written = {png.stem for png in (out / "figures").glob("*.png")}
    assert written == expected, f"figures in {out}: {sorted(written)}, expected {sorted(expected)}: {built.stdout}"
    for name in sorted(expected):
        assert_nontrivial_png(out / "figures" / f"{name}.png")
        assert f'<figure id="{name}">' in html

    texts, images = execute_notebook(e2e.database_url, "e2e-report", tmp_path / "notebook")
    assert "e2e-report" in texts and "2 finished" in texts
    assert len(images) == NOTEBOOK_IMAGES
    for image in images:
        assert_nontrivial_image(image)

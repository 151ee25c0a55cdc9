"""notebooks/explore.ipynb runs top to bottom against a database with stored experiments (nbclient)."""

from __future__ import annotations

from pathlib import Path

import pytest
from analysis_data import StoredSuite
from figure_checks import NOTEBOOK_IMAGES, assert_nontrivial_image, execute_notebook


@pytest.mark.slow
def test_notebook_executes_against_the_store(report_source: StoredSuite, tmp_path: Path) -> None:
    texts, images = execute_notebook(report_source.url, report_source.suite.name, tmp_path)
    assert report_source.suite.name in texts
    assert "experiments as the unit" in texts and "seconds as the unit" in texts
    assert f"{report_source.finished} finished" in texts
    assert len(images) == NOTEBOOK_IMAGES
    for image in images:
        assert_nontrivial_image(image)

"""notebooks/explore.ipynb runs top to bottom against a database with stored experiments (nbclient)."""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from analysis_data import StoredSuite
from nbclient import NotebookClient
from PIL import Image

from kubexp.settings import REPO_ROOT

NOTEBOOK = REPO_ROOT / "notebooks" / "explore.ipynb"


@pytest.mark.slow
def test_notebook_executes_against_the_store(report_source: StoredSuite, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # A kernel spec for this interpreter, so the notebook runs in the project's venv whatever else is installed.
    spec = tmp_path / "jupyter" / "kernels" / "kubexp-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "kubexp test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("KUBEXP_DATABASE_URL", report_source.url)
    monkeypatch.setenv("KUBEXP_SUITE", report_source.suite.name)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "commit the notebook without outputs"
    NotebookClient(notebook, kernel_name="kubexp-test", timeout=120, resources={"metadata": {"path": str(tmp_path)}}
                   ).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    texts = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert report_source.suite.name in texts
    assert "experiments as the unit" in texts and "seconds as the unit" in texts
    assert f"{report_source.finished} finished" in texts
    images = [o.data["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3
    for encoded in images:
        with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
            pixels = np.asarray(image.convert("RGB"))
        assert pixels.shape[0] >= 300 and pixels.shape[1] >= 400
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20
    nbformat.write(notebook, tmp_path / "explore.executed.ipynb")

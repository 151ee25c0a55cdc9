"""Checks that a figure is a real picture, shared by the analysis and end-to-end tests."""

from __future__ import annotations

import base64
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
from nbclient import NotebookClient
from PIL import Image

from kubexp.settings import REPO_ROOT

NOTEBOOK = REPO_ROOT / "notebooks" / "explore.ipynb"
# The figures `kubexp report` writes for any suite with finished experiments; timeline-2 only
# when an experiment other than timeline-1's had platform events (report.timeline_experiments).
REPORT_FIGURES = frozenset({"throughput-vs-workers", "throughput-vs-pods", "std-per-scenario", "densities",
                            "timeline-1"})
NOTEBOOK_IMAGES = 3  # throughput and response time, densities, one experiment's timeline


def assert_nontrivial_png(path: Path) -> tuple[int, int]:
    """The PNG exists and is not trivial (size, dimensions, many distinct pixels); returns its size."""
    assert path.is_file(), f"{path} was not written"
    assert path.stat().st_size > 10_000, f"{path} is only {path.stat().st_size} bytes"
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert width >= 400 and height >= 300, f"{path} is {width}x{height}"
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=4096)  # None: more than 4096 distinct colours
        pixels = np.asarray(rgb)
    assert colours is None or len(colours) > 20, f"{path} is nearly uniform"
    assert (pixels < 200).any(axis=2).mean() > 0.01, f"{path} has almost nothing drawn on it"
    return width, height


def execute_notebook(database_url: str, suite_name: str, workdir: Path) -> tuple[str, list[bytes]]:
    """Run notebooks/explore.ipynb against a store with nbclient; its text output and PNG images."""
    spec = workdir / "jupyter" / "kernels" / "kubexp-test"
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "kubexp test", "language": "python"}))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "commit the notebook without outputs"
    env = {"JUPYTER_PATH": str(workdir / "jupyter"), "KUBEXP_DATABASE_URL": database_url, "KUBEXP_SUITE": suite_name}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # the kernel inherits them
    try:
        NotebookClient(notebook, kernel_name="kubexp-test", timeout=120,
                       resources={"metadata": {"path": str(workdir)}}).execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    outputs: list[Any] = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, errors
    nbformat.write(notebook, workdir / "explore.executed.ipynb")
    texts = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    images = [base64.b64decode(o.data["image/png"]) for o in outputs if "image/png" in o.get("data", {})]
    return texts, images


def assert_nontrivial_image(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] >= 300 and pixels.shape[1] >= 400
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20

"""The scheduler's preload notes the source it loaded; preflight refuses once that source has changed."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubexp import preflight
from kubexp.orchestration import preload


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package kxpre (two modules) on sys.path, and a preload record of its own."""
    root = tmp_path / "kxpre"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "steps.py").write_text("from kxpre import helpers\nVALUE = helpers.VALUE\n")
    (root / "helpers.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(preload, "_loaded", {})
    yield root
    for name in [name for name in sys.modules if name.split(".")[0] == "kxpre"]:
        del sys.modules[name]


def test_a_changed_or_removed_source_is_named_and_a_touched_one_is_not(package: Path) -> None:
    preload.preload(["kxpre.steps"], package="kxpre")
    assert preload.changed_since_preload() == []

    helpers, steps = package / "helpers.py", package / "steps.py"
    os.utime(steps, ns=(0, 0))  # touched (a checkout of the same content): not a change
    helpers.write_text("VALUE = 2\n")
    os.utime(helpers, ns=(1, 1))
    assert preload.changed_since_preload() == [str(helpers)]
    (package / "__init__.py").unlink()
    assert preload.changed_since_preload() == sorted([str(helpers), str(package / "__init__.py")])


def test_preflight_refuses_code_changed_since_the_preload(package: Path) -> None:
    preload.preload(["kxpre.steps"], package="kxpre")
    problems: list[str] = []
    preflight.check_loaded_code(problems)
    assert problems == []

    (package / "steps.py").write_text("VALUE = 3\n")
    os.utime(package / "steps.py", ns=(1, 1))
    preflight.check_loaded_code(problems)
    [problem] = problems
    assert str(package / "steps.py") in problem and "kubexp services down" in problem


def test_without_a_preload_nothing_is_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preload, "_loaded", {})
    assert preload.changed_since_preload() == []


def test_every_shipped_preload_module_imports() -> None:
    """`preload` only warns about a module it cannot import: a misspelt name would silently preload nothing."""
    for name in preload.MODULES:
        importlib.import_module(name)

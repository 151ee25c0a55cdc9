"""Fixtures for the analysis tests: synthetic frames of the documented shapes, and a PNG check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from analysis_data import PAPER_ETCD_MATRIX, Frames, StoredSuite, build_frames, store_synthetic_suite
from figure_checks import assert_nontrivial_png

from kubexp.local_services import Postgres


@pytest.fixture(scope="session")
def etcd_frames() -> Frames:
    """The paper's section 7.2 design, reduced: 16 scenarios x 4 repetitions x 240 s."""
    return build_frames(PAPER_ETCD_MATRIX, repetitions=4)


@pytest.fixture
def png_check() -> Callable[[Path], tuple[int, int]]:
    """Asserts a PNG exists and is not trivial (size, dimensions, many distinct pixels); returns its size."""
    return assert_nontrivial_png


@pytest.fixture(scope="module")
def stored_suite(postgres_server: Postgres, tmp_path_factory: pytest.TempPathFactory) -> StoredSuite:
    """2 x 2 scenarios x 4 repetitions of 120 s, every 7th experiment unfinished, configured window."""
    return store_synthetic_suite(postgres_server, tmp_path_factory.mktemp("suite"), "analysis-store",
                                 {"workers": [20, 60], "etcd_storage": ["ramdisk", "disk"]}, repetitions=4,
                                 duration_s=120, analysis={"warmup_s": 10, "cooldown_s": 5}, unfinished_every=7)


@pytest.fixture(scope="module")
def synthetic_report_suite(postgres_server: Postgres, tmp_path_factory: pytest.TempPathFactory) -> StoredSuite:
    """16 scenarios x 3 repetitions of 150 s, every 11th unfinished, no window configured (MSER-5)."""
    return store_synthetic_suite(postgres_server, tmp_path_factory.mktemp("report"), "analysis-report",
                                 {"pods": [1, 2], "workers": [10, 30], "mesh": ["native", "istio"],
                                  "etcd_storage": ["ramdisk", "disk"]},
                                 repetitions=3, duration_s=150, unfinished_every=11)


@pytest.fixture(scope="module")
def report_source(synthetic_report_suite: StoredSuite) -> StoredSuite:
    """The stored suite the report and notebook tests read: any StoredSuite whose suite varies a parameter.

    Synthetic for now; a fixture of real local experiments (url, suite, finished count) can take its place.
    """
    return synthetic_report_suite

"""Archiving raw files: gzip copy, sha256 and size of the original, original kept."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import pytest

from kubexp.artifacts import archive


def test_archive_round_trip_of_a_multi_chunk_file(tmp_path: Path) -> None:
    source = tmp_path / "run.jtl"
    content = os.urandom(1 << 20) + b"timeStamp,elapsed\n" * 200_000  # > 1 chunk, part incompressible
    source.write_bytes(content)
    artifact = archive(source, tmp_path / "kept")
    assert artifact.kind == "jtl"
    assert artifact.path == str(tmp_path / "kept" / "run.jtl.gz")
    assert artifact.size == len(content)
    assert artifact.sha256 == hashlib.sha256(content).hexdigest()
    assert gzip.decompress(Path(artifact.path).read_bytes()) == content
    assert source.read_bytes() == content  # never deleted here
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["run.jtl.gz"]  # no staging file left


def test_archiving_again_replaces_the_archive(tmp_path: Path) -> None:
    source = tmp_path / "jmeter.log"
    source.write_text("first\n")
    archive(source, tmp_path / "kept")
    source.write_text("second\n")
    artifact = archive(source, tmp_path / "kept", kind="master-log")
    assert artifact.kind == "master-log"
    assert gzip.decompress(Path(artifact.path).read_bytes()) == b"second\n"


def test_missing_source_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.jtl"):
        archive(tmp_path / "nothing.jtl", tmp_path / "kept")

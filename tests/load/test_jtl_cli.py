"""`kubexp jtl aggregate`: one CSV row per second, `second` for t."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from click.testing import CliRunner
from test_jtl import T0, line, random_jtl, write

from kubexp.cli import main
from kubexp.load.jtl import aggregate


def test_aggregate_writes_per_second_csv(tmp_path: Path) -> None:
    path = write(tmp_path / "run.jtl", [line(T0 + 250 + i * 100, 10 + i, success="false" if i == 3 else "true",
                                             code="503" if i == 3 else "200") for i in range(20)])
    out = tmp_path / "out.csv"
    answer = CliRunner().invoke(main, ["jtl", "aggregate", str(path), "--start-ms", str(T0), "--output", str(out)])
    assert answer.exit_code == 0, answer.output
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0])[:6] == ["second", "requests", "successes", "failures", "failures_4xx", "failures_5xx"]
    assert {"elapsed_mean_ms", "elapsed_p99_ms"} <= set(rows[0])
    assert [(r["second"], r["requests"], r["failures_5xx"]) for r in rows] == [("0", "8", "1"), ("1", "10", "0"),
                                                                              ("2", "2", "0")]
    assert "20 samples in 3 seconds" in answer.output
    # second 0: 8 requests at 10..17 ms, the 503 took 13 ms: p50 of all 13, of the 7 successful 14
    assert (rows[0]["elapsed_p50_ms"], rows[0]["success_elapsed_p50_ms"]) == ("13.0", "14.0")
    whole = tmp_path / "whole.json"
    assert CliRunner().invoke(main, ["jtl", "aggregate", str(path), "--whole", str(whole)]).exit_code == 0
    figures = json.loads(whole.read_text())
    assert (figures["requests"], figures["successes"], figures["success_elapsed_max_ms"]) == (20, 19, 29.0)
    assert figures["success_elapsed_p50_ms"] == 20.0  # nearest rank 10 of 10..29 without 13


def test_default_t0_is_the_first_sample(tmp_path: Path) -> None:
    path = write(tmp_path / "run.jtl", [line(T0 + 250 + i * 100, 10) for i in range(20)])
    answer = CliRunner().invoke(main, ["jtl", "aggregate", str(path)])
    assert answer.exit_code == 0
    lines = answer.stdout.splitlines()[1:]
    assert [text.split(",")[:2] for text in lines] == [["0", "10"], ["1", "10"]]
    assert f"t0_ms={T0 + 250}" in answer.stderr


def test_malformed_file_is_refused_with_a_message(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jtl", ["junk", "junk", line(T0, 1)])
    answer = CliRunner().invoke(main, ["jtl", "aggregate", str(path)])
    assert answer.exit_code == 1 and "2 of 3 lines are malformed" in answer.output
    assert CliRunner().invoke(main, ["jtl", "aggregate", str(path), "--max-malformed-share", "0.9"]).exit_code == 0


def test_csv_is_byte_for_byte_what_pandas_writes_of_the_frame(tmp_path: Path) -> None:
    gaps = tmp_path / "gaps.jtl"  # seconds without samples, no bytes column, values pandas prints with exponents
    gaps.write_text("timeStamp,elapsed,success,Latency,Connect,allThreads\n" + "".join(
        f"{T0 + i * 2700},{i * 7919 % 10**6},{'false' if i % 3 == 0 else 'true'},{i * 10**14},1,{i % 5}\n"
        for i in range(40)))
    for path in (random_jtl(tmp_path / "random.jtl", 3000, seed=4), gaps, write(tmp_path / "empty.jtl", [])):
        out = tmp_path / "out.csv"
        assert CliRunner().invoke(main, ["jtl", "aggregate", str(path), "--output", str(out)]).exit_code == 0
        frame = aggregate(path).frame.rename(columns={"t": "second"})
        assert out.read_text() == frame.to_csv(index=False, lineterminator="\n")

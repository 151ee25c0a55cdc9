"""JTL ingest: layouts JMeter can write, broken lines, order, and exact per-second values."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pandas as pd
import pytest
from jtl_reference import assert_matches_reference, nearest_rank

from kubexp.load.jtl import JMETER_DEFAULT_COLUMNS, JtlError, aggregate, aggregate_and_keep, kept_path, response_class
from kubexp.load.jtl_reader import filled, layout_of, record_ranges, valid
from kubexp.records import LOAD_SECOND_COLUMNS

T0 = 1_700_000_000_000
HEADER = ",".join(JMETER_DEFAULT_COLUMNS)


def line(stamp: int, elapsed: int, *, code: str = "200", success: str = "true", thread: str = "workers 1-1",
         threads: int = 2, message: str = "OK", failure: str = "", nbytes: int = 100, latency: int | None = None,
         connect: int = 1) -> str:
    latency = elapsed if latency is None else latency
    return (f"{stamp},{elapsed},request,{code},{message},{thread},text,{success},{failure},{nbytes},50,"
            f"{threads},{threads},http://127.0.0.1:8080/x,{latency},0,{connect}")


def write(path: Path, lines: list[str], *, header: bool = True, final_newline: bool = True) -> Path:
    text = "\n".join(([HEADER] if header else []) + lines)
    path.write_text(text + ("\n" if final_newline else ""))
    return path


def random_jtl(path: Path, rows: int, seed: int) -> Path:
    """Two engines, failures of every class, rows up to 3 s out of order, quoted messages with commas."""
    rng = random.Random(seed)
    lines = []
    for index in range(rows):
        stamp = T0 + index * 7 + rng.randint(-3000, 300)
        kind = rng.random()
        code, success, message = "200", "true", "OK"
        if kind < 0.05:
            code, success, message = "503", "false", "Service Unavailable"
        elif kind < 0.08:
            code, success, message = "404", "false", "Not Found"
        elif kind < 0.1:
            code, success = "Non HTTP response code: java.net.SocketTimeoutException", "false"
            message = '"Non HTTP response message: Read timed out, after 10000 ms"'
        engine = rng.choice(["10.0.0.1:1099", "10.0.0.2:1099"])
        lines.append(line(stamp, int(rng.lognormvariate(3, 1)), code=code, success=success, message=message,
                          thread=f"{engine}-workers 1-{rng.randint(1, 5)}", threads=rng.choice([4, 5]),
                          nbytes=rng.randint(0, 5000), latency=rng.randint(0, 40), connect=rng.randint(0, 3)))
    return write(path, lines)


def test_random_file_matches_an_independent_count_across_many_blocks(tmp_path: Path) -> None:
    path = random_jtl(tmp_path / "random.jtl", 20_000, seed=1)
    # 16 kB blocks: ~130 blocks, so seconds and late rows straddle block boundaries.
    result = aggregate(path, T0, block_size=16 << 10)
    assert result.rows == 20_000 and result.malformed == 0 and result.t0_ms == T0
    assert tuple(result.frame.columns) == LOAD_SECOND_COLUMNS
    assert result.frame["t"].min() == -3  # rows before t0 keep their (negative) second
    assert_matches_reference(result.frame, path, T0, whole=result.whole)
    assert result.frame["failures_other"].sum() > 0 and result.frame["failures_4xx"].sum() > 0


def test_default_t0_is_the_smallest_timestamp_even_when_it_comes_late(tmp_path: Path) -> None:
    lines = [line(T0 + 500 + i * 10, 5) for i in range(3000)]
    lines.append(line(T0 + 123, 9))  # the earliest sample, written last (a slow request's batch)
    path = write(tmp_path / "late.jtl", lines)
    result = aggregate(path, block_size=16 << 10)
    assert result.t0_ms == T0 + 123
    assert_matches_reference(result.frame, path)
    assert result.last_end_ms == T0 + 500 + 2999 * 10 + 5  # the latest sample's start + elapsed


def test_no_header_row_uses_jmeters_default_column_order(tmp_path: Path) -> None:
    path = write(tmp_path / "plain.jtl", [line(T0 + i * 100, i) for i in range(25)], header=False)
    result = aggregate(path, T0)
    assert result.rows == 25
    assert list(result.frame["requests"]) == [10, 10, 5]
    assert list(result.frame["elapsed_max_ms"]) == [9.0, 19.0, 24.0]


def test_reordered_and_extra_columns(tmp_path: Path) -> None:
    names = ["success", "Hostname", "elapsed", "timeStamp", "responseCode", "SampleCount", "label"]
    rows = [f"{'false' if i % 4 == 0 else 'true'},loadhost,{i},{T0 + i * 50},{'500' if i % 4 == 0 else '200'},1,req"
            for i in range(40)]
    path = tmp_path / "reordered.jtl"
    path.write_text(",".join(names) + "\n" + "\n".join(rows) + "\n")
    result = aggregate(path, T0)
    assert result.rows == 40
    assert list(result.frame["requests"]) == [20, 20]
    assert list(result.frame["failures_5xx"]) == [5, 5]
    # Columns the file lacks are NA, not zero.
    assert result.frame["latency_mean_ms"].isna().all() and result.frame["threads"].isna().all()
    assert result.frame["bytes"].isna().all()
    assert result.frame["success_processing_mean_ms"].isna().all()  # no Latency/Connect: no processing time
    assert_matches_reference(result.frame, path, T0, whole=result.whole)


def test_headerless_file_with_other_columns_needs_their_names(tmp_path: Path) -> None:
    path = tmp_path / "short.jtl"
    path.write_text("".join(f"{T0 + i},{i},true\n" for i in range(10)))
    with pytest.raises(JtlError, match="no header row and 3 fields"):
        aggregate(path, T0)
    result = aggregate(path, T0, columns=["timeStamp", "elapsed", "success"])
    assert result.rows == 10 and int(result.frame["requests"].iloc[0]) == 10


def test_quoted_fields_with_commas_quotes_and_newlines(tmp_path: Path) -> None:
    lines = [
        line(T0, 10, code="Non HTTP response code: java.net.ConnectException", success="false",
             message='"Non HTTP response message: Connection refused, port 1"', failure='"refused, twice"'),
        line(T0 + 10, 20, message='"a ""quoted"" message, with comma"'),
        line(T0 + 20, 30, success="false", code="200", failure='"assertion failed:\nexpected 2, got 3"'),
    ]
    path = write(tmp_path / "quoted.jtl", lines)
    result = aggregate(path, T0)
    assert result.rows == 3 and result.malformed == 0
    row = result.frame.iloc[0]
    assert (row["requests"], row["failures"], row["failures_other"]) == (3, 2, 2)
    assert row["elapsed_mean_ms"] == 20.0


def test_success_values_in_any_case(tmp_path: Path) -> None:
    path = write(tmp_path / "case.jtl", [line(T0, 1, success=s) for s in ("true", "TRUE", "True", "false", "FALSE")])
    frame = aggregate(path, T0).frame
    assert (frame["successes"].iloc[0], frame["failures"].iloc[0]) == (3, 2)


def test_truncated_last_line_is_dropped_and_counted(tmp_path: Path) -> None:
    lines = [line(T0 + i * 10, 5) for i in range(50)]
    # Cut inside the last field: the line still has 17 fields but its last value is incomplete.
    path = write(tmp_path / "cut.jtl", [*lines, line(T0 + 600, 7, connect=123)[:-2]], final_newline=False)
    result = aggregate(path, T0)
    assert (result.rows, result.malformed) == (50, 1)
    assert result.frame["connect_mean_ms"].iloc[0] == 1.0
    assert aggregate(path).rows == 50  # t0 from the file: same row rules


def test_malformed_lines_are_counted_and_fatal_only_above_the_share(tmp_path: Path) -> None:
    good = [line(T0 + i * 10, 5) for i in range(100)]
    bad = ["garbage", line(T0, 5)[:30], line(T0 + 5, 5).replace(f"{T0 + 5}", "not-a-time"),
           line(T0 + 6, 5).replace(",true,", ",maybe,")]
    path = write(tmp_path / "bad.jtl", good[:50] + bad + good[50:])
    result = aggregate(path, T0, max_malformed_share=0.05)
    assert (result.rows, result.malformed) == (100, 4)
    assert_matches_reference(result.frame, path, T0, whole=result.whole)
    with pytest.raises(JtlError, match=r"4 of 104 lines are malformed"):
        aggregate(path, T0, max_malformed_share=0.01)


def test_percentiles_are_exact_nearest_rank(tmp_path: Path) -> None:
    values = [random.Random(3).randint(0, 5000) for _ in range(997)]
    path = write(tmp_path / "p.jtl", [line(T0 + i, v) for i, v in enumerate(values)])
    row = aggregate(path, T0).frame.iloc[0]
    for p in (50, 90, 95, 99):
        assert row[f"elapsed_p{p}_ms"] == nearest_rank(values, p)
    assert row["elapsed_mean_ms"] == pytest.approx(sum(values) / len(values))
    assert row["elapsed_max_ms"] == max(values)


def test_fast_failures_are_left_out_of_the_successful_requests_figures(tmp_path: Path) -> None:
    """503s in 2 ms and refused connections in 1 ms pull the all-requests response time down; the
    successful-only figures leave them out. Processing time is Latency - Connect of the successful ones."""
    ok = [line(T0 + i, 100 + 10 * i, latency=90 + 10 * i, connect=30) for i in range(5)]  # 100 .. 140 ms
    unavailable = [line(T0 + 10 + i, 2, code="503", success="false", latency=2, connect=1) for i in range(4)]
    refused = [line(T0 + 20 + i, 1, code="Non HTTP response code: java.net.ConnectException", success="false",
                    latency=0, connect=1) for i in range(3)]
    result = aggregate(write(tmp_path / "mixed.jtl", ok + unavailable + refused), T0)
    row = result.frame.iloc[0]
    # all 12 sorted: 1 1 1 2 2 2 2 100 110 120 130 140; nearest rank 6 of 12 is 2
    assert (row["elapsed_mean_ms"], row["elapsed_p50_ms"], row["elapsed_p90_ms"]) == (611 / 12, 2.0, 130.0)
    # the 5 successful: 100 110 120 130 140; nearest rank 3 of 5 is 120
    assert (row["success_elapsed_mean_ms"], row["success_elapsed_p50_ms"], row["success_elapsed_p90_ms"],
            row["success_elapsed_p99_ms"], row["success_elapsed_max_ms"]) == (120.0, 120.0, 140.0, 140.0, 140.0)
    assert row["success_processing_mean_ms"] == 80.0  # Latency 90..130 (mean 110) - Connect 30
    assert result.whole["elapsed_p50_ms"] == 2.0 and result.whole["success_elapsed_p50_ms"] == 120.0
    assert (result.whole["requests"], result.whole["successes"]) == (12, 5)
    assert result.whole["success_processing_mean_ms"] == 80.0


def test_a_second_without_a_success_has_no_successful_response_time(tmp_path: Path) -> None:
    lines = [line(T0, 50), line(T0 + 1000, 3, code="503", success="false")]
    result = aggregate(write(tmp_path / "outage.jtl", lines), T0)
    assert list(result.frame["elapsed_mean_ms"]) == [50.0, 3.0]
    assert result.frame["success_elapsed_mean_ms"].iloc[0] == 50.0
    assert result.frame[["success_elapsed_mean_ms", "success_elapsed_p99_ms",
                         "success_processing_mean_ms"]].iloc[1].isna().all()
    only_failures = aggregate(write(tmp_path / "down.jtl", lines[1:]), T0)
    assert only_failures.whole["success_elapsed_p99_ms"] is None and only_failures.whole["successes"] == 0
    assert only_failures.whole["elapsed_p99_ms"] == 3.0


def test_whole_file_percentiles_are_exact_not_medians_of_seconds(tmp_path: Path) -> None:
    """Three seconds of 100 successes at 10 ms, the last with 5 of them at 1,000 ms: each second's p99 is
    10, 10 and 1,000 (median 10), but the p99 of the 300 requests is 1,000 (rank 297 is past the 295 fast ones)."""
    elapsed = [10] * 200 + [10] * 95 + [1000] * 5
    lines = [line(T0 + (i // 100) * 1000 + i % 100, value) for i, value in enumerate(elapsed)]
    lines += [line(T0 + 500, 1, code="503", success="false")] * 50  # fast failures: not in the successful figures
    result = aggregate(write(tmp_path / "tail.jtl", lines), T0)
    assert list(result.frame["success_elapsed_p99_ms"]) == [10.0, 10.0, 1000.0]
    assert result.whole["success_elapsed_p99_ms"] == 1000.0 == nearest_rank(elapsed, 99)
    assert result.whole["success_elapsed_p95_ms"] == 10.0
    assert result.whole["elapsed_p99_ms"] == nearest_rank(elapsed + [1] * 50, 99) == 1000.0
    assert result.whole["success_elapsed_mean_ms"] == pytest.approx(sum(elapsed) / 300)


def test_seconds_without_samples_are_rows_of_zero_requests(tmp_path: Path) -> None:
    path = write(tmp_path / "gap.jtl", [line(T0, 5), line(T0 + 3500, 7)])
    frame = aggregate(path, T0).frame
    assert list(frame["t"]) == [0, 1, 2, 3]
    assert list(frame["requests"]) == [1, 0, 0, 1]
    assert math.isnan(frame["elapsed_p99_ms"].iloc[1])


def test_threads_add_up_over_engines(tmp_path: Path) -> None:
    lines = [line(T0, 5, thread="10.0.0.1:1099-workers 1-1", threads=3),
             line(T0 + 1, 5, thread="10.0.0.1:1099-workers 1-2", threads=2),
             line(T0 + 2, 5, thread="10.0.0.2:1099-workers 1-1", threads=4),
             line(T0 + 1200, 5, thread="workers 1-1", threads=6)]
    frame = aggregate(write(tmp_path / "engines.jtl", lines), T0).frame
    assert list(frame["threads"]) == [7, 6]


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    for name, text in (("empty.jtl", ""), ("header.jtl", HEADER + "\n")):
        path = tmp_path / name
        path.write_text(text)
        result = aggregate(path, T0)
        assert (result.rows, result.malformed, len(result.frame)) == (0, 0, 0)
        assert tuple(result.frame.columns) == LOAD_SECOND_COLUMNS


def test_missing_required_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nosuccess.jtl"
    path.write_text("timeStamp,elapsed,label\n1,2,x\n")
    with pytest.raises(JtlError, match=r"\['success'\] missing"):
        aggregate(path)


def test_response_classes() -> None:
    assert [response_class(c) for c in ("200", "302", "404", "499", "500", "503", "Non HTTP response code: x", "")] \
        == [0, 0, 4, 4, 5, 5, 0, 0]


def test_column_values_read_from_arrow_buffers_at_any_offset() -> None:
    import pyarrow as pa

    for values in ([1, None, -3, 2**40, None, 6, 7, 8, 9, None, 11], [True, None, False, True] * 5):
        column = pa.array(values)
        fill = False if isinstance(values[0], bool) else 0
        for start in range(len(values)):
            for part in (column.slice(start), column.slice(start, (len(values) - start) // 2)):
                expected = [fill if value is None else value for value in part.to_pylist()]
                assert filled(part, fill).tolist() == expected
                assert valid(part).tolist() == [value is not None for value in part.to_pylist()]
    indices = pa.array(["a", None, "b", "a"]).dictionary_encode().indices.slice(1)
    assert (filled(indices, 0).tolist(), filled(indices, 0).dtype.name) == ([0, 1, 0], "int32")


def test_parallel_parts_give_the_same_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubexp.load import jtl

    monkeypatch.setattr(jtl, "PARALLEL_MIN_BYTES", 0)  # split even this small file
    path = random_jtl(tmp_path / "random.jtl", 20_000, seed=2)
    single = aggregate(path, T0, parts=1, block_size=16 << 10)
    for parts in (2, 3, 4):
        split = aggregate(path, T0, parts=parts, block_size=16 << 10)
        assert (split.rows, split.malformed) == (single.rows, single.malformed)
        pd.testing.assert_frame_equal(split.frame, single.frame)
    assert aggregate(path, parts=4).t0_ms == aggregate(path, parts=1).t0_ms
    assert aggregate(path, parts=3).last_end_ms == aggregate(path, parts=1).last_end_ms


def test_a_cut_never_falls_inside_a_quoted_newline(tmp_path: Path) -> None:
    # The middle record's failure message spans many lines that look like CSV (some with 17 fields, like a
    # stack trace with commas); the cut must skip them all.
    fake = "\n".join(f"{i},{i},{i},{i}" if i % 2 else "at org.x(A.java:1)" + ",x" * 16 for i in range(200))
    lines = [line(T0 + i, 5) for i in range(100)]
    lines.insert(50, line(T0 + 50, 6, success="false", failure=f'"{fake}"'))
    path = write(tmp_path / "multiline.jtl", lines)
    layout = layout_of(path, None)
    middle = record_ranges(path, layout, 2)
    assert len(middle) == 2
    text = path.read_bytes()
    cut = middle[1][0]
    assert text[cut - 1:cut] == b"\n" and text[cut:].startswith(f"{T0 + 50},5,".encode())
    result = aggregate(path, T0, parts=2)
    assert (result.rows, result.malformed) == (101, 0)


def test_collect_reads_back_what_the_load_step_kept_while_the_file_is_unchanged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubexp.load import jtl

    path = random_jtl(tmp_path / "kept.jtl", 5_000, seed=3)
    loaded = aggregate_and_keep(path)
    assert kept_path(path).exists() and loaded.t0_ms is not None and loaded.last_end_ms is not None
    fresh = aggregate(path, loaded.t0_ms, parts=1)
    with monkeypatch.context() as patch:  # collect of the unchanged file from the same t0: no parsing at all
        patch.setattr(jtl, "_read", lambda *args: pytest.fail("the JTL was parsed again"))
        again = aggregate(path, loaded.t0_ms)
    pd.testing.assert_frame_equal(again.frame, fresh.frame)
    assert (again.rows, again.malformed, again.last_end_ms) == (fresh.rows, fresh.malformed, fresh.last_end_ms)
    assert again.whole == fresh.whole and fresh.whole["successes"] > 0
    with path.open("a") as handle:
        handle.write("broken line\nanother broken line\n")
    assert aggregate(path, loaded.t0_ms).malformed == fresh.malformed + 2  # the file changed: parsed again
    aggregate_and_keep(path)  # never refuses; collect's own limit still applies to the kept counts
    with pytest.raises(JtlError, match="more than the allowed 0.0%"):
        aggregate(path, loaded.t0_ms, max_malformed_share=0.0)

"""Faults of a Prometheus API, served by a small local HTTP server, and settings/unit behaviour."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from kubexp.collect import prometheus, queries
from kubexp.collect.prometheus import (
    CollectOptions,
    PrometheusError,
    PrometheusInstance,
    PrometheusUnreachable,
)
from kubexp.platform.kubernetes.queries import KUBERNETES_QUERIES
from kubexp.platform.local.queries import LOCAL_QUERIES
from kubexp.processes import free_port
from kubexp.records import MetricSeries
from kubexp.suite import load_suite

T0 = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
FAST = CollectOptions(retries=3, backoff_s=0.01, timeout_s=2)


class FakePrometheus(BaseHTTPRequestHandler):
    """Answers by path: /ok/..., /malformed/..., /error/..., /html500/..., /busy/..., /vector/..."""

    requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
        FakePrometheus.requests.append((self.path, form, dict(self.headers)))
        mode = self.path.split("/")[1]
        if mode == "ok":
            start, end = float(form["start"][0]), float(form["end"][0])
            values = [[start + i, str(i)] for i in range(int(end - start) + 1)]
            body = {"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {"pod": "a"}, "values": values}]}}
            self.answer(200, json.dumps(body))
        elif mode == "empty":
            self.answer(200, json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}))
        elif mode == "malformed":
            self.answer(200, '{"status": "success", "data": {"resultType": "matr')
        elif mode == "badpoint":
            self.answer(200, json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {}, "values": [[1.0, "not a number"]]}]}}))
        elif mode == "error":
            self.answer(400, json.dumps({"status": "error", "errorType": "bad_data",
                                         "error": "1:5: parse error: unexpected <op:/>"}))
        elif mode == "html500":
            self.answer(500, "<html><body><h1>Internal proxy error</h1></body></html>", "text/html")
        elif mode == "busy":
            self.answer(503, "Service Unavailable", "text/plain")
        elif mode == "vector":
            self.answer(200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}))
        else:
            self.answer(404, "no such path", "text/plain")

    def answer(self, status: int, text: str, content_type: str = "application/json") -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's signature)
        pass


@pytest.fixture
def fake() -> Iterator[str]:
    FakePrometheus.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), FakePrometheus)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def run(url: str, mode: str, **instance: object) -> list[MetricSeries]:
    target = PrometheusInstance(name="fake", url=f"{url}/{mode}", **instance)  # type: ignore[arg-type]
    return prometheus.collect([target], {"cpu": "rate(x[5s])"}, T0, T0 + timedelta(seconds=30), T0, FAST)


def test_points_are_whole_seconds_from_t0_and_the_window_is_chunked(fake: str) -> None:
    options = CollectOptions(max_points=11)
    target = PrometheusInstance("fake", f"{fake}/ok")
    (series,) = prometheus.collect([target], {"cpu": "rate(x[5s])"}, T0 - timedelta(seconds=2.5),
                                   T0 + timedelta(seconds=29.9), T0, options)

    assert [t for t, _ in series.points] == list(range(-2, 30))
    sent = [(float(form["start"][0]), float(form["end"][0]), form["step"][0]) for _, form, _ in FakePrometheus.requests]
    base = T0.timestamp()
    assert [(round(s - base), round(e - base), step) for s, e, step in sent] == [
        (-2, 8, "1"), (9, 19, "1"), (20, 29, "1")]
    assert all(abs((s - base) - round(s - base)) < 1e-3 for s, _, _ in sent)  # aligned to t0, not to the clock
    assert FakePrometheus.requests[0][1]["query"] == ["rate(x[5s])"]


def test_malformed_json_names_query_and_instance(fake: str) -> None:
    with pytest.raises(PrometheusError, match=r"Prometheus 'fake' .*query 'cpu' failed with HTTP 200: malformed JSON"):
        run(fake, "malformed")
    with pytest.raises(PrometheusError, match=r"Prometheus 'fake' .*query 'cpu' answered a malformed point"):
        run(fake, "badpoint")


def test_http_error_body_is_quoted(fake: str) -> None:
    with pytest.raises(PrometheusError, match=r"query 'cpu' failed with HTTP 400: bad_data: 1:5: parse error"):
        run(fake, "error")
    with pytest.raises(PrometheusError, match=r"'fake' .*query 'cpu' failed with HTTP 500: <html><body><h1>Internal"):
        run(fake, "html500")
    assert len(FakePrometheus.requests) == 2  # a 4xx/500 answer is final: no retry


def test_non_matrix_answer_is_an_error(fake: str) -> None:
    with pytest.raises(PrometheusError, match="answered 'vector', not a range matrix"):
        run(fake, "vector")


def test_busy_prometheus_is_retried_then_unreachable(fake: str) -> None:
    with pytest.raises(PrometheusUnreachable, match=r"Prometheus 'fake' .* did not answer query 'cpu' after 3 tries "
                                                    r"\(HTTP 503: Service Unavailable\)"):
        run(fake, "busy")
    assert len(FakePrometheus.requests) == 3


def test_unreachable_prometheus_fails_after_bounded_retries(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "kubexp.collect.prometheus")
    with pytest.raises(PrometheusUnreachable, match=r"after 3 tries \(ConnectionError"):
        run(f"http://127.0.0.1:{free_port()}", "ok")
    tries = [r.getMessage() for r in caplog.records if "query 'cpu' try" in r.getMessage()]
    assert [m.split(" try ")[1][:3] for m in tries] == ["1/3", "2/3", "3/3"]


def test_empty_result_is_reported(fake: str) -> None:
    collected = prometheus.query_all([PrometheusInstance("fake", f"{fake}/empty")], {"cpu": "x"}, T0,
                                     T0 + timedelta(seconds=5), T0)
    assert collected.series == [] and collected.empty == ["cpu from prometheus:fake"]


def test_bearer_token_and_basic_auth_are_sent_but_never_shown(fake: str) -> None:
    run(fake, "ok", bearer_token="tok-123456")
    run(fake, "ok", username="user", password="pw-123456")
    headers = [h for _, _, h in FakePrometheus.requests]
    assert headers[0]["Authorization"] == "Bearer tok-123456"
    assert headers[1]["Authorization"].startswith("Basic ")
    shown = repr(PrometheusInstance("x", fake, username="user", password="pw-123456", bearer_token="tok-123456"))
    assert "pw-123456" not in shown and "tok-123456" not in shown
    with pytest.raises(PrometheusError, match="HTTP 400") as failure:
        run(fake, "error", bearer_token="tok-123456")
    assert "tok-123456" not in str(failure.value)


def test_check_ready_fails_clearly(fake: str) -> None:
    with pytest.raises(PrometheusUnreachable, match="after 1 tries"):
        prometheus.check_ready(PrometheusInstance("fake", f"{fake}/busy"))


def test_urls_with_credentials_and_missing_connections_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PrometheusError, match="must not contain credentials; put them in an Airflow connection"):
        PrometheusInstance.from_settings({"name": "a", "url": "http://u:p@prom:9090"}, "s.yaml: metrics.prometheus[0]")
    with pytest.raises(PrometheusError, match="is not an http"):
        PrometheusInstance.from_settings({"name": "a", "url": "prom:9090"})
    with pytest.raises(PrometheusError, match=r"connection 'kubexp_nope' cannot be read .*AIRFLOW_CONN_KUBEXP_NOPE"):
        PrometheusInstance.from_settings({"name": "a", "conn_id": "kubexp_nope"})
    monkeypatch.setenv("AIRFLOW_CONN_KUBEXP_PROM_PARTS", json.dumps(
        {"conn_type": "http", "host": "prom.example", "schema": "https", "port": 9443,
         "extra": {"bearer_token": "t-1234567", "verify": False}}))
    parts = PrometheusInstance.from_connection("parts", "kubexp_prom_parts")
    assert (parts.url, parts.bearer_token, parts.verify, parts.username) == (
        "https://prom.example:9443", "t-1234567", False, None)


SUITE = """
suite: collect-test
platform: {platform}
repetitions: 1
matrix: {{workers: [1]}}
kubernetes: {{namespace: shop}}
metrics:
  rate_window: 30s
  retries: 5
  max_series: 50
  queries:
    mine: rate(app_total{{namespace="$namespace"}}[$rate_window])
    etcd_has_leader: max(etcd_server_has_leader)
  prometheus:
    - {{name: one, url: "http://127.0.0.1:9999/"}}
    - {{name: two, url: "http://127.0.0.1:9998"}}
"""


def test_suite_queries_overlay_the_platform_defaults(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SUITE.format(platform="kubernetes"))
    suite = load_suite(path)

    chosen = prometheus.queries_for(suite)
    assert chosen["mine"] == 'rate(app_total{namespace="shop"}[30s])'
    assert chosen["etcd_has_leader"] == "max(etcd_server_has_leader)"
    assert 'namespace="shop"' in chosen["pod_cpu_cores"] and "[30s]" in chosen["pod_cpu_cores"]
    assert set(KUBERNETES_QUERIES) <= set(chosen)
    assert [(i.name, i.url) for i in prometheus.resolve_instances(suite)] == [
        ("one", "http://127.0.0.1:9999"), ("two", "http://127.0.0.1:9998")]
    options = prometheus.options_from_suite(suite)
    assert (options.retries, options.max_series, options.timeout_s) == (5, 50, 30.0)


def test_local_suite_defaults_and_unknown_placeholders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("suite: l\nplatform: local\nrepetitions: 1\nmatrix: {workers: [1]}\n")
    monkeypatch.setenv("KUBEXP_PROMETHEUS_URL", "http://127.0.0.1:19999")
    suite = load_suite(path)
    assert set(prometheus.queries_for(suite)) == set(LOCAL_QUERIES)
    assert "[5s]" in prometheus.queries_for(suite)["app_requests_per_second_by_code"]
    assert [(i.name, i.url) for i in prometheus.resolve_instances(suite)] == [("local", "http://127.0.0.1:19999")]

    path.write_text(path.read_text() + "metrics:\n  default_queries: false\n  queries: {x: 'rate(y[$window])'}\n")
    with pytest.raises(queries.QueryError, match=r"s.yaml: metrics.queries.x: placeholder 'window' is unknown"):
        prometheus.queries_for(load_suite(path))


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2024, 5, 1, 12, 0, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        prometheus.collect([PrometheusInstance("x", "http://127.0.0.1:1")], {"q": "up"}, naive, naive, naive)


def test_completeness_counts_seconds_in_the_half_open_window() -> None:
    series = [MetricSeries("prometheus:a", "q", {"pod": "p"}, [(-1, 1.0), (0, 1.0), (1, 0.0), (3, 2.0), (10, 1.0)]),
              MetricSeries("prometheus:a", "q", {"pod": "r"}, [])]
    shares = prometheus.completeness(series, 10)
    assert list(shares.values()) == [0.3, 0.0]
    assert str(next(iter(shares))) == 'q{pod="p"} from prometheus:a'
    assert prometheus.completeness_problems(shares, ["q"], 0.25) == [
        'required series q{pod="r"} from prometheus:a covers 0% of the seconds (< 25%)']
    with pytest.raises(ValueError, match="empty"):
        prometheus.completeness(series, 0)

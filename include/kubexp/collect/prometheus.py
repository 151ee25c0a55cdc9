"""Prometheus collector: named PromQL queries over an experiment's window, per second, from several instances.

Every query runs as `query_range` with step 1 s on a grid aligned to t0 (the load start), so each
point's t is a whole number of seconds from t0: the value Prometheus computes at instant t0 + t.
Windows longer than Prometheus' 11,000 points per series are split into chunks and stitched.

Missing data stays missing: a second without a sample is an absent point, never a zero (a failed
scrape leaves a staleness marker, so the series has no value until the next successful scrape).
NaN and +/-Inf values (0/0 of an idle histogram, a quantile in the +Inf bucket) are dropped as
well and counted per series; they lower that series' completeness like any other missing second.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

import requests

from kubexp import records
from kubexp.collect.queries import queries_for
from kubexp.records import Collected, MetricSeries, Window
from kubexp.settings import Ports

if TYPE_CHECKING:
    from kubexp.suite import Suite

__all__ = [
    "MAX_POINTS_PER_SERIES", "CollectOptions", "Collection", "IncompleteMetricsError", "PrometheusError",
    "PrometheusInstance", "PrometheusUnreachable", "SeriesKey", "SuitePrometheus", "check_completeness", "check_ready",
    "collect", "collect_for_suite", "completeness", "completeness_problems", "local_instance", "options_from_suite",
    "queries_for", "query_all", "resolve_instances", "series_key", "unscraped",
]

log = logging.getLogger(__name__)

MAX_POINTS_PER_SERIES = 11_000  # Prometheus rejects a query_range that would return more per series
_RETRY_STATUS = {429, 502, 503, 504}  # answers of a Prometheus that is (re)starting or behind a busy proxy


class PrometheusError(RuntimeError):
    """A query failed; the message names the instance, the query and what Prometheus answered."""


class PrometheusUnreachable(PrometheusError):
    """No answer from an instance after the bounded retries."""


class IncompleteMetricsError(RuntimeError):
    """Required series fall below the completeness threshold (the experiment's postcondition)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("metrics incomplete: " + "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class PrometheusInstance:
    """One Prometheus server. Credentials never appear in repr, logs or error messages."""

    name: str
    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    bearer_token: str | None = field(default=None, repr=False)
    verify: bool | str = True  # False, or a CA bundle path, for self-signed TLS

    @property
    def source(self) -> str:
        return f"prometheus:{self.name}"

    @property
    def label(self) -> str:
        return f"Prometheus {self.name!r} ({self.url})"

    def session(self) -> requests.Session:
        session = requests.Session()
        session.verify = self.verify
        if self.bearer_token:
            session.headers["Authorization"] = f"Bearer {self.bearer_token}"
        elif self.username is not None:
            session.auth = (self.username, self.password or "")
        return session

    @classmethod
    def from_connection(cls, name: str, conn_id: str) -> PrometheusInstance:
        """From an Airflow connection: host (a full URL, or host + schema + port), login/password for
        basic auth, or extra {"bearer_token": ...}; extra {"verify": false | "/path/ca.pem"}."""
        from kubexp import connections

        try:
            conn = connections.connection(conn_id)
        except Exception as exc:  # AirflowNotFoundException and secrets-backend errors alike
            raise PrometheusError(f"Prometheus {name!r}: Airflow connection {conn_id!r} cannot be read ({exc}); "
                                  f"define it (e.g. env AIRFLOW_CONN_{conn_id.upper()})") from None
        host = (conn.host or "").strip()
        if not host:
            raise PrometheusError(f"Prometheus {name!r}: Airflow connection {conn_id!r} has no host; "
                                  f"set host to the URL, e.g. https://prometheus.example:9090")
        if "://" not in host:
            scheme = conn.schema if conn.schema in ("http", "https") else "http"
            host = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
        extra = conn.extra_dejson
        token = extra.get("bearer_token") or extra.get("token")
        return cls(name=name, url=_clean_url(host, f"connection {conn_id!r}"), username=conn.login or None,
                   password=conn.password or None, bearer_token=token or None, verify=extra.get("verify", True))

    @classmethod
    def from_settings(cls, entry: Mapping[str, Any], where: str = "metrics.prometheus") -> PrometheusInstance:
        """From a suite entry {name, url} or {name, conn_id}."""
        name = str(entry.get("name") or "")
        if not name:
            raise PrometheusError(f"{where}: each Prometheus instance needs a name")
        if entry.get("conn_id"):
            return cls.from_connection(name, str(entry["conn_id"]))
        if not entry.get("url"):
            raise PrometheusError(f"{where}: Prometheus {name!r} needs url or conn_id")
        return cls(name=name, url=_clean_url(str(entry["url"]), where))


def _clean_url(url: str, where: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PrometheusError(f"{where}: {parts.scheme or 'no scheme'}://{parts.hostname or '?'} is not an "
                              f"http(s) URL of a Prometheus server")
    if parts.username or parts.password:
        raise PrometheusError(f"{where}: the Prometheus URL must not contain credentials; "
                              f"put them in an Airflow connection and use conn_id")
    return url.rstrip("/")


def local_instance() -> PrometheusInstance:
    """The Prometheus of `kubexp services up` (KUBEXP_PROMETHEUS_URL, else 127.0.0.1:KUBEXP_PROMETHEUS_PORT)."""
    url = os.environ.get("KUBEXP_PROMETHEUS_URL") or f"http://127.0.0.1:{Ports.from_env().prometheus}"
    return PrometheusInstance("local", _clean_url(url, "KUBEXP_PROMETHEUS_URL"))


def resolve_instances(suite: Suite) -> list[PrometheusInstance]:
    """The suite's `metrics.prometheus` instances; without any, the local Prometheus."""
    entries = suite.metrics.prometheus
    instances = [PrometheusInstance.from_settings(entry, f"{suite.path}: metrics.prometheus[{i}]")
                 for i, entry in enumerate(entries)] or [local_instance()]
    names = [instance.name for instance in instances]
    doubled = sorted({name for name in names if names.count(name) > 1})
    if doubled:
        raise PrometheusError(f"{suite.path}: metrics.prometheus: names must be unique; {', '.join(doubled)} repeat")
    return instances


@dataclass(frozen=True)
class CollectOptions:
    retries: int = 3  # tries per request when the instance does not answer (connection error, timeout, 5xx)
    backoff_s: float = 1.0  # wait before the 2nd try, doubled before each further one
    timeout_s: float = 30.0
    max_series: int = 1000  # per query and instance; more are dropped with a warning
    max_points: int = MAX_POINTS_PER_SERIES


def options_from_suite(suite: Suite) -> CollectOptions:
    """`metrics.retries`, `backoff_s`, `timeout_s` and `max_series` of a suite (checked by its schema), defaults
    for the rest."""
    metrics = suite.metrics
    return CollectOptions(retries=metrics.retries, backoff_s=float(metrics.backoff_s),
                          timeout_s=float(metrics.timeout_s), max_series=metrics.max_series)


class SeriesKey(NamedTuple):
    """Identifies one series: the query's name, its instance (source) and its labels as PromQL text."""

    name: str
    source: str
    labels: str

    def __str__(self) -> str:
        return f"{self.name}{self.labels} from {self.source}"


def series_key(series: MetricSeries) -> SeriesKey:
    labels = ", ".join(f'{key}="{value}"' for key, value in sorted(series.labels.items()))
    return SeriesKey(series.name, series.source, "{" + labels + "}")


@dataclass
class Collection:
    """What `query_all` gathered, with the data it had to leave out."""

    series: list[MetricSeries]
    non_finite: dict[SeriesKey, int] = field(default_factory=dict)  # NaN/Inf values dropped per series
    capped: dict[str, int] = field(default_factory=dict)  # "query from source" -> series returned before the cap
    empty: list[str] = field(default_factory=list)  # "query from source" that returned no series


def query_all(instances: Sequence[PrometheusInstance], queries: Mapping[str, str], start: datetime, end: datetime,
              t0: datetime, options: CollectOptions | None = None) -> Collection:
    """Run every query on every instance over [start, end]; points at whole seconds t from t0."""
    if any(moment.tzinfo is None for moment in (start, end, t0)):
        raise ValueError("start, end and t0 must be timezone-aware datetimes (UTC)")
    options = options or CollectOptions()
    first = math.ceil(round((start - t0).total_seconds(), 6))
    last = math.floor(round((end - t0).total_seconds(), 6))
    result = Collection(series=[])
    if last < first:
        return result
    base = t0.timestamp()
    for instance in instances:
        with instance.session() as session:
            for name, promql in queries.items():
                raw = _fetch_series(session, instance, name, promql, base, first, last, options)
                _keep(result, instance, name, raw, base, options)
    return result


def collect(instances: Sequence[PrometheusInstance], queries: Mapping[str, str], start: datetime, end: datetime,
            t0: datetime, options: CollectOptions | None = None) -> list[MetricSeries]:
    """Every query on every instance over [start, end], as MetricSeries with t relative to t0."""
    return query_all(instances, queries, start, end, t0, options).series


def collect_for_suite(suite: Suite, start: datetime, end: datetime, t0: datetime) -> Collection:
    """The suite's queries on the suite's instances, with the suite's options."""
    return query_all(resolve_instances(suite), queries_for(suite), start, end, t0, options_from_suite(suite))


@dataclass(frozen=True)
class SuitePrometheus:
    """The suite's queries on the suite's instances over the load, [t0, end], as a collector."""

    suite: Suite
    name: str = "Prometheus"

    def collect(self, window: Window) -> Collected:
        metrics = collect_for_suite(self.suite, window.t0, window.end, window.t0)
        return Collected(series=metrics.series, facts={
            "empty_queries": metrics.empty, "capped_queries": metrics.capped,
            "non_finite_points": {str(key): count for key, count in metrics.non_finite.items()}})


def _fetch_series(session: requests.Session, instance: PrometheusInstance, name: str, promql: str, base: float,
                  first: int, last: int, options: CollectOptions) -> dict[tuple[tuple[str, str], ...], list[Any]]:
    """Labels -> raw [timestamp, "value"] pairs of all chunks of one query."""
    merged: dict[tuple[tuple[str, str], ...], list[Any]] = {}
    for chunk_first in range(first, last + 1, options.max_points):
        chunk_last = min(last, chunk_first + options.max_points - 1)
        form = {"query": promql, "start": f"{base + chunk_first:.3f}", "end": f"{base + chunk_last:.3f}", "step": "1"}
        body = _request(session, instance, name, "/api/v1/query_range", form, options)
        for item in _matrix(body, instance, name):
            merged.setdefault(tuple(sorted(item["metric"].items())), []).extend(item["values"])
    return merged


def _keep(result: Collection, instance: PrometheusInstance, name: str,
          raw: dict[tuple[tuple[str, str], ...], list[Any]], base: float, options: CollectOptions) -> None:
    where = f"{name} from {instance.source}"
    if not raw:
        result.empty.append(where)
        return
    label_sets = sorted(raw)
    if len(label_sets) > options.max_series:
        log.warning("%s: query %r returned %d series; kept the first %d by labels. Aggregate it (sum by (...)) "
                    "or raise metrics.max_series", instance.label, name, len(label_sets), options.max_series)
        result.capped[where] = len(label_sets)
        label_sets = label_sets[:options.max_series]
    dropped_total = 0
    for labels in label_sets:
        points: dict[int, float] = {}
        dropped = 0
        for stamp, text in raw[labels]:
            try:
                at, value = float(stamp), float(text)
            except (TypeError, ValueError):
                raise PrometheusError(f"{instance.label}: query {name!r} answered a malformed point "
                                      f"{_snippet(str([stamp, text]))}") from None
            if math.isfinite(value):
                points[round(at - base)] = value
            else:
                dropped += 1
        series = MetricSeries(instance.source, name, dict(labels), sorted(points.items()))
        if dropped:
            result.non_finite[series_key(series)] = dropped
            dropped_total += dropped
        result.series.append(series)
    if dropped_total:
        log.info("%s: query %r: %d NaN/Inf values dropped (missing seconds)", instance.label, name, dropped_total)


def _request(session: requests.Session, instance: PrometheusInstance, name: str, path: str, form: Mapping[str, str],
             options: CollectOptions) -> Any:
    """POST one API request with bounded retries; the decoded JSON of a successful answer."""
    url = instance.url + path
    problem = ""
    for attempt in range(1, options.retries + 1):
        if attempt > 1:
            time.sleep(options.backoff_s * 2 ** (attempt - 2))
        try:
            response = session.post(url, data=form, timeout=options.timeout_s)
        except requests.RequestException as exc:
            problem = f"{type(exc).__name__}: {exc}"
            log.warning("%s: query %r try %d/%d: %s", instance.label, name, attempt, options.retries, problem)
            continue
        if response.status_code in _RETRY_STATUS:
            problem = f"HTTP {response.status_code}: {_snippet(response.text)}"
            log.warning("%s: query %r try %d/%d: %s", instance.label, name, attempt, options.retries, problem)
            continue
        return _decode(response, instance, name)
    raise PrometheusUnreachable(
        f"{instance.label} did not answer query {name!r} after {options.retries} tries ({problem}); check that it "
        f"runs and is reachable from this host (`kubexp services up` starts the local one)"
    )


def _decode(response: requests.Response, instance: PrometheusInstance, name: str) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
        if isinstance(body, dict) and "error" in body:
            detail = f"{body.get('errorType', 'error')}: {body['error']}"
        elif response.status_code == 200:
            detail = f"malformed JSON: {_snippet(response.text)}"
        else:
            detail = _snippet(response.text)
        hint = " (check the connection's credentials)" if response.status_code in (401, 403) else ""
        raise PrometheusError(f"{instance.label}: query {name!r} failed with HTTP {response.status_code}{hint}: "
                              f"{detail}")
    for warning in body.get("warnings") or []:
        log.warning("%s: query %r: Prometheus warns: %s", instance.label, name, warning)
    return body


def _matrix(body: Any, instance: PrometheusInstance, name: str) -> list[dict[str, Any]]:
    data = body.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
        kind = data.get("resultType") if isinstance(data, dict) else type(data).__name__
        raise PrometheusError(f"{instance.label}: query {name!r} answered {kind!r}, not a range matrix; "
                              f"a query_range answer must be a matrix")
    for item in data["result"]:
        if not _is_series(item):
            raise PrometheusError(f"{instance.label}: query {name!r} answered a malformed series: "
                                  f"{_snippet(str(item))}")
    return list(data["result"])


def _is_series(item: Any) -> bool:
    if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
        return False
    values = item.get("values")
    return isinstance(values, list) and all(isinstance(v, list) and len(v) == 2 for v in values)


def _snippet(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def unscraped(instance: PrometheusInstance, addresses: Iterable[str], since: datetime,
              timeout_s: float = 5.0) -> list[str]:
    """The addresses (host:port) among the instance's targets that it has not scraped successfully since `since`.

    A target that Prometheus has not yet discovered counts as not scraped: its series would begin late
    and leave the first seconds of a window without a point."""
    try:
        with instance.session() as session:
            response = session.get(instance.url + "/api/v1/targets", params={"state": "active"}, timeout=timeout_s)
    except requests.RequestException as exc:
        raise PrometheusUnreachable(f"{instance.label} did not list its targets ({type(exc).__name__}: {exc}); "
                                    f"check that it runs (`kubexp services up` starts the local one)") from None
    body = _decode(response, instance, "targets")
    last: dict[str, datetime] = {}
    for target in (body.get("data") or {}).get("activeTargets") or []:
        address = (target.get("discoveredLabels") or {}).get("__address__")
        if address and target.get("health") == "up":
            last[address] = datetime.fromisoformat(str(target.get("lastScrape")))
    return [address for address in addresses if address not in last or last[address] < since]


def check_ready(instance: PrometheusInstance, timeout_s: float = 5.0) -> None:
    """Raise PrometheusError unless the instance answers a trivial query (with its credentials)."""
    with instance.session() as session:
        _request(session, instance, "vector(1)", "/api/v1/query", {"query": "vector(1)"},
                 CollectOptions(retries=1, timeout_s=timeout_s))


# -- completeness ---------------------------------------------------------------------------------


def completeness(series: Iterable[MetricSeries], duration_s: int) -> dict[SeriesKey, float]:
    """Per series, its completeness over the load's seconds [0, duration_s) (kubexp.records.completeness, the
    rule the store applies too)."""
    return {series_key(one): records.completeness(one, duration_s) for one in series}


def completeness_problems(shares: Mapping[SeriesKey, float], required: Iterable[str], minimum: float) -> list[str]:
    """Each required query without any series, and each of its series below `minimum`, named."""
    problems = []
    for name in required:
        mine = {key: share for key, share in shares.items() if key.name == name}
        if not mine:
            problems.append(f"required metric {name!r} returned no series")
        problems += [f"required series {key} covers {share:.0%} of the seconds (< {minimum:.0%})"
                     for key, share in sorted(mine.items()) if share < minimum]
    return problems


def check_completeness(series: Iterable[MetricSeries], required: Iterable[str], duration_s: int,
                       minimum: float = 0.9) -> dict[SeriesKey, float]:
    """The postcondition: raise IncompleteMetricsError naming every required series below `minimum`."""
    shares = completeness(series, duration_s)
    problems = completeness_problems(shares, required, minimum)
    if problems:
        raise IncompleteMetricsError(problems)
    return shares

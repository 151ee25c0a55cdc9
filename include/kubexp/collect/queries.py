"""The named PromQL queries an experiment collects: its platform's defaults (`Platform.default_queries`,
`Platform.rate_window`) and a suite's own.

Queries are templates: `$namespace` (the app's namespace, from the suite's `kubernetes.namespace`)
and `$rate_window` (the range of every rate(), `metrics.rate_window`) are filled in per suite.
A rate window must hold at least two scrapes: 5 s for the local Prometheus (1 s scrapes); for a
cluster, at least twice its scrape interval (default 1m, typical of a Prometheus Operator).

Means from histograms are sum/count (etcd's smallest fsync bucket is 1 ms, so quantiles of fast
disks say little); a second without observations gives 0/0 = NaN, which the collector drops.
"""

from __future__ import annotations

from collections.abc import Mapping
from string import Template
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubexp.suite import Suite

DEFAULT_NAMESPACE = "kubexp"  # kubexp.platform.kubernetes.manifests' default


def histogram_mean(metric: str, by: str = "", selector: str = "") -> str:
    """sum(rate(x_sum)) / sum(rate(x_count)): the mean of a histogram's observations per window."""
    group = f" by ({by})" if by else ""
    return (f"sum{group} (rate({metric}_sum{selector}[$rate_window])) / "
            f"sum{group} (rate({metric}_count{selector}[$rate_window]))")


ETCD_QUERIES: dict[str, str] = {
    "etcd_wal_fsync_mean_seconds": histogram_mean("etcd_disk_wal_fsync_duration_seconds", by="instance"),
    "etcd_backend_commit_mean_seconds": histogram_mean("etcd_disk_backend_commit_duration_seconds", by="instance"),
    "etcd_leader_changes_total": "sum by (instance) (etcd_server_leader_changes_seen_total)",
    "etcd_has_leader": "max by (instance) (etcd_server_has_leader)",
    "etcd_slow_applies_total": "sum by (instance) (etcd_server_slow_apply_total)",
}

class QueryError(ValueError):
    """A query template that cannot be filled in; names the suite file and the query."""


def render(queries: Mapping[str, str], variables: Mapping[str, str], where: str = "metrics.queries") -> dict[str, str]:
    """Fill `$name` placeholders; an unknown placeholder is an error naming the query."""
    filled = {}
    for name, template in queries.items():
        try:
            filled[name] = Template(template).substitute(variables)
        except (KeyError, ValueError) as exc:
            raise QueryError(
                f"{where}.{name}: placeholder {exc} is unknown or malformed; known: "
                f"{', '.join('$' + key for key in sorted(variables))} (write $$ for a literal $)"
            ) from None
    return filled


def _templates(suite: Suite) -> dict[str, str]:
    from kubexp import platform

    metrics = suite.metrics
    chosen = dict(platform.kind(suite.platform).default_queries) if metrics.default_queries else {}
    chosen.update(metrics.queries)
    return chosen


def query_names(suite: Suite) -> list[str]:
    """The names of the queries the suite collects (the platform's defaults and its own), sorted."""
    return sorted(_templates(suite))


def queries_for(suite: Suite) -> dict[str, str]:
    """The platform's defaults (unless `metrics.default_queries: false`) overlaid with `metrics.queries`."""
    from kubexp import platform

    kind = platform.kind(suite.platform)
    chosen = _templates(suite)
    variables = {
        "namespace": str(suite.kubernetes.get("namespace") or DEFAULT_NAMESPACE),
        "rate_window": suite.metrics.rate_window or kind.rate_window,
    }
    return render(chosen, variables, where=f"{suite.path}: metrics.queries")


def required_for(suite: Suite) -> list[str]:
    """`metrics.required`, else the platform's required_queries (none with `metrics.default_queries: false`)."""
    from kubexp import platform

    metrics = suite.metrics
    if metrics.required is not None:
        return list(metrics.required)
    return list(platform.kind(suite.platform).required_queries) if metrics.default_queries else []

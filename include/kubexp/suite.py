"""Suite files: a parameter matrix, repetitions and collection settings, validated by one JSON Schema.

A suite's scenarios are the cartesian product of its matrix, every parameter completed from
`defaults` and then from the framework defaults. A scenario's id is a hash of all its
parameters, so loading a suite twice or adding matrix values never duplicates a scenario.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from kubexp.platform import PLATFORMS
from kubexp.settings import SUITES_DIR


class SuiteError(ValueError):
    """A suite file that cannot be used; the message names the file, the key path and what is allowed."""


# One JSON Schema per scenario parameter; "default" is the value a suite gets when it leaves it out.
# pods_max has no fixed default: it follows pods (no autoscaling) unless given.
PARAMETERS: dict[str, dict[str, Any]] = {
    "pods": {"type": "integer", "minimum": 1, "default": 1, "description": "initial app replicas"},
    "pods_max": {"type": "integer", "minimum": 1, "description": "HPA upper bound; equal to pods = no autoscaling"},
    "workers": {"type": "integer", "minimum": 1, "default": 10, "description": "closed-loop load threads in total"},
    "think_time_ms": {"type": "number", "minimum": 0, "default": 20, "description": "mean Poisson think time"},
    "duration_s": {"type": "integer", "minimum": 1, "default": 60, "description": "load duration"},
    "mesh": {"enum": ["native", "istio"], "default": "native", "description": "service routing"},
    "etcd_storage": {"enum": ["ramdisk", "disk"], "default": "ramdisk", "description": "where etcd keeps its data"},
    "memory_limit_mib": {"type": "integer", "minimum": 1, "default": 64, "description": "per-replica memory limit"},
    "cpu_limit_millicores": {"type": "integer", "minimum": 1, "default": 200, "description": "per-replica CPU limit"},
    "connect_timeout_ms": {"type": "integer", "minimum": 0, "default": 2000,
                           "description": "load connect timeout; 0 = none"},
    "response_timeout_ms": {"type": "integer", "minimum": 0, "default": 10000,
                            "description": "load response timeout; 0 = none (the paper's t_time-out = infinity)"},
    "etcd_fsync_delay_ms": {"type": "number", "minimum": 0, "default": 0,
                            "description": "extra delay per etcd fsync on the disk (emulates a slow network "
                                           "disk); a RAM disk ignores it"},
    "arrival_rate_per_s": {"type": ["number", "null"], "exclusiveMinimum": 0, "default": None,
                           "description": "open-loop arrival rate; null = closed loop"},
}
PARAMETER_DEFAULTS: dict[str, Any] = {name: spec.get("default") for name, spec in PARAMETERS.items()}
# Failed attempts after which an experiment is abandoned (suite key max_attempts): no run selects it again.
DEFAULT_MAX_ATTEMPTS = 3


def _param_schema(name: str) -> dict[str, Any]:
    return {key: value for key, value in PARAMETERS[name].items() if key != "default"}


_DEFAULTS_SCHEMA = {
    "type": "object",
    "properties": {name: _param_schema(name) for name in PARAMETERS},
    "additionalProperties": False,
}
_MATRIX_SCHEMA = {
    "type": "object",
    "properties": {
        name: {"type": "array", "minItems": 1, "uniqueItems": True, "items": _param_schema(name)}
        for name in PARAMETERS
    },
    "additionalProperties": False,
}
# Per-experiment figures an SLO (suite key `slo`) may bound; kubexp.analysis.slo computes them from the store.
SLO_FIGURES: dict[str, str] = {
    "successes_per_s_median": "median successful responses/s over the steady-state window",
    "elapsed_p99_ms": "p99 response time (ms) of the successful requests, exact over every one of the experiment's "
                      "load (from the raw JTL at collect; the steady-state window does not apply)",
    "failure_share": "failed requests / requests in the steady-state window",
    "oom_kills": "OOM kills during the experiment (platform events OOMKilled, OOMKilling, SystemOOM)",
    "series_mean": "mean of a collected PromQL series (metrics query named by `query`) over the steady-state window",
}
_PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"  # 1-65535
_HOST_PORT = {"type": "string", "pattern": rf"^[^\s:]+:{_PORT}$"}

# Sections load, metrics and analysis are closed: a misspelt key is an error. The platform sections
# (local, kubernetes) are checked key by key by their platform's settings (kubexp suite validate runs
# those checks too); their best-known keys are typed here. A "default" of a load or metrics key is what
# its typed section (LoadSection, MetricsSection) holds when the file leaves the key out; a key without
# one is None then, and decided where it is read (the load profile's, the platform's).
SUITE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "kubexp suite",
    "type": "object",
    "required": ["suite", "platform", "repetitions", "matrix"],
    "additionalProperties": False,
    "properties": {
        "suite": {"type": "string", "pattern": "^[a-z0-9-]+$", "maxLength": 200},
        "description": {"type": "string"},
        "platform": {"enum": list(PLATFORMS)},
        "cluster": {"type": "string", "pattern": "^[A-Za-z0-9._-]+$"},
        "repetitions": {"type": "integer", "minimum": 1},
        "seed": {"type": "integer"},
        "allow_dirty": {"type": "boolean"},
        "max_attempts": {"type": "integer", "minimum": 1},
        "defaults": _DEFAULTS_SCHEMA,
        "matrix": _MATRIX_SCHEMA,
        "load": {
            "type": "object",
            "properties": {
                "profile": {"enum": ["kubexp", "paper"], "default": "kubexp"},
                "settle_s": {"type": "integer", "minimum": 0},
                "servers": {"oneOf": [{"type": "integer", "minimum": 1},
                                      {"type": "array", "minItems": 1, "items": _HOST_PORT}], "default": 1},
                "plan": {"type": "string"},
                "sample_sender_mode": {"type": "string", "default": "StrippedBatch"},
                "results_dir": {"type": "string"},
                "request_path": {"type": "string", "pattern": "^/"},
                "ssh_conn_ids": {"type": "array", "items": {"type": "string"}, "default": []},
                "region": {"enum": ["overload", "underload"]},
                "expected_response_time_ms": {"type": "number", "exclusiveMinimum": 0},
                "pod_rate_per_s": {"type": "number", "exclusiveMinimum": 0},
                "generator_rate_per_s": {"type": "number", "exclusiveMinimum": 0},
                "max_malformed_share": {"type": "number", "minimum": 0, "maximum": 1,
                                        "default": 0.01},
                "refuse_saturated_generator": {"type": "boolean", "default": False},
                "max_connection_failure_share": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.1},
            },
            "additionalProperties": False,
        },
        "metrics": {
            "type": "object",
            "properties": {
                "prometheus": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}, "url": {"type": "string"},
                                       "conn_id": {"type": "string"}},
                        "oneOf": [{"required": ["url"]}, {"required": ["conn_id"]}],
                        "additionalProperties": False,
                    },
                    "default": [],
                },
                "queries": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1},
                            "default": {}},
                "required": {"type": "array", "items": {"type": "string"}},
                "completeness_min": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.9},
                "default_queries": {"type": "boolean", "default": True},
                "rate_window": {"type": "string", "minLength": 1},
                "retries": {"type": "integer", "minimum": 1, "default": 3},
                "backoff_s": {"type": "number", "minimum": 0, "default": 1.0},
                "timeout_s": {"type": "number", "exclusiveMinimum": 0, "default": 30.0},
                "max_series": {"type": "integer", "minimum": 1, "default": 1000},
                "etcd_logs": {"type": "array", "items": {"type": "object"}},
            },
            "additionalProperties": False,
        },
        "local": {
            "type": "object",
            "properties": {"health_check_interval_s": {"type": "number", "exclusiveMinimum": 0}},
        },
        "kubernetes": {
            "type": "object",
            "properties": {
                "conn_id": {"type": "string"},
                "namespace": {"type": "string"},
                "openstack_cloud": {"type": "string"},
                "etcd": {"type": "object"},
                "istio": {"type": "object"},
            },
        },
        "slo": {
            "type": "object",
            "propertyNames": {"pattern": "^[A-Za-z0-9_.-]+$", "maxLength": 100},
            "additionalProperties": {
                "type": "object",
                "required": ["figure"],
                "properties": {
                    "figure": {"enum": list(SLO_FIGURES)},
                    "query": {"type": "string", "minLength": 1},
                    "min": {"type": "number"},
                    "max": {"type": "number"},
                    "description": {"type": "string"},
                },
                "anyOf": [{"required": ["min"]}, {"required": ["max"]}],
                "additionalProperties": False,
            },
        },
        "analysis": {
            "type": "object",
            "properties": {
                "warmup_s": {"type": "integer", "minimum": 0},
                "cooldown_s": {"type": "integer", "minimum": 0},
                "min_group_size": {"type": "integer", "minimum": 1},
                "target_relative_ci_width": {"type": "number", "exclusiveMinimum": 0},
                "confidence": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                "alpha": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            },
            "additionalProperties": False,
        },
    },
}


def _default(section: str, key: str) -> Any:
    """The schema's default of one key of a section (None when it has none)."""
    return copy.deepcopy(SUITE_SCHEMA["properties"][section]["properties"][key].get("default"))


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class LoadSection:
    """The suite's `load:` section, typed; validated by `check_section("load", ...)`, defaults from SUITE_SCHEMA."""

    profile: str = _default("load", "profile")
    settle_s: int | None = None  # None: the profile's
    servers: int | tuple[str, ...] = _default("load", "servers")  # local JMeter servers, or remote host:port
    plan: str | None = None  # None: the profile's (open-loop.jmx for an arrival rate)
    sample_sender_mode: str = _default("load", "sample_sender_mode")
    results_dir: str | None = None  # None: kubexp.load.ramdisk.results_root's folder in /dev/shm
    request_path: str | None = None  # None: the profile's
    ssh_conn_ids: tuple[str, ...] = ()
    region: str | None = None
    expected_response_time_ms: float | None = None
    pod_rate_per_s: float | None = None
    generator_rate_per_s: float | None = None
    max_malformed_share: float = _default("load", "max_malformed_share")
    refuse_saturated_generator: bool = _default("load", "refuse_saturated_generator")
    max_connection_failure_share: float = _default("load", "max_connection_failure_share")
    given: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the keys as the file sets them

    @property
    def engines(self) -> int:
        """How many JMeter servers send the load."""
        return self.servers if isinstance(self.servers, int) else len(self.servers)


@dataclass(frozen=True)
class MetricsSection:
    """The suite's `metrics:` section, typed; validated by `check_section("metrics", ...)`, defaults from
    SUITE_SCHEMA."""

    prometheus: tuple[Mapping[str, Any], ...] = ()  # none: the local Prometheus
    queries: Mapping[str, str] = dataclasses.field(default_factory=dict)
    required: tuple[str, ...] | None = None  # None: the platform's required_queries
    completeness_min: float = _default("metrics", "completeness_min")
    default_queries: bool = _default("metrics", "default_queries")
    rate_window: str | None = None  # None: the platform's
    retries: int = _default("metrics", "retries")
    backoff_s: float = _default("metrics", "backoff_s")
    timeout_s: float = _default("metrics", "timeout_s")
    max_series: int = _default("metrics", "max_series")
    etcd_logs: tuple[Mapping[str, Any], ...] | None = None  # None: one per kubernetes.etcd.members entry
    given: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the keys as the file sets them


SECTIONS: dict[str, type[LoadSection] | type[MetricsSection]] = {"load": LoadSection, "metrics": MetricsSection}


def typed_section(name: str, data: Mapping[str, Any], origin: str) -> Any:
    """A typed section (SECTIONS) from its mapping, after its validator (check_section) accepted it."""
    check_section(name, data, origin)
    return SECTIONS[name](**{key: _frozen(value) for key, value in data.items()}, given=dict(data))


# What a run may override from the trigger form (recorded in its attempt's provenance): how strictly
# its data are checked and how hard collection retries. What runs (plan), where the load comes from
# and goes (servers, hosts) and where data are read or written (Prometheus, results_dir) come from
# the suite file only.
OVERRIDABLE: dict[str, tuple[str, ...]] = {
    "load": ("max_malformed_share", "max_connection_failure_share", "refuse_saturated_generator"),
    "metrics": ("required", "completeness_min", "retries", "backoff_s", "timeout_s", "max_series"),
}


def overridable() -> list[str]:
    """The keys a run may override, as `allow_dirty` and `section.key`."""
    return ["allow_dirty", *(f"{section}.{key}" for section, keys in OVERRIDABLE.items() for key in keys)]


def overrides_schema() -> dict[str, Any]:
    """JSON Schema of a run's overrides: allow_dirty and the OVERRIDABLE keys with their suite schema."""
    properties: dict[str, Any] = {"allow_dirty": copy.deepcopy(SUITE_SCHEMA["properties"]["allow_dirty"])}
    for section, keys in OVERRIDABLE.items():
        allowed = SUITE_SCHEMA["properties"][section]["properties"]
        properties[section] = {"type": "object", "additionalProperties": False,
                               "properties": {key: {name: value for name, value in copy.deepcopy(allowed[key]).items()
                                                    if name != "default"} for key in keys}}
    return {"type": "object", "properties": properties, "additionalProperties": False}


def scenario_params_schema() -> dict[str, Any]:
    """JSON Schema of one scenario's parameters, with the framework defaults (for Airflow trigger forms)."""
    return {
        "type": "object",
        "properties": copy.deepcopy(PARAMETERS),
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class Scenario:
    id: str  # stable 16-hex hash of the normalised params (sorted JSON)
    index: int  # position in the matrix's cartesian order (0-based)
    params: dict[str, Any]  # ALL parameters, defaults applied


@dataclass(frozen=True)
class Suite:
    name: str
    platform: str
    cluster: str
    repetitions: int
    seed: int
    description: str
    allow_dirty: bool
    path: Path
    defaults: dict[str, Any]
    matrix: dict[str, list[Any]]
    load: LoadSection
    metrics: MetricsSection
    local: dict[str, Any]
    kubernetes: dict[str, Any]
    analysis: dict[str, Any]
    slo: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    def scenarios(self) -> list[Scenario]:
        """Every scenario of the matrix in cartesian order (first matrix key varies slowest)."""
        names = list(self.matrix)
        result = []
        for index, values in enumerate(itertools.product(*(self.matrix[name] for name in names))):
            params = {**PARAMETER_DEFAULTS, **self.defaults, **dict(zip(names, values, strict=True))}
            if params.get("pods_max") is None:
                params["pods_max"] = params["pods"]
            params = normalise_params(params)
            result.append(Scenario(id=scenario_id(params), index=index, params=params))
        return result

    @property
    def warmup_s(self) -> int:
        return int(self.analysis.get("warmup_s", 0))

    @property
    def cooldown_s(self) -> int:
        return int(self.analysis.get("cooldown_s", 0))


def normalise_params(params: dict[str, Any]) -> dict[str, Any]:
    """Integral floats become ints, so 20 and 20.0 give the same scenario id."""
    return {key: int(value) if isinstance(value, float) and value.is_integer() else value
            for key, value in sorted(params.items())}


def scenario_id(params: dict[str, Any]) -> str:
    """The stable id of a parameter set: first 16 hex digits of SHA-256 over its sorted JSON."""
    text = json.dumps(normalise_params(params), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def suite_files(folder: Path = SUITES_DIR) -> list[Path]:
    """The suite files in a folder (*.yaml, *.yml), sorted by name."""
    return sorted([*Path(folder).glob("*.yaml"), *Path(folder).glob("*.yml")])


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently)."""


def _unique_keys(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    lines: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in lines:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r} (first on line {lines[key]})",
                                                    key_node.start_mark)
        lines[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_keys)


def load_suite(path: Path | str) -> Suite:
    """Read and validate a suite file; raises SuiteError naming the file and key path."""
    path = Path(path)
    try:
        data = yaml.load(path.read_bytes().decode("utf-8"), Loader=_StrictLoader)  # noqa: S506 - a safe loader
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read the suite file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{path}: is not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r}); "
                         f"save it as UTF-8") from None
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: not valid YAML: {exc}") from exc
    return parse_suite(data, path)


def parse_suite(data: Any, path: Path | str) -> Suite:
    """Validate an already parsed suite document; `path` is only used in messages and kept on the Suite."""
    path = Path(path)
    validator = jsonschema.Draft202012Validator(SUITE_SCHEMA)
    errors = sorted(validator.iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        raise SuiteError("\n".join(_describe(path, error) for error in errors))
    infinite = [f"{path}: {_key_path(where)}: {value} is not a finite number; allowed: finite numbers"
                for where, value in _numbers(data, []) if not math.isfinite(value)]
    if infinite:  # YAML's .nan and .inf pass JSON Schema's "number"
        raise SuiteError("\n".join(infinite))
    defaults: dict[str, Any] = dict(data.get("defaults") or {})
    matrix: dict[str, list[Any]] = dict(data["matrix"] or {})
    both = sorted(set(defaults) & set(matrix))
    if both:
        raise SuiteError(f"{path}: {', '.join(both)} given in both defaults and matrix; keep each parameter in one")
    platform = data["platform"]
    suite = Suite(
        name=data["suite"], platform=platform, cluster=data.get("cluster", platform),
        repetitions=data["repetitions"], seed=data.get("seed", 0), description=data.get("description", ""),
        allow_dirty=data.get("allow_dirty", False), path=path, defaults=defaults, matrix=matrix,
        load=typed_section("load", data.get("load") or {}, str(path)),
        metrics=typed_section("metrics", data.get("metrics") or {}, str(path)),
        local=dict(data.get("local") or {}), kubernetes=dict(data.get("kubernetes") or {}),
        analysis=dict(data.get("analysis") or {}),
        slo={name: dict(spec) for name, spec in (data.get("slo") or {}).items()},
        max_attempts=data.get("max_attempts", DEFAULT_MAX_ATTEMPTS),
    )
    _check_slo(suite)
    for scenario in suite.scenarios():
        pods, pods_max = scenario.params["pods"], scenario.params["pods_max"]
        if pods_max < pods:
            where = "matrix" if "pods_max" in matrix else "defaults"
            raise SuiteError(
                f"{path}: {where}.pods_max: pods_max={pods_max} is below pods={pods} in scenario {scenario.index}; "
                f"allowed: pods_max >= pods (equal = no autoscaling)"
            )
    return suite


def _check_slo(suite: Suite) -> None:
    """What the schema cannot say about `slo`: a series_mean names a collected query, min <= max."""
    from kubexp.collect.queries import query_names

    problems = []
    for name, spec in suite.slo.items():
        where = f"{suite.path}: slo.{name}"
        if spec["figure"] == "series_mean":
            known = query_names(suite)
            if "query" not in spec:
                problems.append(f"{where}: figure series_mean needs `query`; allowed: {', '.join(known)}")
            elif spec["query"] not in known:
                problems.append(f"{where}.query: {spec['query']!r} is not a query this suite collects; "
                                f"allowed: {', '.join(known)}")
        elif "query" in spec:
            problems.append(f"{where}.query: only figure series_mean takes a query (figure is {spec['figure']})")
        if "min" in spec and "max" in spec and spec["min"] > spec["max"]:
            problems.append(f"{where}: min {spec['min']} is above max {spec['max']}; allowed: min <= max")
    if problems:
        raise SuiteError("\n".join(problems))


def _numbers(value: Any, where: list[Any]) -> list[tuple[list[Any], float]]:
    """Every float in a parsed document with its key path."""
    if isinstance(value, float):
        return [(where, value)]
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in _numbers(item, [*where, key])]
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in _numbers(item, [*where, index])]
    return []


def check_section(name: str, value: Any, origin: str) -> None:
    """Validate one section (e.g. after a run's overrides were merged into it) against its part of the schema."""
    validator = jsonschema.Draft202012Validator(SUITE_SCHEMA["properties"][name])
    errors = sorted(validator.iter_errors(value), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        raise SuiteError("\n".join(_describe(Path(origin), error, prefix=name) for error in errors))


def _describe(path: Path, error: jsonschema.ValidationError, prefix: str = "") -> str:
    where = _key_path([prefix, *error.absolute_path] if prefix else error.absolute_path)
    allowed = _allowed(error)
    return f"{path}: {where}: {error.message}" + (f"; allowed: {allowed}" if allowed else "")


def _key_path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _alternative(schema: dict[str, Any]) -> str:
    if "required" in schema:
        return "key " + ", ".join(schema["required"])
    kind = schema.get("type", "value")
    return f"{kind} of {schema['items'].get('type', 'values')}" if "items" in schema else str(kind)


def _allowed(error: jsonschema.ValidationError) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        return ", ".join(sorted(schema.get("properties", {})))
    if error.validator == "required":
        return "required keys " + ", ".join(schema.get("required", []))
    if error.validator == "enum":
        return " | ".join(json.dumps(value) for value in schema["enum"])
    if error.validator == "type":
        return f"type {error.validator_value}"
    if error.validator in ("oneOf", "anyOf"):
        return " or ".join(_alternative(option) for option in error.validator_value)
    if error.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "minItems", "pattern",
                           "uniqueItems"):
        return f"{error.validator} {error.validator_value}"
    return ""

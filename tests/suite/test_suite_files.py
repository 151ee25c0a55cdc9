"""Suite files: the shipped suites, validation messages, scenario ids and the params schema."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jsonschema
import pytest
import yaml

from kubexp.load import profiles
from kubexp.settings import SUITES_DIR
from kubexp.suite import (
    PARAMETER_DEFAULTS,
    SuiteError,
    load_suite,
    parse_suite,
    scenario_id,
    scenario_params_schema,
    suite_files,
)

MINIMAL = {"suite": "mini", "platform": "local", "repetitions": 1, "matrix": {"workers": [1, 2]}}


def write(tmp_path: Path, document: dict, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def error_of(tmp_path: Path, document: dict) -> str:
    path = write(tmp_path, document)
    with pytest.raises(SuiteError) as raised:
        load_suite(path)
    message = str(raised.value)
    assert str(path) in message
    return message


def test_shipped_suites_match_the_paper_and_the_demo() -> None:
    suites = {load_suite(path).name: load_suite(path) for path in suite_files()}
    assert {"demo", "paper-loadgeneration", "paper-scaling", "paper-etcd"} <= set(suites)
    demo = suites["demo"]
    assert (demo.platform, demo.cluster, demo.repetitions) == ("local", "local", 2)
    assert len(demo.scenarios()) == 2
    assert all(s.params["duration_s"] == 20 and s.params["pods"] == 2 for s in demo.scenarios())
    loadgen = suites["paper-loadgeneration"].scenarios()
    assert [s.params["workers"] for s in loadgen] == list(range(2, 41, 2))
    assert suites["paper-loadgeneration"].repetitions == 7
    assert {(s.params["pods"], s.params["pods_max"], s.params["duration_s"]) for s in loadgen} == {(20, 20, 1200)}
    scaling = suites["paper-scaling"].scenarios()
    assert len(scaling) == 8 * 20 * 2 == 320  # the paper's 320 scenarios
    assert {s.params["pods_max"] for s in scaling} == {20}
    assert sorted({s.params["workers"] for s in scaling}) == list(range(6, 121, 6))
    etcd = suites["paper-etcd"].scenarios()
    assert len(etcd) == 24
    assert {s.params["etcd_storage"] for s in etcd} == {"ramdisk", "disk"}
    assert {s.params["etcd_storage"] for s in loadgen} == {"ramdisk"}  # the authors' define-loadgeneration.sh


def test_paper_suites_run_the_authors_traffic() -> None:
    """Every paper suite: the paper load profile, 60 s settle, no response timeout, 2 s connect timeout,
    20 ms think time, 64 MiB / 200 m per pod, and all seconds analysed; each value cited in the file."""
    for name in ("paper-loadgeneration", "paper-scaling", "paper-etcd"):
        suite = load_suite(SUITES_DIR / f"{name}.yaml")
        assert (suite.load.profile, profiles.settle_s_for(suite.load)) == ("paper", 60), name
        assert (suite.warmup_s, suite.cooldown_s) == (0, 0), name
        for scenario in suite.scenarios():
            params = scenario.params
            assert (params["response_timeout_ms"], params["connect_timeout_ms"], params["think_time_ms"],
                    params["memory_limit_mib"], params["cpu_limit_millicores"]) == (0, 2000, 20, 64, 200), name
        text = suite.path.read_text()
        for cited in ("fw:run-experiment.sh", "app:backend/k8s/generic/deployment.yml", "paper 5.2.1"):
            assert cited in text, f"{name} does not cite {cited}"


def test_defaults_apply_and_pods_max_follows_pods(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, {**MINIMAL, "defaults": {"pods": 3}}))
    first = suite.scenarios()[0]
    assert first.params == {**PARAMETER_DEFAULTS, "pods": 3, "pods_max": 3, "workers": 1}
    assert suite.cluster == "local" and suite.seed == 0 and suite.allow_dirty is False


def test_matrix_order_is_cartesian_with_the_first_key_slowest(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, {**MINIMAL, "matrix": {"pods": [1, 2], "mesh": ["native", "istio"]}}))
    order = [(s.index, s.params["pods"], s.params["mesh"]) for s in suite.scenarios()]
    assert order == [(0, 1, "native"), (1, 1, "istio"), (2, 2, "native"), (3, 2, "istio")]


def test_scenario_ids_are_stable_and_independent_of_the_matrix(tmp_path: Path) -> None:
    small = load_suite(write(tmp_path, MINIMAL, "a.yaml")).scenarios()
    grown = load_suite(write(tmp_path, {**MINIMAL, "matrix": {"workers": [3, 2, 1]}}, "b.yaml")).scenarios()
    assert {s.params["workers"]: s.id for s in small}.items() <= {s.params["workers"]: s.id for s in grown}.items()
    moved = load_suite(write(tmp_path, {**MINIMAL, "defaults": {"workers": 2}, "matrix": {"pods": [1]}}, "c.yaml"))
    assert moved.scenarios()[0].id == small[1].id  # same parameters, whether from defaults or matrix
    params = small[0].params
    assert scenario_id({**params, "think_time_ms": 20.0}) == scenario_id(params)
    assert scenario_id(dict(reversed(list(params.items())))) == small[0].id
    assert len(small[0].id) == 16 and int(small[0].id, 16) >= 0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"extra": 1}, ["(top level)", "'extra' was unexpected", "allowed:", "matrix", "repetitions"]),
        ({"matrix": {"workers": [1, "x"]}}, ["matrix.workers[1]", "not of type 'integer'"]),
        ({"matrix": {"workers": []}}, ["matrix.workers", "non-empty"]),
        ({"matrix": {"colour": [1]}}, ["matrix", "'colour' was unexpected", "think_time_ms"]),
        ({"defaults": {"mesh": "linkerd"}}, ["defaults.mesh", "linkerd", '"native" | "istio"']),
        ({"platform": "docker"}, ["platform", '"local" | "kubernetes"']),
        ({"repetitions": 0}, ["repetitions", "minimum 1"]),
        ({"suite": "Bad Name"}, ["suite", "[a-z0-9-]"]),
        ({"metrics": {"prometheus": [{"name": "p"}]}}, ["metrics.prometheus[0]", "key url or key conn_id"]),
        ({"matrix": {"pods": [1, 5]}, "defaults": {"pods_max": 3}},
         ["defaults.pods_max: pods_max=3 is below pods=5", "pods_max >= pods"]),
        ({"matrix": {"pods": [2], "pods_max": [1, 4]}}, ["matrix.pods_max: pods_max=1 is below pods=2"]),
        ({"defaults": {"workers": 3}}, ["workers given in both defaults and matrix"]),
        ({"metrics": {"completness_min": 0.5}}, ["metrics", "'completness_min' was unexpected", "completeness_min"]),
        ({"load": {"region": "overlaod"}}, ["load.region", '"overload" | "underload"']),
        ({"analysis": {"warmup": 5}}, ["analysis", "'warmup' was unexpected", "warmup_s"]),
    ],
)
def test_invalid_suites_are_rejected_with_file_path_and_allowed_values(
    tmp_path: Path, change: dict, expected: list[str]
) -> None:
    message = error_of(tmp_path, {**MINIMAL, **change})
    for part in expected:
        assert part in message


def test_missing_keys_and_bad_yaml_are_reported(tmp_path: Path) -> None:
    message = error_of(tmp_path, {"suite": "x"})
    assert "'platform' is a required property" in message and "required keys suite, platform" in message
    broken = tmp_path / "broken.yaml"
    broken.write_text("suite: [unclosed\n")
    with pytest.raises(SuiteError, match="broken.yaml: not valid YAML"):
        load_suite(broken)
    with pytest.raises(SuiteError, match="cannot read"):
        load_suite(tmp_path / "absent.yaml")


def test_scenario_params_schema_accepts_scenarios_and_rejects_unknown_parameters() -> None:
    schema = scenario_params_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    for path in suite_files():
        for scenario in load_suite(path).scenarios():
            jsonschema.validate(scenario.params, schema)
    assert schema["properties"]["workers"]["default"] == 10
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"workers": 2, "colour": "red"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"mesh": "linkerd"}, schema)


def test_parse_suite_keeps_sections_for_their_owners() -> None:
    suite = parse_suite({**MINIMAL, "load": {"servers": ["h:1099"], "region": "overload"},
                         "local": {"app_threads": 2}, "analysis": {"warmup_s": 5}}, "inline.yaml")
    assert suite.load.given == {"servers": ["h:1099"], "region": "overload"} and suite.local == {"app_threads": 2}
    assert (suite.load.servers, suite.load.region, suite.load.max_malformed_share) == (("h:1099",), "overload", 0.01)
    assert (suite.warmup_s, suite.cooldown_s) == (5, 0)
    assert suite.path == Path("inline.yaml")


def test_every_documented_analysis_setting_is_accepted(tmp_path: Path) -> None:
    """docs/analysis.md's settings table: the suite schema once refused all but warmup_s and cooldown_s."""
    from kubexp.analysis.dataset import AnalysisSettings

    documented = {"warmup_s": 10, "cooldown_s": 5, "min_group_size": 4, "target_relative_ci_width": 0.05,
                  "confidence": 0.9, "alpha": 0.01}
    suite = load_suite(write(tmp_path, {**MINIMAL, "analysis": documented}))
    settings = AnalysisSettings.from_mapping(suite.analysis, seed=suite.seed)
    assert {key: getattr(settings, key) for key in documented} == documented
    assert "confidence" in error_of(tmp_path, {**MINIMAL, "analysis": {"confidence": 1.5}})


@pytest.mark.parametrize(("text", "expected"), [
    (b"suite: mini\nplatform: local\nrepetitions: 1\nmatrix: {workers: [1]}\ndescription: caf\xe9\n",
     ["is not UTF-8 text", "byte 82"]),
    (b"suite: mini\nplatform: local\nrepetitions: 1\nmatrix: {workers: [1]}\ndefaults: {think_time_ms: .nan}\n",
     ["defaults.think_time_ms", "nan is not a finite number"]),
    (b"suite: mini\nplatform: local\nrepetitions: 1\nmatrix: {think_time_ms: [.inf]}\n",
     ["matrix.think_time_ms[0]", "inf is not a finite number"]),
    (b"suite: mini\nplatform: local\nrepetitions: 1\nrepetitions: 3\nmatrix: {workers: [1]}\n",
     ["duplicate key 'repetitions'", "line 4"]),
    (b"suite: mini\nplatform: local\nrepetitions: 1\nmatrix: {workers: [1]}\nload: {servers: ['h:99999']}\n",
     ["load.servers", "'h:99999'"]),
])
def test_bad_input_is_one_clear_error_naming_file_and_key(tmp_path: Path, text: bytes, expected: list[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(text)
    with pytest.raises(SuiteError) as raised:
        load_suite(path)
    message = str(raised.value)
    assert message.startswith(str(path))
    for part in expected:
        assert part in message


def test_typed_sections_hold_exactly_the_schema_keys_with_its_defaults() -> None:
    """`load:` and `metrics:` are read as typed fields; their keys and defaults come from SUITE_SCHEMA, and the
    library defaults the same settings have outside a suite (JTL CLI, run_load, CollectOptions) agree."""
    from kubexp.collect.prometheus import CollectOptions
    from kubexp.load.jmeter import DEFAULT_SAMPLE_SENDER_MODE
    from kubexp.load.jtl import MAX_MALFORMED_SHARE
    from kubexp.suite import SECTIONS, SUITE_SCHEMA, LoadSection, MetricsSection

    for name, kind in SECTIONS.items():
        schema = SUITE_SCHEMA["properties"][name]["properties"]
        fields = {f.name: f for f in dataclasses.fields(kind) if f.name != "given"}
        assert set(fields) == set(schema), name
        defaults = kind()
        for key, spec in schema.items():
            expected = spec.get("default")
            assert getattr(defaults, key) == (tuple(expected) if isinstance(expected, list) else expected), key
    assert (LoadSection.max_malformed_share, LoadSection.sample_sender_mode) == (MAX_MALFORMED_SHARE,
                                                                                 DEFAULT_SAMPLE_SENDER_MODE)
    options = CollectOptions()
    assert (options.retries, options.backoff_s, options.timeout_s, options.max_series) == (
        MetricsSection.retries, MetricsSection.backoff_s, MetricsSection.timeout_s, MetricsSection.max_series)

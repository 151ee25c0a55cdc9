"""Rendered manifests: offline validation against Kubernetes' OpenAPI schemas (strict) and Istio's models."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from cloudcoil.models.istio.networking import v1beta1 as istio_networking

from kubexp.cli import main
from kubexp.load import profiles
from kubexp.platform.kubernetes import manifests
from kubexp.settings import SUITES_DIR
from kubexp.suite import PARAMETER_DEFAULTS, load_suite

KUBERNETES_VERSIONS = ["1.29", kubernetes_validate.latest_version()]
ISTIO_MODELS = {"Gateway": istio_networking.Gateway, "VirtualService": istio_networking.VirtualService}
ISTIO_DURATION = re.compile(r"^[0-9]+(\.[0-9]+)?(h|m|s|ms|us|ns)$")
SETTINGS = {"conn_id": "kubernetes_default", "namespace": "exp-ns", "image": "registry.example/cropapp:1.2"}


def params(**overrides: Any) -> dict[str, Any]:
    values = {**PARAMETER_DEFAULTS, "pods_max": None, **overrides}
    if values["pods_max"] is None:
        values["pods_max"] = values["pods"]
    return values


SCENARIOS = {
    "native-fixed": params(pods=3),
    "istio-fixed": params(pods=2, mesh="istio"),
    "native-autoscaled": params(pods=1, pods_max=20),
    "istio-autoscaled": params(pods=5, pods_max=20, mesh="istio", memory_limit_mib=128, cpu_limit_millicores=500),
}


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return [obj["kind"] for obj in objects]


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [obj for obj in objects if obj["kind"] == kind]
    return found


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_object_validates_offline(name: str) -> None:
    objects = manifests.render("0123456789abcdef", SCENARIOS[name], SETTINGS)
    for obj in objects:
        if obj["kind"] in ISTIO_MODELS:
            ISTIO_MODELS[obj["kind"]].model_validate(obj, extra="forbid")
            continue
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_validation_really_rejects_a_broken_object() -> None:
    """Guards the test above: a typo in a field must fail both validators."""
    objects = manifests.render("0123456789abcdef", SCENARIOS["istio-autoscaled"], SETTINGS)
    deployment = by_kind(objects, "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.29", strict=True)
    virtual_service = by_kind(objects, "VirtualService")
    virtual_service["spec"]["http"][0]["retries"]["retryon"] = "5xx"
    with pytest.raises(ValueError):
        istio_networking.VirtualService.model_validate(virtual_service, extra="forbid")


def test_fixed_native_scenario() -> None:
    objects = manifests.render("0123456789abcdef", SCENARIOS["native-fixed"], SETTINGS)
    assert kinds(objects) == ["Namespace", "Deployment", "Service"]
    namespace = by_kind(objects, "Namespace")
    assert namespace["metadata"]["name"] == "exp-ns"
    assert namespace["metadata"]["labels"]["istio-injection"] == "disabled"
    assert all(obj["metadata"].get("namespace", "exp-ns") == "exp-ns" for obj in objects)
    deployment = by_kind(objects, "Deployment")["spec"]
    assert deployment["replicas"] == 3
    container = deployment["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/cropapp:1.2"
    assert container["resources"]["requests"] == container["resources"]["limits"] == {"memory": "64Mi", "cpu": "200m"}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert (container[probe]["periodSeconds"], container[probe]["failureThreshold"]) == (10, 3)
    service = by_kind(objects, "Service")["spec"]
    assert service["type"] == "NodePort" and service["ports"][0]["nodePort"] == 30080
    assert service["selector"].items() <= deployment["template"]["metadata"]["labels"].items()
    assert deployment["selector"]["matchLabels"].items() <= deployment["template"]["metadata"]["labels"].items()


def test_autoscaled_scenario_has_an_hpa_from_pods_to_pods_max() -> None:
    objects = manifests.render("0123456789abcdef", SCENARIOS["native-autoscaled"], SETTINGS)
    assert kinds(objects) == ["Namespace", "Deployment", "Service", "HorizontalPodAutoscaler"]
    hpa = by_kind(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 20)
    assert hpa["spec"]["scaleTargetRef"]["name"] == by_kind(objects, "Deployment")["metadata"]["name"]
    assert hpa["spec"]["metrics"][0]["resource"] == {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}


def test_istio_scenario_injects_sidecars_and_retries_like_the_paper() -> None:
    objects = manifests.render("0123456789abcdef", SCENARIOS["istio-autoscaled"], SETTINGS)
    assert kinds(objects) == ["Namespace", "Deployment", "Service", "HorizontalPodAutoscaler",
                              "Gateway", "VirtualService"]
    assert by_kind(objects, "Namespace")["metadata"]["labels"]["istio-injection"] == "enabled"
    container = by_kind(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"memory": "128Mi", "cpu": "500m"}
    gateway, route = by_kind(objects, "Gateway"), by_kind(objects, "VirtualService")
    assert gateway["spec"]["selector"] == {"istio": "ingressgateway"}
    assert route["spec"]["gateways"] == [gateway["metadata"]["name"]]
    http = route["spec"]["http"][0]
    assert http["retries"] == {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx"}
    assert ISTIO_DURATION.match(http["retries"]["perTryTimeout"])
    service = by_kind(objects, "Service")
    destination = http["route"][0]["destination"]
    assert destination["host"] == f"{service['metadata']['name']}.exp-ns.svc.cluster.local"
    assert destination["port"]["number"] == service["spec"]["ports"][0]["port"]


def test_settings_defaults_and_overrides() -> None:
    objects = manifests.render("0123456789abcdef", SCENARIOS["istio-fixed"],
                               {"node_port": None, "istio": {"gateway_selector": {"app": "gw"}, "gateway_port": 8080}})
    assert by_kind(objects, "Namespace")["metadata"]["name"] == "kubexp"
    assert "nodePort" not in by_kind(objects, "Service")["spec"]["ports"][0]
    gateway = by_kind(objects, "Gateway")["spec"]
    assert gateway["selector"] == {"app": "gw"} and gateway["servers"][0]["port"]["number"] == 8080
    for obj in objects:
        if obj["kind"] not in ISTIO_MODELS:
            kubernetes_validate.validate(obj, "1.29", strict=True)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"pods": 3, "pods_max": 2}, "pods_max=2 is below pods=3"),
    ({"mesh": "linkerd"}, "mesh='linkerd'"),
    ({"memory_limit_mib": 0}, "memory_limit_mib=0"),
])
def test_bad_parameters_name_the_key(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(manifests.ManifestError, match=re.escape(message)):
        manifests.render("0123456789abcdef", {**SCENARIOS["native-fixed"], **overrides}, SETTINGS)
    with pytest.raises(manifests.ManifestError, match="lack mesh"):
        manifests.render("0123456789abcdef", {"pods": 1, "pods_max": 1, "memory_limit_mib": 64,
                                              "cpu_limit_millicores": 200}, SETTINGS)


def test_every_scenario_of_the_shipped_suites_renders_valid_manifests() -> None:
    for path in sorted(SUITES_DIR.glob("*.yaml")):
        suite = load_suite(path)
        seen = set()
        for scenario in suite.scenarios():
            objects = manifests.render(scenario.id, scenario.params, suite.kubernetes)
            shape = tuple(kinds(objects))
            if shape in seen:  # schema validation once per distinct shape keeps this fast
                continue
            seen.add(shape)
            for obj in objects:
                if obj["kind"] not in ISTIO_MODELS:
                    kubernetes_validate.validate(obj, KUBERNETES_VERSIONS[-1], strict=True)


def test_render_cli_writes_readable_yaml_by_index_and_by_id(tmp_path: Path) -> None:
    suite_path = SUITES_DIR / "paper-scaling.yaml"
    scenario = load_suite(suite_path).scenarios()[1]
    runner = CliRunner()
    by_index = runner.invoke(main, ["render", str(suite_path), "--scenario", "1", "--out", str(tmp_path / "a")])
    assert by_index.exit_code == 0, by_index.output
    by_id = runner.invoke(main, ["render", str(suite_path), "--scenario", scenario.id, "--out", str(tmp_path / "b")])
    assert by_id.exit_code == 0, by_id.output
    files = sorted((tmp_path / "a").iterdir())
    assert [f.name for f in files] == sorted(f.name for f in (tmp_path / "b").iterdir())
    assert files[0].name == "01-namespace-kubexp.yaml"
    loaded = [yaml.safe_load(f.read_text()) for f in files]
    suite = load_suite(suite_path)
    assert loaded == manifests.render(scenario.id, scenario.params, profiles.app_settings(suite.kubernetes, suite.load))
    # the paper profile's app: Flask's threaded server, probes on /images as the authors had them
    container = loaded[1]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "CROPAPP_SERVER", "value": "flask"} in container["env"]
    assert {"name": "CROPAPP_PORT", "value": "8000"} in container["env"]  # not the Service's link variable
    assert container["readinessProbe"]["httpGet"]["path"] == container["livenessProbe"]["httpGet"]["path"] == "/images"
    assert all("&id" not in f.read_text() for f in files)  # no YAML anchors for readers


def test_render_into_a_used_folder_leaves_only_this_scenarios_manifests(tmp_path: Path) -> None:
    istio = next(s for s in load_suite(SUITES_DIR / "paper-etcd.yaml").scenarios() if s.params["mesh"] == "istio")
    native = load_suite(SUITES_DIR / "paper-loadgeneration.yaml").scenarios()[0]
    (tmp_path / "notes.txt").write_text("mine")
    runner = CliRunner()
    for suite_file, scenario in (("paper-etcd.yaml", istio), ("paper-loadgeneration.yaml", native)):
        result = runner.invoke(main, ["render", str(SUITES_DIR / suite_file), "--scenario", scenario.id,
                                      "--out", str(tmp_path)])
        assert result.exit_code == 0, result.output
    kinds = [yaml.safe_load(f.read_text())["kind"] for f in sorted(tmp_path.glob("*.yaml"))]
    assert kinds == [obj["kind"] for obj in manifests.render(native.id, native.params, {})]
    assert "Gateway" not in kinds and (tmp_path / "notes.txt").read_text() == "mine"


def test_render_cli_names_a_bad_scenario(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["render", str(SUITES_DIR / "demo.yaml"), "--scenario", "99999",
                                       "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "neither a scenario id nor an index" in result.output and "demo" in result.output

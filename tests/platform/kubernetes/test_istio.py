"""Istio commands as built for helm and istioctl (neither tool can be installed here; the istioctl
path is also run for real against a stand-in program in test_platform.py)."""

from __future__ import annotations

import pytest

from kubexp.platform.kubernetes.istio import IstioSettings, kubeconfig_from_connection, version_matches


def test_helm_installs_the_pinned_charts_and_removes_them_in_reverse() -> None:
    settings = IstioSettings.from_mapping({"installer": "helm", "version": "1.22.3", "helm": "/opt/helm/helm"})
    repo = ["--repo", "https://istio-release.storage.googleapis.com/charts", "--namespace", "istio-system",
            "--version", "1.22.3", "--wait"]
    assert settings.install_argvs() == [
        ["/opt/helm/helm", "upgrade", "--install", "istio-base", "base", *repo, "--create-namespace"],
        ["/opt/helm/helm", "upgrade", "--install", "istiod", "istiod", *repo],
        ["/opt/helm/helm", "upgrade", "--install", "istio-ingressgateway", "gateway", *repo,
         "--set", "service.type=NodePort"],
    ]
    assert [argv[2] for argv in settings.remove_argvs()] == ["istio-ingressgateway", "istiod", "istio-base"]
    assert all(argv[3:] == ["--namespace", "istio-system", "--ignore-not-found", "--wait"]
               for argv in settings.remove_argvs())


def test_own_commands_replace_the_defaults() -> None:
    settings = IstioSettings.from_mapping({
        "version": "1.5.10", "install_commands": [["{istioctl}", "manifest", "apply", "--set", "tag={version}"]],
        "remove_commands": [["sh", "-c", "echo not a shell string here"]],
    })
    assert settings.install_argvs() == [["istioctl", "manifest", "apply", "--set", "tag=1.5.10"]]
    assert settings.remove_argvs() == [["sh", "-c", "echo not a shell string here"]]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match=r"kubernetes.istio.version: 'latest' must be an exact release"):
        IstioSettings.from_mapping({"version": "latest"})
    with pytest.raises(ValueError, match=r"install_commands: must be a list of commands"):
        IstioSettings.from_mapping({"install_commands": ["istioctl install -y"]})
    with pytest.raises(ValueError, match=r"placeholder \{revision\} is unknown"):
        IstioSettings.from_mapping({"install_commands": [["istioctl", "install", "--revision", "{revision}"]]})
    with pytest.raises(ValueError, match=r"unknown key\(s\) verison"):
        IstioSettings.from_mapping({"verison": "1.22.3"})
    assert IstioSettings.from_mapping({"gateway_port": 8080}).installer == "istioctl"  # the manifests' key


def test_kubeconfig_comes_from_the_connection_with_its_context() -> None:
    config = {"apiVersion": "v1", "current-context": "a", "contexts": [{"name": "a"}, {"name": "b"}]}
    assert kubeconfig_from_connection({"kube_config": config, "cluster_context": "b"})["current-context"] == "b"
    assert kubeconfig_from_connection({"kube_config": "current-context: a\nclusters: []\n"})["clusters"] == []
    assert kubeconfig_from_connection({"in_cluster": True}) is None


def test_installed_version_must_be_the_pinned_release() -> None:
    assert version_matches("1.22.3", "1.22.3") and version_matches("1.22.3-distroless", "1.22.3")
    assert not version_matches("1.22.30", "1.22.3") and not version_matches("1.22.3.1", "1.22.3")
    assert not version_matches("1.22", "1.22.3") and not version_matches("unknown", "1.22.3")

"""Istio installed for mesh=istio scenarios and removed completely for native ones, as in the paper.

Installation and removal run configurable commands (istioctl or helm; argument lists with
placeholders, never a shell) with a kubeconfig written from the Airflow Kubernetes
connection. Both are idempotent: the cluster is asked first (istiod's image tag gives the
installed version), and nothing runs when it is already as wanted. kubexp labels the Istio
namespace when it installed Istio there (ISTIO_LABEL) and removes only such an Istio: then
also its CRDs through the API (`remove_crds`, default true), and it waits until the Istio
namespace is gone. An Istio someone else installed is used when it is the pinned release and
otherwise refused, never replaced or removed. The sidecar injection label comes with the app's
Namespace manifest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from kubexp.platform.base import PlatformError
from kubexp.platform.kubernetes.cluster import ISTIO_LABEL
from kubexp.platform.kubernetes.commands import fill
from kubexp.platform.kubernetes.waiting import wait_until

if TYPE_CHECKING:
    from kubexp.platform.kubernetes.cluster import Cluster

log = logging.getLogger(__name__)

INSTALLERS = ("istioctl", "helm")
_MANIFEST_KEYS = ("gateway_selector", "gateway_port")  # read by kubexp.platform.kubernetes.manifests, not here

_ISTIOCTL_INSTALL = (("{istioctl}", "install", "--skip-confirmation", "--set", "profile={profile}",
                      "--set", "values.gateways.istio-ingressgateway.type=NodePort"),)
_ISTIOCTL_REMOVE = (("{istioctl}", "uninstall", "--purge", "--skip-confirmation"),)
_HELM_CHART = ("--repo", "{chart_repo}", "--namespace", "{namespace}", "--version", "{version}", "--wait")
_HELM_INSTALL = (
    ("{helm}", "upgrade", "--install", "istio-base", "base", *_HELM_CHART, "--create-namespace"),
    ("{helm}", "upgrade", "--install", "istiod", "istiod", *_HELM_CHART),
    ("{helm}", "upgrade", "--install", "{ingress_service}", "gateway", *_HELM_CHART, "--set", "service.type=NodePort"),
)
_HELM_REMOVE = tuple(
    ("{helm}", "uninstall", release, "--namespace", "{namespace}", "--ignore-not-found", "--wait")
    for release in ("{ingress_service}", "istiod", "istio-base")
)


@dataclass(frozen=True)
class IstioSettings:
    installer: str = "istioctl"
    version: str | None = None  # pinned; required as soon as a scenario uses mesh=istio
    istioctl: str = "istioctl"
    helm: str = "helm"
    profile: str = "default"
    chart_repo: str = "https://istio-release.storage.googleapis.com/charts"
    namespace: str = "istio-system"
    ingress_service: str = "istio-ingressgateway"
    ingress_port: int | str = "http2"
    remove_crds: bool = True
    remove_on_teardown: bool = True  # the paper removed Istio with every teardown
    install_commands: tuple[tuple[str, ...], ...] | None = None
    remove_commands: tuple[tuple[str, ...], ...] | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "kubernetes.istio") -> IstioSettings:
        known = set(cls.__dataclass_fields__) | set(_MANIFEST_KEYS)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if values.get("installer", "istioctl") not in INSTALLERS:
            raise ValueError(f"{where}.installer: {values['installer']!r}; allowed: {', '.join(INSTALLERS)}")
        if "version" in values and not re.fullmatch(r"\d+\.\d+\.\d+(-[\w.]+)?", str(values["version"])):
            raise ValueError(f"{where}.version: {values['version']!r} must be an exact release such as 1.22.3")
        for key in ("install_commands", "remove_commands"):
            if key in values:
                commands = values[key]
                if not isinstance(commands, list) or not all(
                        isinstance(c, list) and c and all(isinstance(a, str) for a in c) for c in commands):
                    raise ValueError(f"{where}.{key}: must be a list of commands, each a list of arguments")
                values[key] = tuple(tuple(c) for c in commands)
        if "version" in values:
            values["version"] = str(values["version"])
        settings = cls(**values)
        settings.install_argvs()  # unknown placeholders are reported now, not in the middle of a run
        settings.remove_argvs()
        return settings

    def _values(self) -> dict[str, str]:
        return {"istioctl": self.istioctl, "helm": self.helm, "version": self.version or "", "profile": self.profile,
                "chart_repo": self.chart_repo, "namespace": self.namespace, "ingress_service": self.ingress_service}

    def install_argvs(self) -> list[list[str]]:
        default = _ISTIOCTL_INSTALL if self.installer == "istioctl" else _HELM_INSTALL
        return [fill(c, self._values(), "kubernetes.istio.install_commands")
                for c in self.install_commands or default]

    def remove_argvs(self) -> list[list[str]]:
        default = _ISTIOCTL_REMOVE if self.installer == "istioctl" else _HELM_REMOVE
        return [fill(c, self._values(), "kubernetes.istio.remove_commands")
                for c in self.remove_commands or default]


def version_matches(installed: str, wanted: str) -> bool:
    """istiod's image tag is the pinned release, exactly or with a variant suffix ('1.22.3-distroless');
    '1.22.30' is another release."""
    return installed == wanted or installed.startswith(f"{wanted}-")


class Istio:
    """Installs or removes Istio on one cluster so that it matches a scenario's `mesh`."""

    def __init__(self, settings: IstioSettings, cluster: Cluster, *, timeout_s: float = 900.0,
                 command_timeout_s: float = 900.0) -> None:
        self.settings = settings
        self.cluster = cluster
        self.timeout_s = timeout_s
        self.command_timeout_s = command_timeout_s

    def installed_version(self) -> str | None:
        """The tag of istiod's image, or None when istiod is absent."""
        dep = self.cluster.api(f"read deployment {self.settings.namespace}/istiod",
                               self.cluster.apps.read_namespaced_deployment, "istiod", self.settings.namespace,
                               tolerate=(404,))
        if dep is None:
            return None
        image = dep.spec.template.spec.containers[0].image or ""
        return image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else "unknown"

    def foreign(self) -> bool:
        """Whether the Istio namespace exists without kubexp's label: someone else's Istio."""
        namespace = self.cluster.namespace(self.settings.namespace)
        return namespace is not None and namespace["labels"].get(ISTIO_LABEL) != "true"

    def _refuse_foreign(self, found: str | None, why: str) -> PlatformError:
        return PlatformError(
            f"Istio {found or '(no istiod)'} in namespace {self.settings.namespace} was not installed by kubexp (no "
            f"label {ISTIO_LABEL}=true) and kubexp never replaces or removes it; {why}")

    def ensure(self, mesh: str) -> dict[str, Any]:
        """Istio at the pinned version for mesh=istio, no trace of Istio for mesh=native."""
        if mesh == "istio":
            return self.install()
        if mesh == "native":
            if self.foreign():
                raise self._refuse_foreign(self.installed_version(), "remove it yourself for mesh=native scenarios")
            return self.remove()
        raise PlatformError(f"mesh={mesh!r} is not supported; allowed: native, istio")

    def install(self) -> dict[str, Any]:
        wanted = self.settings.version
        if not wanted:
            raise PlatformError("kubernetes.istio.version is not set; pin the Istio release the suite uses "
                                "(e.g. version: 1.22.3) before running mesh=istio scenarios")
        current = self.installed_version()
        if current is not None and version_matches(current, wanted):
            return {"mesh": "istio", "istio_version": current, "changed": False,
                    "installed_by_kubexp": not self.foreign()}
        if self.foreign():
            raise self._refuse_foreign(current, f"upgrade it to {wanted} yourself or pin kubernetes.istio.version "
                                                f"to the release it runs")
        with self._kubeconfig() as env:
            if self.settings.installer == "istioctl" and self.settings.install_commands is None:
                self._check_istioctl_version(env)
            for argv in self.settings.install_argvs():
                self._run(argv, env, "install Istio")
        if self.cluster.namespace(self.settings.namespace) is None:
            raise PlatformError(f"Istio install finished but namespace {self.settings.namespace} does not exist; "
                                f"check kubernetes.istio.namespace and install_commands")
        self.cluster.label_namespace(self.settings.namespace, {ISTIO_LABEL: "true"})
        wait_until(lambda: self.cluster.rollout(self.settings.namespace, "istiod", 1).ready,
                   timeout_s=self.timeout_s, interval_s=self.cluster.poll_interval_s,
                   what=f"istiod in {self.settings.namespace}: rollout after install")
        installed = self.installed_version()
        if installed is None or not version_matches(installed, wanted):
            raise PlatformError(f"Istio install finished but istiod runs {installed!r}, not {wanted}; "
                                f"check kubernetes.istio.install_commands")
        return {"mesh": "istio", "istio_version": installed, "changed": True, "replaced": current}

    def remove(self) -> dict[str, Any]:
        """Remove the Istio kubexp installed (its namespace carries ISTIO_LABEL until the very end, so a retry
        finishes the job); leave any other Istio and its CRDs alone."""
        namespace = self.cluster.namespace(self.settings.namespace)
        if namespace is None:
            return {"mesh": "native", "istio_version": None, "changed": False, "crds_deleted": []}
        if namespace["labels"].get(ISTIO_LABEL) != "true":
            log.warning("Istio in namespace %s was not installed by kubexp (no label %s=true): left alone",
                        self.settings.namespace, ISTIO_LABEL)
            return {"mesh": "native", "istio_version": self.installed_version(), "changed": False,
                    "crds_deleted": [], "left_alone": True}
        with self._kubeconfig() as env:
            for argv in self.settings.remove_argvs():
                self._run(argv, env, "remove Istio")
        crds = self.cluster.delete_crds("istio.io") if self.settings.remove_crds else []
        self.cluster.delete_namespaces([self.settings.namespace], timeout_s=self.timeout_s)
        return {"mesh": "native", "istio_version": None, "changed": True, "crds_deleted": crds}

    def _check_istioctl_version(self, env: Mapping[str, str]) -> None:
        argv = [self.settings.istioctl, "version", "--remote=false", "-o", "json"]
        out = self._run(argv, env, "check the istioctl version")
        try:
            client = str(json.loads(out)["clientVersion"]["version"])
        except (ValueError, KeyError, TypeError):
            found = re.search(r"\d+\.\d+\.\d+\S*", out)
            client = found.group(0) if found else out.strip()
        if client != self.settings.version:
            raise PlatformError(f"{self.settings.istioctl} is version {client}, but kubernetes.istio.version pins "
                                f"{self.settings.version}; install istioctl {self.settings.version} on the "
                                f"Airflow workers or set kubernetes.istio.istioctl to its path")

    def _run(self, argv: Sequence[str], env: Mapping[str, str], what: str) -> str:
        try:
            done = subprocess.run(list(argv), env=dict(env), capture_output=True, text=True,
                                  timeout=self.command_timeout_s, check=False)
        except FileNotFoundError as exc:
            raise PlatformError(f"{what}: program {argv[0]!r} not found on this Airflow worker; install it "
                                f"(version {self.settings.version}) or set kubernetes.istio.{self.settings.installer}"
                                f" to its path") from exc
        except subprocess.TimeoutExpired as exc:
            raise PlatformError(f"{what}: `{' '.join(argv)}` still running after {self.command_timeout_s:g} s") \
                from exc
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise PlatformError(f"{what}: `{' '.join(argv)}` exited with {done.returncode}: {tail or 'no output'}")
        return done.stdout

    @contextlib.contextmanager
    def _kubeconfig(self) -> Iterator[dict[str, str]]:
        """Environment for istioctl/helm: KUBECONFIG pointing at a 0600 copy of the connection's kubeconfig."""
        config = kubeconfig_from_connection(self.cluster.hook.conn_extras)
        if config is None:  # in-cluster or the worker's default kubeconfig: the tools find it themselves
            yield dict(os.environ)
            return
        with tempfile.TemporaryDirectory(prefix="kubexp-kubeconfig-") as folder:
            path = os.path.join(folder, "config")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                yaml.safe_dump(config, out)
            yield {**os.environ, "KUBECONFIG": path}


def kubeconfig_from_connection(extras: Mapping[str, Any]) -> dict[str, Any] | None:
    """The kubeconfig an Airflow Kubernetes connection describes (kube_config or kube_config_path),
    with its cluster_context made current; None for in-cluster or default configurations."""
    def field(name: str) -> Any:
        return extras.get(name) or extras.get(f"extra__kubernetes__{name}")

    raw, path = field("kube_config"), field("kube_config_path")
    if raw:
        config = yaml.safe_load(raw) if isinstance(raw, str) else dict(raw)  # JSON or YAML text
    elif path:
        with open(os.path.expanduser(str(path))) as handle:
            config = yaml.safe_load(handle)
    else:
        return None
    if field("cluster_context"):
        config["current-context"] = field("cluster_context")
    return dict(config)

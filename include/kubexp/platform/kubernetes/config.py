"""The kubernetes platform's settings, read from a suite's `kubernetes:` section (and `load:` for load hosts).

Keys this platform reads (all optional unless a step needs them; docs/cluster-setup.md has a full example):
    conn_id          Airflow Kubernetes connection with the kubeconfig (default "kubexp_kubernetes")
    namespace        the app's namespace (shared with kubexp.platform.kubernetes.manifests; default "kubexp")
    ingress_host     address the load and the sanity request use (default: first Ready node's
                     ExternalIP, else InternalIP)
    sanity_path      path of the sanity request after the rollout (default "/healthz")
    field_manager    server-side apply field manager (default "kubexp")
    timeouts         {rollout_s, teardown_s, node_ready_s, server_active_s, load_server_s,
                      command_s, http_s, poll_interval_s}
    openstack_cloud  cloud name in clouds.yaml (OS_CLIENT_CONFIG_FILE) for reboots
    openstack        {conn_id, server_names: {node: server}, server_name_template, reboot_type}
    istio            see istio.py (installer, version, ...; the manifests read gateway_selector/gateway_port)
    etcd             {members: [{name, ssh_conn_id, endpoint}], profile: {...}, dry_run, manage, restart}
    load_hosts       {restart_command: [...], sudo, service}
Errors name the suite file and the key path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubexp.platform.kubernetes.etcd_ssh import RESTARTS, EtcdMember, EtcdProfile
from kubexp.platform.kubernetes.istio import IstioSettings
from kubexp.platform.kubernetes.loadhosts import LoadHostSettings
from kubexp.platform.kubernetes.openstack import OpenStackSettings
from kubexp.suite import LoadSection

if TYPE_CHECKING:
    from kubexp.suite import Suite

DEFAULT_CONN_ID = "kubexp_kubernetes"
# Keys of the section read here; kubexp.platform.kubernetes.manifests reads the keys of its DEFAULTS.
_SECTION_KEYS = ("conn_id", "namespace", "ingress_host", "sanity_path", "field_manager", "timeouts",
                 "openstack_cloud", "openstack", "istio", "etcd", "load_hosts")


class SettingsError(ValueError):
    """A `kubernetes:` setting that cannot be used; names the suite file and key."""


@dataclass(frozen=True)
class Timeouts:
    rollout_s: float = 600.0
    teardown_s: float = 600.0
    node_ready_s: float = 900.0
    server_active_s: float = 600.0
    load_server_s: float = 120.0
    command_s: float = 900.0
    http_s: float = 10.0
    poll_interval_s: float = 1.0  # one GET a second while waiting: nothing to an API server


@dataclass(frozen=True)
class KubernetesSettings:
    raw: Mapping[str, Any]  # the whole section, as kubexp.platform.kubernetes.manifests.render reads it
    conn_id: str = DEFAULT_CONN_ID
    namespace: str = "kubexp"
    ingress_host: str | None = None
    sanity_path: str = "/healthz"
    field_manager: str = "kubexp"
    timeouts: Timeouts = field(default_factory=Timeouts)
    istio: IstioSettings = field(default_factory=IstioSettings)
    openstack: OpenStackSettings = field(default_factory=OpenStackSettings)
    etcd_members: tuple[EtcdMember, ...] = ()
    etcd_profile: EtcdProfile = field(default_factory=EtcdProfile)
    etcd_dry_run: bool = False
    etcd_manage: bool = True
    etcd_restart: str = "always"  # or "on-change" (kubexp.platform.kubernetes.etcd_ssh)
    load: LoadSection = field(default_factory=LoadSection)  # the suite's load section (servers, ssh_conn_ids)
    path: str = "<suite>"
    load_host_settings: LoadHostSettings = field(default_factory=LoadHostSettings)


def settings_from_suite(suite: Suite) -> KubernetesSettings:
    from kubexp.load import profiles

    try:
        section = profiles.app_settings(suite.kubernetes, suite.load)
    except profiles.ProfileError as exc:
        raise SettingsError(f"{suite.path}: kubernetes: {exc}") from None
    return parse_settings(section, suite.load, suite.path)


def parse_settings(section: Mapping[str, Any], load: LoadSection | None = None,
                   path: Path | str = "<suite>") -> KubernetesSettings:
    """Typed settings from the raw sections; SettingsError names `path` and the key."""
    from kubexp.platform.kubernetes.manifests import DEFAULTS as MANIFEST_DEFAULTS

    def where(key: str) -> str:
        return f"{path}: kubernetes.{key}"

    known = {*_SECTION_KEYS, *MANIFEST_DEFAULTS}
    unknown = sorted(set(section) - known)
    if unknown:
        raise SettingsError(f"{path}: kubernetes: unknown key(s) {', '.join(unknown)}; "
                            f"allowed: {', '.join(sorted(known))}")
    try:
        timeouts = Timeouts(**{k: float(v) for k, v in dict(section.get("timeouts") or {}).items()})
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{where('timeouts')}: {exc}; allowed keys: "
                            f"{', '.join(Timeouts.__dataclass_fields__)}, each a number of seconds") from None
    etcd = dict(section.get("etcd") or {})
    unknown = sorted(set(etcd) - {"members", "profile", "dry_run", "manage", "restart"})
    if unknown:
        raise SettingsError(f"{where('etcd')}: unknown key(s) {', '.join(unknown)}; "
                            f"allowed: members, profile, dry_run, manage, restart")
    etcd_restart = etcd.get("restart", "always")
    if etcd_restart not in RESTARTS:
        raise SettingsError(f"{where('etcd.restart')}: {etcd_restart!r}; allowed: {', '.join(RESTARTS)} (always: "
                            f"restart etcd in every experiment; on-change: only when its storage or fsync delay "
                            f"changes, or it is not the process kubexp last started)")
    try:
        members = tuple(
            EtcdMember(name=str(m["name"]), ssh_conn_id=str(m["ssh_conn_id"]),
                       **({"endpoint": str(m["endpoint"])} if m.get("endpoint") else {}))
            for m in etcd.get("members") or []
        )
        profile = EtcdProfile.from_mapping(dict(etcd.get("profile") or {}), where=where("etcd.profile"))
        istio = IstioSettings.from_mapping(dict(section.get("istio") or {}), where=where("istio"))
        openstack = OpenStackSettings.from_mapping(
            dict(section.get("openstack") or {}), cloud=section.get("openstack_cloud"), where=where("openstack"))
        host_settings = LoadHostSettings.from_mapping(dict(section.get("load_hosts") or {}),
                                                      where=where("load_hosts"))
    except (KeyError, TypeError) as exc:
        raise SettingsError(f"{where('etcd.members')}: each member needs name and ssh_conn_id ({exc})") from None
    except ValueError as exc:
        raise SettingsError(str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}") from None
    sanity_path = str(section.get("sanity_path", "/healthz"))
    if not sanity_path.startswith("/"):
        raise SettingsError(f"{where('sanity_path')}: {sanity_path!r} must start with /")
    return KubernetesSettings(
        raw=section, conn_id=str(section.get("conn_id") or DEFAULT_CONN_ID),
        namespace=str(section.get("namespace") or MANIFEST_DEFAULTS["namespace"]),
        ingress_host=section.get("ingress_host"), sanity_path=sanity_path,
        field_manager=str(section.get("field_manager", "kubexp")), timeouts=timeouts, istio=istio,
        openstack=openstack, etcd_members=members, etcd_profile=profile, etcd_dry_run=bool(etcd.get("dry_run")),
        etcd_manage=bool(etcd.get("manage", True)), etcd_restart=etcd_restart,
        load=load or LoadSection(), path=str(path), load_host_settings=host_settings,
    )

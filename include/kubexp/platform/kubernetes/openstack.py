"""Reboot the OpenStack server behind a Kubernetes node, through openstacksdk, bounded.

Credentials come from a clouds.yaml entry (`openstack_cloud`, found through
OS_CLIENT_CONFIG_FILE or the usual locations) or from an Airflow connection
(`openstack.conn_id`: host = auth URL, login/password, extras such as project_name,
user_domain_name, project_domain_name, region_name, interface, auth_type). A node maps to a
server by `server_names` or `server_name_template` (default: the node name).

The server is fetched again after the reboot call and only then waited on: a Server object
that still says ACTIVE would make openstacksdk's wait return at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubexp.platform.base import PlatformError
from kubexp.platform.kubernetes.commands import fill

if TYPE_CHECKING:
    from openstack.connection import Connection

REBOOT_TYPES = ("SOFT", "HARD")
_TOP_LEVEL = ("region_name", "interface", "auth_type", "verify", "cacert", "identity_api_version")


@dataclass(frozen=True)
class OpenStackSettings:
    cloud: str | None = None
    conn_id: str | None = None
    server_names: Mapping[str, str] = field(default_factory=dict)
    server_name_template: str = "{node}"
    reboot_type: str = "SOFT"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], cloud: str | None = None,
                     where: str = "kubernetes.openstack") -> OpenStackSettings:
        known = set(cls.__dataclass_fields__) - {"cloud"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))} "
                             f"(the clouds.yaml cloud is kubernetes.openstack_cloud)")
        reboot_type = str(data.get("reboot_type", "SOFT")).upper()
        if reboot_type not in REBOOT_TYPES:
            raise ValueError(f"{where}.reboot_type: {reboot_type!r}; allowed: {', '.join(REBOOT_TYPES)}")
        names = data.get("server_names") or {}
        if not isinstance(names, Mapping):
            raise ValueError(f"{where}.server_names: must map node names to server names or ids")
        template = str(data.get("server_name_template", "{node}"))
        fill([template], {"node": "x"}, f"{where}.server_name_template")
        return cls(cloud=cloud, conn_id=data.get("conn_id"), server_names={str(k): str(v) for k, v in names.items()},
                   server_name_template=template, reboot_type=reboot_type)

    def server_for(self, node: str) -> str:
        return self.server_names.get(node) or fill([self.server_name_template], {"node": node})[0]


class OpenStackRebooter:
    def __init__(self, settings: OpenStackSettings, *, active_timeout_s: float = 600.0,
                 interval_s: float = 5.0) -> None:
        self.settings = settings
        self.active_timeout_s = active_timeout_s
        self.interval_s = interval_s

    def connect(self) -> Connection:
        import openstack

        s = self.settings
        try:
            if s.conn_id:
                return openstack.connect(load_yaml_config=False, load_envvars=False, **_connection_config(s.conn_id))
            if s.cloud:
                return openstack.connect(cloud=s.cloud)
        except Exception as exc:  # config lookup errors come in several types
            source = f"Airflow connection {s.conn_id!r}" if s.conn_id else f"cloud {s.cloud!r} in clouds.yaml"
            raise PlatformError(f"OpenStack: cannot configure a connection from {source} ({exc})") from exc
        raise PlatformError("OpenStack is not configured: set kubernetes.openstack_cloud (a clouds.yaml entry) or "
                            "kubernetes.openstack.conn_id (an Airflow connection) to reboot nodes")

    def reboot(self, node: str) -> dict[str, Any]:
        """Reboot the server behind `node` and wait (bounded) until OpenStack reports it ACTIVE again."""
        from keystoneauth1.exceptions import ClientException
        from openstack import exceptions

        ref = self.settings.server_for(node)
        label = f"node {node} (OpenStack server {ref})"
        try:
            conn = self.connect()
        except PlatformError as exc:
            raise PlatformError(f"{label}: {exc}") from exc
        try:
            compute = conn.compute
            try:
                server = compute.find_server(ref, ignore_missing=False)
            except exceptions.NotFoundException as exc:
                raise PlatformError(f"node {node}: no OpenStack server named or with id {ref!r}; map the node in "
                                    f"kubernetes.openstack.server_names or fix server_name_template") from exc
            before = server.status
            if before == "SHUTOFF":
                compute.start_server(server)
                action = "start"
            elif before in ("REBOOT", "HARD_REBOOT"):
                action = "none (already rebooting)"
            else:
                action = self.settings.reboot_type if before == "ACTIVE" else "HARD"  # SOFT is refused off ACTIVE
                compute.reboot_server(server, action)
            server = compute.get_server(server.id)  # fresh state: the object above may still say ACTIVE
            server = compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"],
                                             interval=self.interval_s, wait=self.active_timeout_s)
        except exceptions.ResourceTimeout as exc:
            raise PlatformError(f"{label}: not ACTIVE {self.active_timeout_s:g} s after the reboot; "
                                f"check it in the OpenStack console") from exc
        except exceptions.ResourceFailure as exc:
            raise PlatformError(f"{label}: went to ERROR during the reboot; check it in the OpenStack console") \
                from exc
        except (exceptions.SDKException, ClientException) as exc:  # API errors; authentication and transport
            raise PlatformError(f"{label}: OpenStack API call failed ({exc}); check the credentials and the "
                                f"cloud's status") from exc
        return {"node": node, "server": server.name, "server_id": server.id, "status_before": before,
                "action": action, "status": server.status}


def _connection_config(conn_id: str) -> dict[str, Any]:
    """openstack.connect arguments from an Airflow connection (secrets stay in the connection)."""
    from kubexp import connections

    conn = connections.connection(conn_id)
    extra = dict(conn.extra_dejson)
    auth = {"auth_url": extra.pop("auth_url", None) or conn.host, "username": conn.login, "password": conn.password}
    top = {key: extra.pop(key) for key in _TOP_LEVEL if key in extra}
    auth.update(extra)
    return {"auth": {k: v for k, v in auth.items() if v}, "identity_api_version": "3", **top}

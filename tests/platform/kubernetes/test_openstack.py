"""openstacksdk against the Keystone + Nova fake, configured from an Airflow connection instead of clouds.yaml."""

from __future__ import annotations

import json

import pytest
from fake_openstack import FakeOpenStack

from kubexp.platform.base import PlatformError
from kubexp.platform.kubernetes.openstack import OpenStackRebooter, OpenStackSettings


def test_reboot_with_credentials_from_an_airflow_connection(openstack_cloud: FakeOpenStack,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    auth = openstack_cloud.auth_settings()["auth"]
    monkeypatch.setenv("AIRFLOW_CONN_KX_OPENSTACK", json.dumps({
        "conn_type": "generic", "host": auth["auth_url"], "login": auth["username"], "password": auth["password"],
        "extra": {"project_name": "research", "user_domain_name": "Default", "project_domain_name": "Default",
                  "region_name": "RegionOne", "interface": "public"}}))
    monkeypatch.delenv("OS_CLIENT_CONFIG_FILE")  # nothing from clouds.yaml
    server = openstack_cloud.add_server("vm-master-1", polls_to_active=1)
    settings = OpenStackSettings.from_mapping({"conn_id": "kx_openstack", "server_names": {"master-1": server.id},
                                               "reboot_type": "hard"})

    facts = OpenStackRebooter(settings, active_timeout_s=10, interval_s=0.05).reboot("master-1")

    assert facts == {"node": "master-1", "server": "vm-master-1", "server_id": server.id, "status_before": "ACTIVE",
                     "action": "HARD", "status": "ACTIVE"}
    token = next(r for r in openstack_cloud.requests if r.path == "/identity/v3/auth/tokens")
    identity = token.body["auth"]["identity"]
    assert identity["methods"] == ["password"]
    assert identity["password"]["user"]["name"] == "kubexp" and identity["password"]["user"]["password"] == "s3cret-pw"
    assert token.body["auth"]["scope"]["project"]["name"] == "research"
    assert server.actions == ["HARD"]


def test_a_shut_off_server_is_started_instead(openstack_cloud: FakeOpenStack) -> None:
    server = openstack_cloud.add_server("worker-5", status="SHUTOFF")
    settings = OpenStackSettings.from_mapping({}, cloud="kx-test")
    facts = OpenStackRebooter(settings, active_timeout_s=10, interval_s=0.05).reboot("worker-5")
    assert (facts["status_before"], facts["action"], facts["status"]) == ("SHUTOFF", "start", "ACTIVE")
    assert [r.body for r in openstack_cloud.compute_requests() if r.method == "POST"] == [{"os-start": None}]
    assert server.actions == ["os-start"]


def test_settings_are_checked() -> None:
    assert OpenStackSettings.from_mapping({"server_name_template": "k8s-{node}"}).server_for("w1") == "k8s-w1"
    with pytest.raises(ValueError, match=r"reboot_type: 'WARM'; allowed: SOFT, HARD"):
        OpenStackSettings.from_mapping({"reboot_type": "warm"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) cloud"):
        OpenStackSettings.from_mapping({"cloud": "x"})
    with pytest.raises(ValueError, match=r"placeholder \{name\} is unknown"):
        OpenStackSettings.from_mapping({"server_name_template": "{name}"})


def test_bad_credentials_and_missing_configuration_name_the_node(openstack_cloud: FakeOpenStack,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    openstack_cloud.add_server("worker-6")
    monkeypatch.setenv("AIRFLOW_CONN_KX_OPENSTACK_BAD", json.dumps({
        "conn_type": "generic", "host": openstack_cloud.auth_settings()["auth"]["auth_url"], "login": "kubexp",
        "password": "wrong-password", "extra": {"project_name": "research", "user_domain_name": "Default",
                                                "project_domain_name": "Default"}}))
    bad = OpenStackSettings.from_mapping({"conn_id": "kx_openstack_bad"})
    with pytest.raises(PlatformError, match=r"node worker-6 \(OpenStack server worker-6\): OpenStack API call failed"):
        OpenStackRebooter(bad, active_timeout_s=2, interval_s=0.05).reboot("worker-6")
    with pytest.raises(PlatformError, match=r"node worker-6 .*OpenStack is not configured"):
        OpenStackRebooter(OpenStackSettings()).reboot("worker-6")
    assert openstack_cloud.compute_requests() == []  # nothing reached Nova without a token

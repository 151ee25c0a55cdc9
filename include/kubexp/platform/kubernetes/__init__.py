"""The `kubernetes` platform: a real cluster (kubeconfig via an Airflow connection), Istio through
istioctl or helm, OpenStack reboots through openstacksdk, etcd and JMeter hosts over SSH."""

from kubexp.platform.kubernetes.platform import KubernetesPlatform

__all__ = ["KubernetesPlatform"]

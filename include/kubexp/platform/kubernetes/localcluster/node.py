"""Start, inspect and stop the single-node cluster.

Everything lives under one folder (KUBEXP_CLUSTER_DIR, default /var/lib/kubexp-cluster): certificates,
configuration, etcd's data, containerd's and the kubelet's state, logs and PID files. The API server,
etcd, the controllers' and kube-proxy's ports listen on 127.0.0.1; the kubelet and metrics-server on
the node address, the gateway of the pod bridge, which exists only on this machine.
`down` stops every process, removes every container, mount, the bridge and the iptables chains the
cluster made, and the folder itself; the build cache stays.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubexp.platform.kubernetes.localcluster import build
from kubexp.platform.kubernetes.localcluster.etcd_service import etcd_process
from kubexp.platform.kubernetes.localcluster.pki import Authority, service_account_keys, write_private
from kubexp.platform.kubernetes.localcluster.sshd import Sshd
from kubexp.platform.kubernetes.localcluster.supervise import read_restarts
from kubexp.processes import ManagedProcess, ProcessError

NODE_NAME = "kubexp-node"
BRIDGE = "kubexp0"
POD_CIDR = "10.244.0.0/24"
NODE_IP = "10.244.0.1"  # the bridge's own address: reachable from this machine and its pods only
SERVICE_CIDR = "10.96.0.0/16"
API_SERVICE_IP = "10.96.0.1"
API_PORT = 16443
ETCD_CLIENT_PORT, ETCD_PEER_PORT, ETCD_METRICS_PORT = 12379, 12380, 12381
METRICS_SERVER_PORT = 14443
SSH_PORT = 12222
# Packages the node needs from Debian (make setup installs them).
HOST_PROGRAMS = {"containerd": "containerd", "runc": "runc", "ctr": "containerd", "iptables": "iptables",
                 "conntrack": "conntrack", "ip": "iproute2", "mount": "mount"}
CNI_DIR = Path("/usr/lib/cni")
SYSCTLS = {"net/ipv4/ip_forward": "1", "net/bridge/bridge-nf-call-iptables": "1"}
# The kubelet sets these itself (protectKernelDefaults: false); `down` puts the machine's values back.
KUBELET_SYSCTLS = ("kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory", "vm/panic_on_oom")
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
NODE_PROCESSES = ("kubelet", "kube-proxy")


class ClusterError(RuntimeError):
    """The cluster cannot be started or stopped; the message says which part and what to do."""


def cluster_root() -> Path:
    return Path(os.environ.get("KUBEXP_CLUSTER_DIR", "/var/lib/kubexp-cluster")).resolve()


@dataclass
class LocalCluster:
    root: Path

    @classmethod
    def from_env(cls) -> LocalCluster:
        return cls(cluster_root())

    # --- paths ----------------------------------------------------------------------------------------------------
    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "admin.conf"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def etcd_env_file(self) -> Path:
        return self.root / "etcd" / "etcd.env"

    @property
    def sshd(self) -> Sshd:
        return Sshd(self.root / "ssh", SSH_PORT)

    def etcd_profile(self) -> dict[str, Any]:
        """kubernetes.etcd.profile for this node: Kubespray's steps, with this folder's paths and the
        etcd-service script in place of systemctl (suites/kube-local.yaml spells out the same values)."""
        root, pki = self.root, self.pki / "etcd"
        return {
            "env_file": str(self.etcd_env_file), "disk_path": f"{root}/etcd/disk",
            "ramdisk_path": f"{root}/etcd/ramdisk", "ramdisk_size": "512m", "backup_dir": f"{root}/etcd/snapshots",
            "etcdctl": [f"{root}/bin/etcdctl", "--endpoints={endpoint}", f"--cacert={pki}/ca.crt",
                        f"--cert={pki}/admin-{{member}}.crt", f"--key={pki}/admin-{{member}}.key"],
            "metrics": ["curl", "-sSf", f"http://127.0.0.1:{ETCD_METRICS_PORT}/metrics"],
            "stop": [f"{root}/bin/etcd-service", "stop"], "start": [f"{root}/bin/etcd-service", "start"],
            "set_fsync_delay": [f"{root}/bin/etcd-service", "fsync-delay", "{fsync_delay_ms}"],
        }

    def etcd_members(self) -> list[dict[str, str]]:
        return [{"name": NODE_NAME, "ssh_conn_id": "kubexp_cluster_ssh",
                 "endpoint": f"https://127.0.0.1:{ETCD_CLIENT_PORT}"}]

    def restarts_file(self, name: str) -> Path:
        return self.root / "pids" / f"{name}.restarts"

    def _process(self, name: str, argv: list[str], ports: Iterable[int] = (), ready: Callable[[], bool] | None = None,
                 env: dict[str, str] | None = None) -> ManagedProcess:
        """A component kept running by `supervise` (restarted when it exits, as on a real node)."""
        supervised = [sys.executable, "-m", "kubexp.platform.kubernetes.localcluster.supervise",
                      str(self.restarts_file(name)), "--", *argv]
        return ManagedProcess(name=name, argv=supervised, state_dir=self.root, ports=list(ports), ready=ready,
                              env=env)

    def recorded(self) -> list[ManagedProcess]:
        """Every process of the cluster as its PID file records it, in stop order."""
        names = ("kube-proxy", "kubelet", "kube-scheduler", "kube-controller-manager", "kube-apiserver",
                 "sshd", "etcd", "containerd")
        return [ManagedProcess(name, (), self.root) for name in names]

    @contextlib.contextmanager
    def exclusive(self, purpose: str = "operation") -> Iterator[None]:
        """Hold the machine-wide lock of this cluster folder (`<folder>.<purpose>.lock`): one kubelet, one
        bridge and one set of ports per machine, so concurrent `up`/`down` calls (or test sessions) wait."""
        lock = self.root.with_name(f"{self.root.name}.{purpose}.lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- up -------------------------------------------------------------------------------------------------------
    def up(self, log: Callable[[str], None] = print) -> dict[str, Any]:
        with self.exclusive():
            return self._up(log)

    def _up(self, log: Callable[[str], None]) -> dict[str, Any]:
        started = time.monotonic()
        self._check_host()
        if self.running():
            log(f"cluster: already running (folder {self.root})")
            return self.status()
        bin_dir = build.build_binaries(log)
        images = [build.pause_image(bin_dir), build.metrics_server_image(bin_dir),
                  build.app_image(bin_dir, self.app_image_name(), log)]
        self._clear_leftovers(log)
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        (self.root / "bin").mkdir()
        for name in build.BINARIES:
            (self.root / "bin" / name).symlink_to(bin_dir / name)
        self._write_pki()
        self.sshd.prepare()
        script = self.root / "bin" / "etcd-service"
        script.write_text(f"#!/bin/sh\n# start|stop this cluster's etcd (what systemctl does on a Kubespray node)\n"
                          f"exec {sys.executable} -m kubexp.platform.kubernetes.localcluster.etcd_service "
                          f"{self.root} \"$@\"\n")
        script.chmod(0o700)
        self._network_up()
        self._write_configs()
        steps: list[tuple[str, Callable[[], object]]] = [
            ("containerd", lambda: self._start_containerd(images)),
            ("etcd", lambda: etcd_process(self.root).start(timeout=60)),
            ("sshd", lambda: self.sshd.process(self.root).start(timeout=30)),
            ("kube-apiserver", self._start_apiserver),
            ("controllers", self._start_controllers),
            ("kubelet, kube-proxy", self._start_node),
            ("metrics-server", self._start_metrics_server),
        ]
        try:
            for what, step in steps:
                step_started = time.monotonic()
                step()
                log(f"cluster: {what} up in {time.monotonic() - step_started:.1f} s")
        except (ProcessError, ClusterError, subprocess.CalledProcessError) as exc:
            log(f"cluster: start failed ({exc}); stopping what started")
            self._down(log=lambda _line: None, keep_logs=True)
            raise ClusterError(f"cluster up failed: {exc} (logs kept in {self.root}/logs)") from exc
        log(f"cluster: node {NODE_NAME} Ready, Kubernetes {build.KUBERNETES_VERSION}, "
            f"{time.monotonic() - started:.0f} s; kubeconfig {self.kubeconfig}")
        return self.status()

    @staticmethod
    def app_image_name() -> str:
        from kubexp.platform.kubernetes.manifests import DEFAULTS

        image = str(DEFAULTS["image"])
        return image if "/" in image else f"docker.io/library/{image}"

    def _check_host(self) -> None:
        if os.geteuid() != 0:
            raise ClusterError("the local cluster runs a kubelet, containerd and iptables rules: run as root")
        missing = sorted({package for program, package in HOST_PROGRAMS.items() if shutil.which(program) is None}
                         | ({"containernetworking-plugins"} if not (CNI_DIR / "bridge").exists() else set()))
        if missing:
            raise ClusterError(f"missing Debian packages for the local cluster: {', '.join(missing)}; "
                               f"run `make setup` (it installs them)")
        if not Path("/sys/fs/cgroup/memory").is_dir() and not Path("/sys/fs/cgroup/cgroup.controllers").exists():
            raise ClusterError("no memory cgroup controller under /sys/fs/cgroup: the kubelet cannot enforce limits")

    def running(self) -> bool:
        return all(proc.running_pid() is not None for proc in self.recorded())

    def _clear_leftovers(self, log: Callable[[str], None]) -> None:
        if self.root.exists():
            log(f"cluster: clearing what an earlier cluster left in {self.root}")
            self._down(log=log)

    def _write_pki(self) -> None:
        pki = self.pki
        ca = Authority(pki, "ca", "kubexp-cluster-ca")
        ca.issue("apiserver", "kube-apiserver", server=True,
                 hosts=("127.0.0.1", API_SERVICE_IP, NODE_IP, "localhost", "kubernetes", "kubernetes.default",
                        "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"))
        ca.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",), client=True)
        ca.issue("admin", "kubernetes-admin", ("system:masters",), client=True)
        ca.issue("controller-manager", "system:kube-controller-manager", client=True)
        ca.issue("scheduler", "system:kube-scheduler", client=True)
        ca.issue("kube-proxy", "system:kube-proxy", ("system:node-proxier",), client=True)
        ca.issue("kubelet-client", f"system:node:{NODE_NAME}", ("system:nodes",), client=True)
        ca.issue("kubelet", NODE_NAME, server=True, hosts=(NODE_IP, NODE_NAME))
        # metrics-server reaches the API server as its ServiceAccount would (RBAC binds that user name).
        ca.issue("metrics-server", "system:serviceaccount:kube-system:metrics-server", ("system:serviceaccounts",),
                 client=True)
        etcd = Authority(pki / "etcd", "ca", "kubexp-etcd-ca")
        etcd.issue("server", NODE_NAME, server=True, client=True, hosts=("127.0.0.1", "localhost"))
        etcd.issue("apiserver-etcd-client", "kube-apiserver-etcd-client", client=True)
        etcd.issue(f"admin-{NODE_NAME}", "kubexp-etcdctl", client=True)
        proxy = Authority(pki, "front-proxy-ca", "kubexp-front-proxy-ca")
        proxy.issue("front-proxy-client", "front-proxy-client", client=True)
        service_account_keys(pki)

    def _kubeconfig(self, name: str, cert: str) -> Path:
        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "kubexp",
            "clusters": [{"name": "kubexp", "cluster": {"server": f"https://127.0.0.1:{API_PORT}",
                                                          "certificate-authority-data": b64(self.pki / "ca.crt")}}],
            "users": [{"name": name, "user": {"client-certificate-data": b64(self.pki / f"{cert}.crt"),
                                              "client-key-data": b64(self.pki / f"{cert}.key")}}],
            "contexts": [{"name": "kubexp", "context": {"cluster": "kubexp", "user": name}}],
        }
        path = self.kubeconfig if name == "admin" else self.root / "kubeconfigs" / f"{name}.conf"
        write_private(path, yaml.safe_dump(config).encode())
        return path

    def _network_up(self) -> None:
        subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE], check=True)
        subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)
        saved = {key: (Path("/proc/sys") / key).read_text().strip() for key in KUBELET_SYSCTLS}
        for key, value in SYSCTLS.items():
            path = Path("/proc/sys") / key
            if not path.exists():
                raise ClusterError(f"/proc/sys/{key} is missing: the kernel needs bridge netfilter (br_netfilter)")
            saved[key] = path.read_text().strip()
            path.write_text(value)
        (self.root / "sysctl.json").write_text(json.dumps(saved))

    def _write_configs(self) -> None:
        root = self.root
        for name, cert in (("controller-manager", "controller-manager"), ("scheduler", "scheduler"),
                           ("kubelet", "kubelet-client"), ("kube-proxy", "kube-proxy"), ("admin", "admin"),
                           ("metrics-server", "metrics-server")):
            self._kubeconfig(name, cert)
        (root / "containerd").mkdir()
        (root / "containerd" / "config.toml").write_text(f"""\
version = 2
root = "{root}/containerd/root"
state = "{root}/containerd/state"
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{root}/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{build.PAUSE_IMAGE}"
  # Without CAP_SYS_RESOURCE (some sandboxes drop it from root) no process may lower its OOM score:
  # containers then keep containerd's score instead of failing to start.
  restrict_oom_score_adj = {"false" if _can_lower_oom_score() else "true"}
  stream_server_address = "127.0.0.1"
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_DIR}"
    conf_dir = "{root}/cni"
""")
        (root / "cni").mkdir()
        (root / "cni" / "10-kubexp.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": "kubexp",
            "plugins": [
                {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": f"{root}/cni/ipam"}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }, indent=1))
        (root / "etcd" / "disk").mkdir(parents=True, mode=0o700)
        (root / "etcd" / "snapshots").mkdir(mode=0o700)
        etcd_pki = self.pki / "etcd"
        client, peer = f"https://127.0.0.1:{ETCD_CLIENT_PORT}", f"https://127.0.0.1:{ETCD_PEER_PORT}"
        # Written like Kubespray's /etc/etcd.env: the etcd step edits ETCD_DATA_DIR in place.
        self.etcd_env_file.write_text("\n".join([
            f"ETCD_DATA_DIR={root}/etcd/disk", f"ETCD_NAME={NODE_NAME}",
            f"ETCD_LISTEN_CLIENT_URLS={client}", f"ETCD_ADVERTISE_CLIENT_URLS={client}",
            f"ETCD_LISTEN_PEER_URLS={peer}", f"ETCD_INITIAL_ADVERTISE_PEER_URLS={peer}",
            f"ETCD_INITIAL_CLUSTER={NODE_NAME}={peer}", "ETCD_INITIAL_CLUSTER_STATE=new",
            f"ETCD_LISTEN_METRICS_URLS=http://127.0.0.1:{ETCD_METRICS_PORT}",
            f"ETCD_CERT_FILE={etcd_pki}/server.crt", f"ETCD_KEY_FILE={etcd_pki}/server.key",
            f"ETCD_TRUSTED_CA_FILE={etcd_pki}/ca.crt", "ETCD_CLIENT_CERT_AUTH=true",
            f"ETCD_PEER_CERT_FILE={etcd_pki}/server.crt", f"ETCD_PEER_KEY_FILE={etcd_pki}/server.key",
            f"ETCD_PEER_TRUSTED_CA_FILE={etcd_pki}/ca.crt", "ETCD_PEER_CLIENT_CERT_AUTH=true",
            "KUBEXP_FSYNC_DELAY_MS=0", "",
        ]))
        (root / "kubelet").mkdir()
        (root / "kubelet" / "config.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": NODE_IP, "port": 10250, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.pki / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(self.pki / "kubelet.crt"), "tlsPrivateKeyFile": str(self.pki / "kubelet.key"),
            "cgroupDriver": "cgroupfs", "failCgroupV1": False, "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "resolvConf": "/etc/resolv.conf", "serializeImagePulls": False,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "rotateCertificates": False, "serverTLSBootstrap": False, "podCIDR": POD_CIDR,
            "nodeStatusUpdateFrequency": "10s", "syncFrequency": "10s",
        }))
        (root / "kube-proxy.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration", "mode": "iptables",
            "clientConnection": {"kubeconfig": str(root / "kubeconfigs" / "kube-proxy.conf")},
            "bindAddress": "127.0.0.1", "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249", "clusterCIDR": POD_CIDR, "hostnameOverride": NODE_NAME,
            "nodePortAddresses": ["127.0.0.0/8", f"{NODE_IP}/32"],
            "conntrack": {"maxPerCore": 0},
        }))

    def _ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ctr", "--address", str(self.containerd_socket), "--namespace", "k8s.io", *args],
                              capture_output=True, text=True, timeout=600)

    def _start_containerd(self, images: list[Path]) -> None:
        self._process("containerd", ["containerd", "--config", str(self.root / "containerd" / "config.toml")],
                      ready=self.containerd_socket.exists).start(timeout=60)
        for image in images:
            done = self._ctr("images", "import", "--no-unpack=false", str(image))
            if done.returncode != 0:
                raise ClusterError(f"importing {image.name} into containerd failed: {done.stderr.strip()[-500:]}")

    def _kubectl(self, *args: str, input_text: str | None = None, timeout: float = 60,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(self.root / "bin" / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
                              input=input_text, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()[-800:]}")
        return done

    def _healthy(self, path: str) -> bool:
        try:
            return self._kubectl("get", "--raw", path, check=False, timeout=20).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def api_healthy(self) -> bool:
        return self._healthy("/readyz")

    def _start_apiserver(self) -> None:
        pki, etcd_pki = self.pki, self.pki / "etcd"
        argv = [
            str(self.root / "bin" / "kube-apiserver"),
            "--bind-address=127.0.0.1", f"--secure-port={API_PORT}", f"--advertise-address={NODE_IP}",
            f"--etcd-servers=https://127.0.0.1:{ETCD_CLIENT_PORT}", f"--etcd-cafile={etcd_pki}/ca.crt",
            f"--etcd-certfile={etcd_pki}/apiserver-etcd-client.crt",
            f"--etcd-keyfile={etcd_pki}/apiserver-etcd-client.key",
            f"--tls-cert-file={pki}/apiserver.crt", f"--tls-private-key-file={pki}/apiserver.key",
            f"--client-ca-file={pki}/ca.crt",
            f"--kubelet-client-certificate={pki}/apiserver-kubelet-client.crt",
            f"--kubelet-client-key={pki}/apiserver-kubelet-client.key",
            f"--kubelet-certificate-authority={pki}/ca.crt", "--kubelet-preferred-address-types=InternalIP",
            f"--service-account-key-file={pki}/sa.pub", f"--service-account-signing-key-file={pki}/sa.key",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--service-node-port-range=30000-32767",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            f"--requestheader-client-ca-file={pki}/front-proxy-ca.crt",
            "--requestheader-allowed-names=front-proxy-client", "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--requestheader-group-headers=X-Remote-Group", "--requestheader-username-headers=X-Remote-User",
            f"--proxy-client-cert-file={pki}/front-proxy-client.crt",
            f"--proxy-client-key-file={pki}/front-proxy-client.key", "--enable-aggregator-routing=true",
            "--profiling=false",
        ]
        self._process("kube-apiserver", argv, ports=[API_PORT], ready=lambda: self._healthy("/readyz")).start(
            timeout=180)

    def _start_controllers(self) -> None:
        """Both with leader election, as kubeadm and Kubespray run them: when etcd is too slow to renew the
        lease they exit (the paper's section 7.2.1, problem 2) and `supervise` starts them again."""
        pki, confs = self.pki, self.root / "kubeconfigs"
        self._process("kube-controller-manager", [
            str(self.root / "bin" / "kube-controller-manager"), "--bind-address=127.0.0.1",
            f"--kubeconfig={confs}/controller-manager.conf",
            f"--authentication-kubeconfig={confs}/controller-manager.conf",
            f"--authorization-kubeconfig={confs}/controller-manager.conf",
            f"--client-ca-file={pki}/ca.crt", f"--requestheader-client-ca-file={pki}/front-proxy-ca.crt",
            f"--cluster-signing-cert-file={pki}/ca.crt", f"--cluster-signing-key-file={pki}/ca.key",
            f"--root-ca-file={pki}/ca.crt", f"--service-account-private-key-file={pki}/sa.key",
            "--use-service-account-credentials=true", "--controllers=*,bootstrapsigner,tokencleaner",
            f"--cluster-cidr={POD_CIDR}", f"--service-cluster-ip-range={SERVICE_CIDR}", "--profiling=false",
        ], ports=[10257]).start(timeout=120)
        self._process("kube-scheduler", [
            str(self.root / "bin" / "kube-scheduler"), "--bind-address=127.0.0.1",
            f"--kubeconfig={confs}/scheduler.conf", f"--authentication-kubeconfig={confs}/scheduler.conf",
            f"--authorization-kubeconfig={confs}/scheduler.conf", "--profiling=false",
        ], ports=[10259]).start(timeout=120)

    def node_ready(self) -> bool:
        try:
            done = self._kubectl("get", "node", NODE_NAME, "-o", "json", check=False, timeout=20)
        except subprocess.TimeoutExpired:
            return False
        if done.returncode != 0:
            return False
        conditions = json.loads(done.stdout).get("status", {}).get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def _start_node(self) -> None:
        root = self.root
        self._process("kubelet", [
            str(root / "bin" / "kubelet"), f"--config={root}/kubelet/config.yaml",
            f"--kubeconfig={root}/kubeconfigs/kubelet.conf", f"--root-dir={root}/kubelet/root",
            f"--node-ip={NODE_IP}", f"--hostname-override={NODE_NAME}",
            # cAdvisor finds containers' names (pod, namespace labels) through containerd's socket only.
            f"--containerd={self.containerd_socket}",
        ], ready=lambda: True).start(timeout=30)
        self._process("kube-proxy", [str(root / "bin" / "kube-proxy"), f"--config={root}/kube-proxy.yaml"],
                      ports=[10256]).start(timeout=60)
        deadline = time.monotonic() + 180
        while not self.node_ready():
            if time.monotonic() > deadline:
                raise ClusterError(f"node {NODE_NAME} not Ready after 180 s; see {root}/logs/kubelet.log")
            if read_restarts(self.restarts_file("kubelet")) >= 3:
                raise ClusterError(f"the kubelet keeps exiting; see {root}/logs/kubelet.log")
            time.sleep(1)

    def _start_metrics_server(self) -> None:
        self._kubectl("apply", "--server-side", "--field-manager=kubexp-cluster", "-f", "-",
                      input_text=yaml.safe_dump_all(metrics_server_objects(self.root)))
        deadline = time.monotonic() + 240
        while not self._healthy("/apis/metrics.k8s.io/v1beta1/nodes"):
            if time.monotonic() > deadline:
                raise ClusterError("metrics-server's API not available after 240 s; "
                                   "`kubectl -n kube-system logs deploy/metrics-server` says why")
            time.sleep(2)

    # --- status ---------------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        processes = {proc.name: proc.running_pid() for proc in self.recorded() if proc.name != "metrics"}
        ready = 0
        if processes.get("kube-apiserver") and self.kubeconfig.exists():
            ready = int(self.node_ready())
        restarts = {name: read_restarts(self.restarts_file(name)) for name in processes
                    if self.restarts_file(name).exists()}
        return {"version": build.KUBERNETES_VERSION, "nodes_ready": ready, "restarts": restarts,
                "kubeconfig": str(self.kubeconfig) if self.kubeconfig.exists() else None,
                "api_server": f"https://127.0.0.1:{API_PORT}", "node_ip": NODE_IP, "folder": str(self.root),
                "etcd_version": build.ETCD_VERSION, "processes": processes}

    # --- down -----------------------------------------------------------------------------------------------------
    def down(self, log: Callable[[str], None] = print) -> list[str]:
        """Stop everything and remove what the cluster made. Returns what was stopped or removed."""
        with self.exclusive():
            return self._down(log)

    def _down(self, log: Callable[[str], None], keep_logs: bool = False) -> list[str]:
        done: list[str] = []
        procs = {proc.name: proc for proc in self.recorded()}
        for name, proc in procs.items():
            if name != "containerd" and proc.stop(timeout=30):
                done.append(name)
        if self.containerd_socket.exists() and procs["containerd"].running_pid() is not None:
            done += self._remove_containers()
        if procs["containerd"].stop(timeout=30):
            done.append("containerd")
        done += _kill_shims(self.root)
        done += _unmount_under(self.root)
        done += _remove_netns()
        if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode == 0:
            subprocess.run(["ip", "link", "delete", BRIDGE], check=True)
            done.append(f"bridge {BRIDGE}")
        done += remove_iptables_chains()
        saved = self.root / "sysctl.json"
        if saved.exists():
            for key, value in json.loads(saved.read_text()).items():
                (Path("/proc/sys") / key).write_text(value)
        done += _remove_pod_cgroups()
        if self.root.exists():
            if keep_logs:
                for child in self.root.iterdir():
                    if child.name != "logs":
                        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            else:
                shutil.rmtree(self.root)
        for line in done:
            log(f"cluster: {line} stopped/removed")
        return done

    def _remove_containers(self) -> list[str]:
        """Kill every task and delete every container of containerd's k8s.io namespace."""
        removed = []
        listing = self._ctr("tasks", "ls", "-q")
        for task in listing.stdout.split():
            self._ctr("tasks", "kill", "--signal", "SIGKILL", task)
        deadline = time.monotonic() + 20
        for task in listing.stdout.split():
            while self._ctr("tasks", "delete", task).returncode != 0 and time.monotonic() < deadline:
                time.sleep(0.2)
        for container in self._ctr("containers", "ls", "-q").stdout.split():
            if self._ctr("containers", "delete", container).returncode == 0:
                removed.append(f"container {container[:12]}")
        return removed


def _can_lower_oom_score() -> bool:
    """Whether this process holds CAP_SYS_RESOURCE (bit 24 of its effective capabilities)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> 24 & 1)
    return False


def _kill_shims(root: Path) -> list[str]:
    """containerd-shim processes of this cluster's containerd (they outlive it by design)."""
    import psutil

    killed = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if (proc.info["name"] or "").startswith("containerd-shim") and any(str(root) in arg for arg in cmdline):
            try:
                for child in proc.children(recursive=True):
                    child.kill()
                proc.kill()
                killed.append(f"shim {proc.pid}")
            except psutil.NoSuchProcess:
                pass
    return killed


def _unmount_under(root: Path) -> list[str]:
    """Unmount every mount below `root`, deepest first (overlay rootfs, shm, volumes, the etcd RAM disk)."""
    unmounted = []
    for _ in range(3):
        mounts = [line.split()[1].encode().decode("unicode_escape")
                  for line in Path("/proc/mounts").read_text().splitlines()]
        below = sorted({m for m in mounts if m == str(root) or m.startswith(f"{root}/")}, key=len, reverse=True)
        if not below:
            break
        for mount in below:
            if subprocess.run(["umount", "--lazy", mount], capture_output=True).returncode == 0:
                unmounted.append(f"mount {mount}")
    return unmounted


def _remove_netns() -> list[str]:
    """Network namespaces containerd's CNI made for pods (/run/netns/cni-*)."""
    removed = []
    for path in sorted(Path("/run/netns").glob("cni-*")) if Path("/run/netns").is_dir() else []:
        subprocess.run(["umount", "--lazy", str(path)], capture_output=True)
        subprocess.run(["ip", "netns", "delete", path.name], capture_output=True)
        path.unlink(missing_ok=True)
        removed.append(f"netns {path.name}")
    return removed


CHAIN_PREFIXES = ("KUBE-", "CNI-")


def remove_iptables_chains() -> list[str]:
    """Rules jumping to, and chains named, KUBE-* or CNI-* in every table, IPv4 and IPv6."""
    removed = []
    for save, restore in (("iptables-save", "iptables-restore"), ("ip6tables-save", "ip6tables-restore")):
        if shutil.which(save) is None:
            continue
        dump = subprocess.run([save], capture_output=True, text=True).stdout
        kept, dropped = filter_iptables_dump(dump)
        if dropped:
            subprocess.run([restore], input=kept, text=True, check=True)
            removed += [f"{save.split('-')[0]} {line}" for line in dropped]
    return removed


def filter_iptables_dump(dump: str) -> tuple[str, list[str]]:
    """`dump` (iptables-save format) without the cluster's chains and the rules that refer to them."""
    kept, dropped = [], []
    for line in dump.splitlines():
        words = line.split()
        if line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES):
            dropped.append(f"chain {words[0][1:]}")
            continue
        if line.startswith("-A ") and any(word.startswith(CHAIN_PREFIXES) for word in words[1:]):
            continue
        kept.append(line)
    return "\n".join(kept) + "\n", dropped


def _remove_pod_cgroups() -> list[str]:
    """The kubelet's kubepods cgroups in every v1 hierarchy (empty once their processes are gone)."""
    removed = []
    for top in sorted(Path("/sys/fs/cgroup").glob("*/kubepods")) + sorted(Path("/sys/fs/cgroup").glob("kubepods")):
        for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            if not any(child.is_dir() for child in folder.iterdir()):
                folder.rmdir()
        try:
            top.rmdir()
            removed.append(f"cgroup {top}")
        except OSError:
            pass
    return removed


def metrics_server_objects(root: Path) -> list[dict[str, Any]]:
    """metrics-server as a host-network pod on the node, with its APIService and the RBAC it needs
    (the objects of metrics-server's own components.yaml, reduced to one node)."""
    name, ns = "metrics-server", "kube-system"
    labels = {"k8s-app": name}
    read = {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]}
    listing = {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": f"system:{name}"}, "rules": [read, listing]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"system:{name}"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"system:{name}"},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": f"{name}-auth-reader", "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": "extension-apiserver-authentication-reader"},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"{name}:system:auth-delegator"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": labels},
         "spec": {"selector": labels, "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                                 "targetPort": METRICS_SERVER_PORT}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns, "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {
                 "hostNetwork": True, "serviceAccountName": name, "priorityClassName": "system-cluster-critical",
                 "containers": [{
                     "name": name, "image": build.METRICS_SERVER_IMAGE, "imagePullPolicy": "Never",
                     # The pod is on the host network and the API server listens on loopback only, so it
                     # gets a kubeconfig (its own client certificate) and the cluster CA, and nothing else.
                     "args": [f"--bind-address={NODE_IP}", f"--secure-port={METRICS_SERVER_PORT}",
                              "--cert-dir=/tmp", "--kubeconfig=/etc/kubexp/kubeconfig",
                              "--authentication-kubeconfig=/etc/kubexp/kubeconfig",
                              "--authorization-kubeconfig=/etc/kubexp/kubeconfig",
                              "--kubelet-preferred-address-types=InternalIP",
                              "--kubelet-certificate-authority=/etc/kubexp/ca.crt",
                              "--metric-resolution=15s", "--kubelet-use-node-status-port"],
                     "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                                      {"name": "kubeconfig", "mountPath": "/etc/kubexp/kubeconfig", "readOnly": True},
                                      {"name": "ca", "mountPath": "/etc/kubexp/ca.crt", "readOnly": True}],
                     "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                 }],
                 "volumes": [{"name": "tmp", "emptyDir": {}},
                             {"name": "kubeconfig", "hostPath": {
                                 "path": f"{root}/kubeconfigs/metrics-server.conf", "type": "File"}},
                             {"name": "ca", "hostPath": {"path": f"{root}/pki/ca.crt", "type": "File"}}],
             }}}},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
         "metadata": {"name": "v1beta1.metrics.k8s.io", "labels": labels},
         "spec": {"service": {"name": name, "namespace": ns, "port": 443}, "group": "metrics.k8s.io",
                  "version": "v1beta1", "insecureSkipTLSVerify": True, "groupPriorityMinimum": 100,
                  "versionPriority": 100}},
    ]

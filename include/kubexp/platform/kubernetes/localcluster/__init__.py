"""A real single-node Kubernetes on this machine, built from the package registries.

`build` compiles Kubernetes, etcd and metrics-server from Go modules (include/kube-build/) and makes
the pause, metrics-server and app images without a registry; `pki` writes the certificates;
`node` starts containerd, etcd, the control plane, the kubelet and kube-proxy on loopback and stops
them without leaving processes, mounts, interfaces, iptables rules or containers behind.
"""

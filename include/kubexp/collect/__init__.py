"""Collectors of an experiment's platform side: Prometheus series, Kubernetes events, etcd logs."""

# The two commands: `make demo` (run the demo suite end to end) and `make test`; `make bench` prints the figures.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# The interpreter the venv is made from (>= 3.11), e.g. `make PYTHON3=python3.11 demo`.
PYTHON3 := python3
DEB_PACKAGES := python3 python3-venv postgresql haproxy prometheus openssh-server fio strace \
	openjdk-17-jre-headless procps iproute2 \
	containerd runc containernetworking-plugins iptables conntrack debootstrap gcc libc6-dev curl

# uv (from PyPI) installs requirements.lock into .venv: 10 s here (make setup about 7 s longer compiling the bytecode) where pip took 136 s with its cache warm.
UV_VERSION := 0.13.8

# Only `make bench` needs these: wrk is the peer of the load generator's ceiling.
BENCH_DEB_PACKAGES := wrk

.PHONY: setup system demo test lint down bench cluster-build
.DEFAULT_GOAL := demo

setup: system $(VENV)/.installed
	@echo "== setup complete (.venv, Debian packages)"

# Debian packages first (the venv needs python3-venv), then the Python version.
system:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	missing=$$(echo $$missing); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "== installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "Missing Debian packages. Run as root, then re-run make:"; \
	    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends $$missing"; exit 1; \
	  fi; \
	fi
	@$(PYTHON3) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "kubexp needs Python >= 3.11 ($(PYTHON3): $$($(PYTHON3) --version 2>/dev/null || echo not found))."; \
	  echo "Install it (Debian 12 and Ubuntu 24.04 ship it as python3; elsewhere: apt-get install python3.11 python3.11-venv)"; \
	  echo "and run make PYTHON3=python3.11 (remove $(VENV)/ if it was made with an older Python)."; exit 1; }

$(VENV)/.installed: requirements.lock pyproject.toml | system
	@echo "== installing requirements.lock into $(VENV) with uv $(UV_VERSION)"
	@test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	@# Bytecode now, as pip does: with PYTHONDONTWRITEBYTECODE set, every process would compile its imports again
	@# (import pandas 1.4 s instead of 0.5 s, in every task and CLI call).
	@$(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY) -r requirements.lock
	@$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	@$(PY) -m pip check
	@touch $@

lint: setup
	@echo "== ruff"
	@$(VENV)/bin/ruff check include tests dags plugins app benchmarks
	@$(VENV)/bin/ruff check --select AIR dags plugins
	@echo "== mypy include/kubexp"
	@$(VENV)/bin/mypy include/kubexp

# Kubernetes, etcd and metrics-server from Go modules, the pause/app images: cached by version under
# ~/.cache/kubexp (cold: see README, "A real cluster on this machine"; warm: seconds).
cluster-build: setup
	@go version >/dev/null 2>&1 || { echo "the local cluster is built with Go >= 1.24: install Go and rerun"; exit 1; }
	@$(VENV)/bin/kubexp cluster build

test: setup lint cluster-build
	@echo "== pytest (starts and stops its own PostgreSQL, Prometheus, etcd, HAProxy, JMeter, Airflow, Kubernetes)"
	@$(VENV)/bin/pytest -q

# Prints where its time went: Debian packages, .venv, services, the demo suite (each experiment: kubexp demo).
demo:
	@t0=$$(date +%s); $(MAKE) --no-print-directory system; t1=$$(date +%s); \
	$(MAKE) --no-print-directory $(VENV)/.installed; t2=$$(date +%s); \
	$(VENV)/bin/kubexp services up || exit 1; t3=$$(date +%s); \
	$(VENV)/bin/kubexp demo; rc=$$?; t4=$$(date +%s); \
	echo "== make demo took $$((t4 - t0)) s: Debian packages $$((t1 - t0)) s, .venv $$((t2 - t1)) s, services" \
	  "$$((t3 - t2)) s, demo suite $$((t4 - t3)) s (per experiment above)"; exit $$rc

# Short mode (a few minutes) by default; `make bench FULL=1` runs the full settings; README=1 rewrites
# README.md's figures table from this run.
bench: setup
	@missing=$$(for p in $(BENCH_DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "make bench needs: sudo apt-get install -y --no-install-recommends $$missing"; exit 1; fi; \
	fi
	@$(PY) benchmarks/bench.py $(if $(FULL),--full) $(if $(README),--readme)

down:
	@if [ -x $(VENV)/bin/kubexp ]; then $(VENV)/bin/kubexp services down; else echo "nothing to stop ($(VENV) is not set up)"; fi

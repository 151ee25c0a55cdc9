# The two commands: `make demo` (run the demo suite end to end) and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
DEB_PACKAGES := postgresql-15 haproxy prometheus openssh-server fio strace openjdk-17-jre-headless procps iproute2

.PHONY: setup demo test lint down
.DEFAULT_GOAL := demo

setup: $(VENV)/.installed
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "== installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "Missing Debian packages. Run as root, then re-run make:"; \
	    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends $$missing"; exit 1; \
	  fi; \
	fi
	@echo "== setup complete (.venv, Debian packages)"

$(VENV)/.installed: requirements.lock pyproject.toml
	@echo "== creating $(VENV) from requirements.lock (first time: about 2 minutes)"
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock 2> >(grep -v "^WARNING: Location" >&2)
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps -e . 2> >(grep -v "^WARNING: Location" >&2)
	@$(PY) -m pip check
	@touch $@

lint: setup
	@echo "== ruff"
	@$(VENV)/bin/ruff check include tests dags plugins app benchmarks
	@$(VENV)/bin/ruff check --select AIR dags plugins
	@echo "== mypy include/kubexp"
	@$(VENV)/bin/mypy include/kubexp

test: setup lint
	@echo "== pytest (starts and stops its own PostgreSQL, Prometheus, etcd, HAProxy, JMeter, Airflow)"
	@$(VENV)/bin/pytest -q

demo: setup
	@$(VENV)/bin/kubexp services up
	@$(VENV)/bin/kubexp demo

down:
	@if [ -x $(VENV)/bin/kubexp ]; then $(VENV)/bin/kubexp services down; else echo "nothing to stop ($(VENV) is not set up)"; fi

# Airflow 3.3 with kubexp's pinned dependencies. The checkout itself (dags/, plugins/, include/, app/,
# sql/, .git) is mounted at run time by docker-compose.yaml, so code changes need no rebuild.
FROM apache/airflow:3.3.2-python3.11

USER root
# git: preflight refuses uncommitted changes; Java: the JMeter master that drives the load servers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
USER airflow

COPY requirements.lock /tmp/kubexp-requirements.lock
RUN pip install --no-cache-dir -r /tmp/kubexp-requirements.lock
# kubexp itself comes from the mounted checkout: `python -m kubexp.cli ...` (docker-compose.yaml sets the same).
ENV PYTHONPATH=/opt/kubexp/include

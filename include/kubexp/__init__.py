"""kubexp: repeatable performance experiments on Kubernetes, orchestrated by Apache Airflow."""

__version__ = "0.1.0"

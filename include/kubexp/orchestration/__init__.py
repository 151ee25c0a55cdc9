"""The Airflow-facing side: a suite DAG's shape (`suite_dag`), the UI page's data (`progress`), the
REST API client (`airflow_api`), the deferred wait for the cluster lease (`lease_wait`) and the
scheduler's preload of the step modules (`preload`). The steps the DAG runs are kubexp.experiment."""

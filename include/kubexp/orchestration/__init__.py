"""The Airflow-facing side: a suite DAG's shape (`suite_dag`), the UI page's data (`progress`) and the
REST API client (`airflow_api`). The steps the DAG runs are kubexp.experiment."""

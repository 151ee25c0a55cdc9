"""Run suite DAGs with `dag.test()` in a process of their own (fresh Airflow config and metadata DB).

    python dag_test_runner.py DAG_ID SLOT [SLOT ...]

Each slot is one run (logical date = the slot's date). Prints one JSON line per run:
{"slot", "run_id", "state", "tasks": {task_id: state}}. The environment (AIRFLOW_HOME, KUBEXP_*)
comes from the test.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta


def main(dag_id: str, slots: list[int]) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.db import initdb

    from kubexp import suite_dag

    if not os.path.exists(os.path.join(os.environ["AIRFLOW_HOME"], "initialised")):
        initdb()
        open(os.path.join(os.environ["AIRFLOW_HOME"], "initialised"), "w").close()
    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise SystemExit(f"import errors: {bag.import_errors}")
    dag = bag.dags[dag_id]
    for slot in slots:
        run = dag.test(logical_date=suite_dag.SLOT_START + timedelta(days=slot - 1))
        tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        result = {"slot": slot, "run_id": run.run_id, "state": str(run.state), "tasks": tasks}
        print("KUBEXP_RESULT", json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], [int(slot) for slot in sys.argv[2:]])

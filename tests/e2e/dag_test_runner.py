"""Run suite DAGs with `dag.test()` in a process of their own (fresh Airflow config and metadata DB).

    python dag_test_runner.py DAG_ID SLOT[:CONF_JSON] [SLOT[:CONF_JSON] ...]

Each slot is one run (logical date = the slot's date, run params = CONF_JSON). Prints one JSON line per run:
{"slot", "run_id", "state", "tasks": {task_id: state}}. The environment (AIRFLOW_HOME, KUBEXP_*)
comes from the test.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta


def main(dag_id: str, runs: list[tuple[int, dict]]) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.db import initdb

    from kubexp.orchestration import suite_dag

    if not os.path.exists(os.path.join(os.environ["AIRFLOW_HOME"], "initialised")):
        initdb()
        open(os.path.join(os.environ["AIRFLOW_HOME"], "initialised"), "w").close()
    for slot, conf in runs:
        # A fresh DAG object per run: dag.test() leaves a run's conf merged into dag.params.
        bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
        if bag.import_errors:
            raise SystemExit(f"import errors: {bag.import_errors}")
        dag = bag.dags[dag_id]
        run = dag.test(logical_date=suite_dag.SLOT_START + timedelta(days=slot - 1), run_conf=conf)
        tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        result = {"slot": slot, "run_id": run.run_id, "state": str(run.state), "tasks": tasks}
        print("KUBEXP_RESULT", json.dumps(result), flush=True)


if __name__ == "__main__":
    specs = [arg.partition(":") for arg in sys.argv[2:]]
    main(sys.argv[1], [(int(slot), json.loads(conf) if conf else {}) for slot, _, conf in specs])

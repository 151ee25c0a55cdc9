-- Runs until done (docs/airflow.md, "Until done"): an experiment whose failed attempts reached its
-- suite's max_attempts is abandoned (no run selects it again; raising max_attempts and reloading
-- the suite makes it unfinished again), and every chain of runs started with until_done is recorded
-- with each run's decision, so `kubexp suite status` and the suites page can show it.

ALTER TABLE suite ADD COLUMN max_attempts integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1);

ALTER TABLE experiment DROP CONSTRAINT experiment_status_check;
ALTER TABLE experiment
    ADD CONSTRAINT experiment_status_check CHECK (status IN ('unfinished', 'finished', 'abandoned')),
    ADD COLUMN abandoned_at timestamptz,
    ADD CONSTRAINT experiment_abandoned_at CHECK ((status = 'abandoned') = (abandoned_at IS NOT NULL));

-- One chain: the run that started it (its id is the chain's id), its bounds and, once stopped, why.
CREATE TABLE run_chain (
    id               text PRIMARY KEY,
    suite            text NOT NULL REFERENCES suite (name) ON DELETE CASCADE,
    dag_id           text NOT NULL,
    started_at       timestamptz NOT NULL DEFAULT now(),
    deadline         timestamptz,
    max_failed_runs  integer NOT NULL CHECK (max_failed_runs >= 1),
    current_run_id   text NOT NULL,
    stopped_at       timestamptz,
    stop_reason      text CHECK (stop_reason IN ('complete', 'needs_fix', 'max_attempts', 'max_failed_runs',
                                                 'deadline', 'paused')),
    CHECK ((stopped_at IS NULL) = (stop_reason IS NULL))
);
CREATE INDEX run_chain_suite ON run_chain (suite, started_at DESC);

-- One row per run of a chain, written by the run's last branch: whether it failed and what was decided
-- ('next' or the stop reason), with the note written on the Airflow run.
CREATE TABLE run_chain_run (
    chain_id    text NOT NULL REFERENCES run_chain (id) ON DELETE CASCADE,
    number      integer NOT NULL CHECK (number >= 1),
    run_id      text NOT NULL,
    failed      boolean NOT NULL,
    decision    text NOT NULL CHECK (decision IN ('next', 'complete', 'needs_fix', 'max_attempts', 'max_failed_runs',
                                                  'deadline', 'paused')),
    next_run_id text,
    note        text NOT NULL,
    decided_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain_id, number),
    UNIQUE (chain_id, run_id),
    CHECK ((decision = 'next') = (next_run_id IS NOT NULL))
);

-- The experiment store: suites, scenarios, experiments, attempts and every measurement.
-- Per-second tables keep t = whole seconds from the experiment's load start (t = 0).

-- A suite as last loaded: its plan (repetitions, seed) and its steady-state window for the summaries.
CREATE TABLE suite (
    name          text PRIMARY KEY CHECK (name ~ '^[a-z0-9-]+$'),
    platform      text NOT NULL CHECK (platform IN ('local', 'kubernetes')),
    cluster       text NOT NULL,
    repetitions   integer NOT NULL CHECK (repetitions >= 1),
    seed          bigint NOT NULL,
    warmup_s      integer NOT NULL DEFAULT 0 CHECK (warmup_s >= 0),
    cooldown_s    integer NOT NULL DEFAULT 0 CHECK (cooldown_s >= 0),
    fingerprint   text NOT NULL,            -- hash of scenario ids + repetitions: reload when it changes
    path          text NOT NULL,
    definition    jsonb NOT NULL,           -- the suite as parsed, for the record
    loaded_at     timestamptz NOT NULL DEFAULT now()
);

-- A parameter set, shared by every suite that uses it; id = first 16 hex of sha256(sorted JSON).
CREATE TABLE scenario (
    id          text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
    params      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Which scenarios a suite's matrix holds; `active` is false once a reload drops it from the matrix.
CREATE TABLE suite_scenario (
    suite        text NOT NULL REFERENCES suite (name) ON DELETE CASCADE,
    scenario_id  text NOT NULL REFERENCES scenario (id),
    position     integer NOT NULL,
    active       boolean NOT NULL DEFAULT true,
    PRIMARY KEY (suite, scenario_id)
);

-- One repetition of a scenario within a suite. `claimed_*` marks it as taken by a selector
-- (cleared when its attempt ends or is reclaimed); `finished_attempt_id` is the attempt whose data counts.
CREATE TABLE experiment (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    suite                text NOT NULL,
    scenario_id          text NOT NULL,
    repetition           integer NOT NULL CHECK (repetition >= 1),
    status               text NOT NULL DEFAULT 'unfinished' CHECK (status IN ('unfinished', 'finished')),
    claimed_by           text,
    claimed_at           timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    finished_at          timestamptz,
    finished_attempt_id  bigint,
    UNIQUE (suite, scenario_id, repetition),
    FOREIGN KEY (suite, scenario_id) REFERENCES suite_scenario (suite, scenario_id) ON DELETE CASCADE,
    CHECK ((status = 'finished') = (finished_at IS NOT NULL AND finished_attempt_id IS NOT NULL)),
    CHECK ((claimed_by IS NULL) = (claimed_at IS NULL))
);
CREATE INDEX experiment_open ON experiment (suite, scenario_id) WHERE status = 'unfinished';

-- The ledger: one row per try at an experiment (one Airflow task try of one DAG run).
CREATE TABLE attempt (
    id              bigserial PRIMARY KEY,
    experiment_id   uuid NOT NULL REFERENCES experiment (id) ON DELETE CASCADE,
    run_id          text NOT NULL,
    try_number      integer NOT NULL,
    host            text NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    heartbeat_at    timestamptz NOT NULL DEFAULT now(),
    ended_at        timestamptz,
    outcome         text NOT NULL DEFAULT 'running'
                    CHECK (outcome IN ('running', 'succeeded', 'failed', 'abandoned')),
    error           text,
    load_started_at timestamptz,              -- wall clock of t = 0
    UNIQUE (experiment_id, run_id, try_number),
    CHECK ((outcome = 'running') = (ended_at IS NULL))
);
CREATE INDEX attempt_running ON attempt (heartbeat_at) WHERE outcome = 'running';
ALTER TABLE experiment ADD FOREIGN KEY (finished_attempt_id) REFERENCES attempt (id);

-- Facts that make an attempt reproducible: git commits and dirty flags, package versions,
-- platform and cluster facts, seeds. Merged key by key as steps record them.
CREATE TABLE provenance (
    attempt_id   bigint PRIMARY KEY REFERENCES attempt (id) ON DELETE CASCADE,
    facts        jsonb NOT NULL DEFAULT '{}',
    recorded_at  timestamptz NOT NULL DEFAULT now()
);

-- Per-second load aggregates (kubexp.records.LOAD_SECOND_COLUMNS).
-- The per-second tables (load_second, metric_point) have no row-level foreign keys: checking them
-- made COPY 3.7x slower (measured). The store functions check the experiment and attempt once per
-- ingest, under a row lock, and the delete triggers below remove the rows with their parent.
CREATE TABLE load_second (
    experiment_id    uuid NOT NULL,
    attempt_id       bigint NOT NULL,
    t                integer NOT NULL,
    requests         integer NOT NULL CHECK (requests >= 0),
    successes        integer NOT NULL CHECK (successes >= 0),
    failures         integer NOT NULL CHECK (failures >= 0),
    failures_4xx     integer NOT NULL,
    failures_5xx     integer NOT NULL,
    failures_other   integer NOT NULL,
    elapsed_mean_ms  double precision,
    elapsed_p50_ms   double precision,
    elapsed_p90_ms   double precision,
    elapsed_p95_ms   double precision,
    elapsed_p99_ms   double precision,
    elapsed_max_ms   double precision,
    latency_mean_ms  double precision,
    connect_mean_ms  double precision,
    bytes            bigint,
    threads          integer,
    PRIMARY KEY (experiment_id, t),
    CHECK (successes + failures = requests),
    CHECK (failures_4xx + failures_5xx + failures_other = failures)
);

-- One metric time series (a named query's result for one label set); `completeness` is the share
-- of the load's seconds that have a point.
CREATE TABLE metric_series (
    id             bigserial PRIMARY KEY,
    experiment_id  uuid NOT NULL REFERENCES experiment (id) ON DELETE CASCADE,
    attempt_id     bigint NOT NULL REFERENCES attempt (id) ON DELETE CASCADE,
    source         text NOT NULL,
    name           text NOT NULL,
    labels         jsonb NOT NULL DEFAULT '{}',
    points         integer NOT NULL,
    completeness   double precision CHECK (completeness BETWEEN 0 AND 1)
);
CREATE INDEX metric_series_experiment ON metric_series (experiment_id, name);

CREATE TABLE metric_point (
    series_id  bigint NOT NULL,
    t          integer NOT NULL,
    value      double precision NOT NULL,
    PRIMARY KEY (series_id, t)
);

CREATE FUNCTION delete_load_seconds_of_experiments() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM load_second l USING removed r WHERE l.experiment_id = r.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER experiment_removes_load_seconds AFTER DELETE ON experiment
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION delete_load_seconds_of_experiments();

CREATE FUNCTION delete_points_of_series() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM metric_point p USING removed r WHERE p.series_id = r.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER metric_series_removes_points AFTER DELETE ON metric_series
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION delete_points_of_series();

CREATE TABLE platform_event (
    id             bigserial PRIMARY KEY,
    experiment_id  uuid NOT NULL REFERENCES experiment (id) ON DELETE CASCADE,
    attempt_id     bigint NOT NULL REFERENCES attempt (id) ON DELETE CASCADE,
    t              integer NOT NULL,
    at             timestamptz NOT NULL,
    source         text NOT NULL,
    kind           text NOT NULL,
    obj            text NOT NULL,
    message        text NOT NULL DEFAULT ''
);
CREATE INDEX platform_event_experiment ON platform_event (experiment_id, t);

-- Raw files kept with an experiment; rows of failed attempts stay as evidence of what went wrong.
CREATE TABLE artifact (
    id             bigserial PRIMARY KEY,
    experiment_id  uuid NOT NULL REFERENCES experiment (id) ON DELETE CASCADE,
    attempt_id     bigint NOT NULL REFERENCES attempt (id) ON DELETE CASCADE,
    kind           text NOT NULL,
    path           text NOT NULL,
    sha256         text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size           bigint NOT NULL CHECK (size >= 0)
);
CREATE INDEX artifact_experiment ON artifact (experiment_id);

-- One experiment at a time per cluster: a lease that a new holder may take over once expired.
CREATE TABLE cluster_lock (
    cluster      text PRIMARY KEY,
    holder       text NOT NULL,
    acquired_at  timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);

-- Every selection with its seed and the tie it broke, so the interleaving can be replayed.
CREATE TABLE selection (
    id                 bigserial PRIMARY KEY,
    suite              text NOT NULL REFERENCES suite (name) ON DELETE CASCADE,
    holder             text NOT NULL,
    experiment_id      uuid NOT NULL REFERENCES experiment (id) ON DELETE CASCADE,
    scenario_id        text NOT NULL,
    choice_seed        bigint NOT NULL,
    fewest_finished    integer NOT NULL,
    tied_scenarios     text[] NOT NULL,
    selected_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX selection_suite ON selection (suite, id);

-- Steady-state aggregate of one finished experiment, computed when it is finished (and again when
-- its suite's window changes), so the summaries never scan every per-second row.
-- Seconds of the window without a load row count as zero successes.
CREATE TABLE experiment_aggregate (
    experiment_id            uuid PRIMARY KEY REFERENCES experiment (id) ON DELETE CASCADE,
    attempt_id               bigint NOT NULL REFERENCES attempt (id) ON DELETE CASCADE,
    window_start_s           integer NOT NULL,
    window_end_s             integer NOT NULL,   -- exclusive
    seconds                  integer NOT NULL,   -- seconds in the window
    seconds_with_load        integer NOT NULL,   -- of those, seconds with a load row
    requests                 bigint NOT NULL,
    successes                bigint NOT NULL,
    successes_sq             double precision NOT NULL,  -- sum of squared per-second successes (pooled std)
    failures                 bigint NOT NULL,
    failures_4xx             bigint NOT NULL,
    failures_5xx             bigint NOT NULL,
    failures_other           bigint NOT NULL,
    successes_per_s_mean     double precision,
    successes_per_s_median   double precision,
    successes_per_s_std      double precision,
    elapsed_mean_ms          double precision,   -- request-weighted mean of per-second means
    elapsed_p50_median_ms    double precision,   -- median over seconds of the per-second percentile
    elapsed_p90_median_ms    double precision,
    elapsed_p95_median_ms    double precision,
    elapsed_p99_median_ms    double precision,
    elapsed_p99_max_ms       double precision,
    elapsed_max_ms           double precision,
    computed_at              timestamptz NOT NULL DEFAULT now()
);

-- Summaries for analysis. Re-applied by `kubexp db upgrade` whenever this file changes.
-- Only finished experiments appear, and only the data of the attempt that finished them.
-- Steady-state window: warmup_s <= t < duration_s - cooldown_s (suite.warmup_s / cooldown_s).

DROP VIEW IF EXISTS scenario_summary;
DROP VIEW IF EXISTS experiment_summary;
DROP FUNCTION IF EXISTS refresh_experiment_aggregate(uuid[]);
DROP FUNCTION IF EXISTS scenario_columns(jsonb);

-- A scenario's main parameters as typed columns (both summaries show them beside `params`).
CREATE FUNCTION scenario_columns(params jsonb)
RETURNS TABLE (pods integer, pods_max integer, workers integer, think_time_ms double precision, duration_s integer,
               mesh text, etcd_storage text, memory_limit_mib integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (params ->> 'pods')::integer, (params ->> 'pods_max')::integer, (params ->> 'workers')::integer,
           (params ->> 'think_time_ms')::double precision, (params ->> 'duration_s')::integer,
           params ->> 'mesh', params ->> 'etcd_storage', (params ->> 'memory_limit_mib')::integer
$$;

-- (Re)compute experiment_aggregate for the given finished experiments; returns how many rows it wrote.
CREATE FUNCTION refresh_experiment_aggregate(ids uuid[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    written integer;
BEGIN
    DELETE FROM experiment_aggregate WHERE experiment_id = ANY (ids);
    WITH window_of AS (
        SELECT e.id AS experiment_id, e.finished_attempt_id AS attempt_id, s.warmup_s AS start_s,
               greatest(s.warmup_s, (sc.params ->> 'duration_s')::integer - s.cooldown_s) AS end_s
        FROM experiment e
        JOIN suite s ON s.name = e.suite
        JOIN scenario sc ON sc.id = e.scenario_id
        WHERE e.id = ANY (ids) AND e.status = 'finished'
    ),
    -- every second of the window, with its load row if there is one (looked up by key: a join of
    -- the whole window with the rows was planned as a scan of every pair)
    second AS (
        SELECT w.experiment_id, w.attempt_id, w.start_s, w.end_s, l.t, l.requests, l.failures,
               l.failures_4xx, l.failures_5xx, l.failures_other, l.elapsed_mean_ms, l.elapsed_p50_ms,
               l.elapsed_p90_ms, l.elapsed_p95_ms, l.elapsed_p99_ms, l.elapsed_max_ms,
               l.success_elapsed_mean_ms, l.success_elapsed_p50_ms, l.success_elapsed_p99_ms,
               l.success_processing_mean_ms, coalesce(l.successes, 0) AS ok
        FROM window_of w
        CROSS JOIN LATERAL generate_series(w.start_s, w.end_s - 1) AS g (second_t)
        LEFT JOIN LATERAL (
            SELECT * FROM load_second ls
            WHERE ls.experiment_id = w.experiment_id AND ls.t = g.second_t AND ls.attempt_id = w.attempt_id
            LIMIT 1  -- at most one row by the primary key; the LIMIT stops the planner flattening this
        ) l ON true
    )
    INSERT INTO experiment_aggregate (
        experiment_id, attempt_id, window_start_s, window_end_s, seconds, seconds_with_load,
        requests, successes, successes_sq, failures, failures_4xx, failures_5xx, failures_other,
        successes_per_s_mean, successes_per_s_median, successes_per_s_std, elapsed_mean_ms,
        elapsed_p50_median_ms, elapsed_p90_median_ms, elapsed_p95_median_ms, elapsed_p99_median_ms,
        elapsed_p99_max_ms, elapsed_max_ms, success_elapsed_mean_ms, success_elapsed_p50_median_ms,
        success_elapsed_p99_median_ms, success_processing_mean_ms)
    SELECT experiment_id, min(attempt_id), min(start_s), min(end_s), count(*), count(t),
           coalesce(sum(requests), 0), sum(ok), sum(ok::double precision * ok),
           coalesce(sum(failures), 0), coalesce(sum(failures_4xx), 0), coalesce(sum(failures_5xx), 0),
           coalesce(sum(failures_other), 0),
           avg(ok), percentile_cont(0.5) WITHIN GROUP (ORDER BY ok), stddev_samp(ok),
           sum(elapsed_mean_ms * requests) FILTER (WHERE requests > 0)
               / nullif(sum(requests) FILTER (WHERE elapsed_mean_ms IS NOT NULL AND requests > 0), 0),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY elapsed_p50_ms),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY elapsed_p90_ms),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY elapsed_p95_ms),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY elapsed_p99_ms),
           max(elapsed_p99_ms), max(elapsed_max_ms),
           -- successful requests only (NULL for experiments collected before sql/0006)
           sum(success_elapsed_mean_ms * ok) FILTER (WHERE ok > 0)
               / nullif(sum(ok) FILTER (WHERE success_elapsed_mean_ms IS NOT NULL AND ok > 0), 0),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY success_elapsed_p50_ms),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY success_elapsed_p99_ms),
           sum(success_processing_mean_ms * ok) FILTER (WHERE ok > 0)
               / nullif(sum(ok) FILTER (WHERE success_processing_mean_ms IS NOT NULL AND ok > 0), 0)
    FROM second
    GROUP BY experiment_id;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END;
$$;

-- One row per finished experiment, with its scenario's main parameters as columns.
CREATE VIEW experiment_summary AS
SELECT e.id AS experiment_id, e.suite, e.scenario_id, ss.position AS scenario_index, e.repetition,
       e.finished_at, e.finished_attempt_id AS attempt_id, at.load_started_at AS t0, at.host,
       sc.params, p.*,
       a.window_start_s, a.window_end_s, a.seconds, a.seconds_with_load,
       a.requests, a.successes, a.failures, a.failures_4xx, a.failures_5xx, a.failures_other,
       a.failures::double precision / nullif(a.requests, 0) AS failure_share,
       a.successes_per_s_mean, a.successes_per_s_median, a.successes_per_s_std,
       a.elapsed_mean_ms, a.elapsed_p50_median_ms, a.elapsed_p90_median_ms, a.elapsed_p95_median_ms,
       a.elapsed_p99_median_ms, a.elapsed_p99_max_ms, a.elapsed_max_ms,
       a.success_elapsed_mean_ms, a.success_elapsed_p50_median_ms, a.success_elapsed_p99_median_ms,
       a.success_processing_mean_ms,
       -- exact over every sample of the experiment's JTL (load_experiment; NULL before sql/0006)
       w.requests AS whole_requests, w.successes AS whole_successes,
       w.elapsed_p50_ms AS whole_elapsed_p50_ms, w.elapsed_p99_ms AS whole_elapsed_p99_ms,
       w.success_elapsed_mean_ms AS whole_success_elapsed_mean_ms,
       w.success_elapsed_p50_ms AS whole_success_elapsed_p50_ms,
       w.success_elapsed_p90_ms AS whole_success_elapsed_p90_ms,
       w.success_elapsed_p95_ms AS whole_success_elapsed_p95_ms,
       w.success_elapsed_p99_ms AS whole_success_elapsed_p99_ms,
       w.success_elapsed_max_ms AS whole_success_elapsed_max_ms,
       w.success_processing_mean_ms AS whole_success_processing_mean_ms
FROM experiment e
JOIN suite_scenario ss ON ss.suite = e.suite AND ss.scenario_id = e.scenario_id
JOIN scenario sc ON sc.id = e.scenario_id
CROSS JOIN LATERAL scenario_columns(sc.params) p
JOIN attempt at ON at.id = e.finished_attempt_id
LEFT JOIN experiment_aggregate a ON a.experiment_id = e.id
LEFT JOIN load_experiment w ON w.experiment_id = e.id AND w.attempt_id = e.finished_attempt_id
WHERE e.status = 'finished';

-- One row per scenario of a suite (also those without finished experiments yet: experiments = 0;
-- `active` is false for scenarios a reload dropped from the matrix).
-- successes_per_s_mean/std pool every steady-state second of every finished experiment (the paper's
-- Figure 5); experiment_mean_std is the spread between the experiments' means.
CREATE VIEW scenario_summary AS
SELECT ss.suite, ss.scenario_id, ss.position AS scenario_index, ss.active, sc.params, p.*, totals.*
FROM suite_scenario ss
JOIN scenario sc ON sc.id = ss.scenario_id
CROSS JOIN LATERAL scenario_columns(sc.params) p
CROSS JOIN LATERAL (
    SELECT count(a.experiment_id)::integer AS experiments,
           coalesce(sum(a.seconds), 0)::bigint AS seconds,
           coalesce(sum(a.requests), 0)::bigint AS requests,
           coalesce(sum(a.successes), 0)::bigint AS successes,
           coalesce(sum(a.failures), 0)::bigint AS failures,
           sum(a.failures)::double precision / nullif(sum(a.requests), 0) AS failure_share,
           sum(a.successes)::double precision / nullif(sum(a.seconds), 0) AS successes_per_s_mean,
           sqrt(greatest(0, (sum(a.successes_sq)
                             - sum(a.successes)::double precision ^ 2 / nullif(sum(a.seconds), 0))
                            / nullif(sum(a.seconds) - 1, 0))) AS successes_per_s_std,
           stddev_samp(a.successes_per_s_mean) AS experiment_mean_std,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY a.successes_per_s_median)
               AS successes_per_s_median_of_experiments,
           sum(a.elapsed_mean_ms * a.requests) / nullif(sum(a.requests) FILTER (WHERE a.elapsed_mean_ms IS NOT NULL), 0)
               AS elapsed_mean_ms,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY a.elapsed_p95_median_ms) AS elapsed_p95_median_ms,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY a.elapsed_p99_median_ms) AS elapsed_p99_median_ms,
           sum(a.success_elapsed_mean_ms * a.successes)
               / nullif(sum(a.successes) FILTER (WHERE a.success_elapsed_mean_ms IS NOT NULL), 0)
               AS success_elapsed_mean_ms,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY a.success_elapsed_p99_median_ms)
               AS success_elapsed_p99_median_ms,
           sum(a.success_processing_mean_ms * a.successes)
               / nullif(sum(a.successes) FILTER (WHERE a.success_processing_mean_ms IS NOT NULL), 0)
               AS success_processing_mean_ms
    FROM experiment e
    JOIN experiment_aggregate a ON a.experiment_id = e.id
    WHERE e.suite = ss.suite AND e.scenario_id = ss.scenario_id AND e.status = 'finished'
) totals;

-- Response times of successful requests only, and processing time (issue 16). JMeter's elapsed of a
-- failure (a fast 503, a refused connection) says nothing about how long serving took, so the
-- all-requests figures are pulled down by failures; these columns leave failures out.
-- Experiments collected before this migration keep NULL in every new column.

-- Per second: elapsed of the successful samples (mean, exact nearest-rank percentiles, max) and their mean
-- processing time, Latency - Connect (time to the first byte once the connection was open).
ALTER TABLE load_second
    ADD COLUMN success_elapsed_mean_ms     double precision,
    ADD COLUMN success_elapsed_p50_ms      double precision,
    ADD COLUMN success_elapsed_p90_ms      double precision,
    ADD COLUMN success_elapsed_p95_ms      double precision,
    ADD COLUMN success_elapsed_p99_ms      double precision,
    ADD COLUMN success_elapsed_max_ms      double precision,
    ADD COLUMN success_processing_mean_ms  double precision;

-- The steady-state window's figures of the same (sql/views/summaries.sql fills them).
ALTER TABLE experiment_aggregate
    ADD COLUMN success_elapsed_mean_ms          double precision,  -- success-weighted mean of per-second means
    ADD COLUMN success_elapsed_p50_median_ms    double precision,  -- median over seconds of the per-second percentile
    ADD COLUMN success_elapsed_p99_median_ms    double precision,
    ADD COLUMN success_processing_mean_ms       double precision;  -- success-weighted

-- One row per experiment: exact statistics over every sample of its JTL, computed from the raw file at
-- collect time (percentiles nearest rank over all samples, resp. all successful ones; not medians or means
-- of per-second values). Replaced with the load rows whenever an attempt stores them.
CREATE TABLE load_experiment (
    experiment_id               uuid PRIMARY KEY REFERENCES experiment (id) ON DELETE CASCADE,
    attempt_id                  bigint NOT NULL REFERENCES attempt (id) ON DELETE CASCADE,
    requests                    bigint NOT NULL CHECK (requests >= 0),
    successes                   bigint NOT NULL CHECK (successes >= 0 AND successes <= requests),
    elapsed_mean_ms             double precision,
    elapsed_p50_ms              double precision,
    elapsed_p90_ms              double precision,
    elapsed_p95_ms              double precision,
    elapsed_p99_ms              double precision,
    elapsed_max_ms              double precision,
    success_elapsed_mean_ms     double precision,  -- NULL: no successful sample
    success_elapsed_p50_ms      double precision,
    success_elapsed_p90_ms      double precision,
    success_elapsed_p95_ms      double precision,
    success_elapsed_p99_ms      double precision,
    success_elapsed_max_ms      double precision,
    success_processing_mean_ms  double precision   -- NULL also without Latency/Connect columns
);

-- SLOs (suite key `slo`): each finished experiment's value of every SLO's figure, with the bound it
-- was checked against. Written after finalize (kubexp.analysis.slo); an SLO never decides whether an
-- experiment is finished, only the verdict over a scenario's experiments (`kubexp verdict`).
CREATE TABLE slo_value (
    experiment_id  uuid NOT NULL REFERENCES experiment (id) ON DELETE CASCADE,
    attempt_id     bigint NOT NULL REFERENCES attempt (id) ON DELETE CASCADE,
    slo            text NOT NULL,
    figure         text NOT NULL,
    query          text,                      -- the metrics query of figure series_mean
    value          double precision,          -- NULL: the experiment has no value (e.g. no point of the series)
    bound_min      double precision,
    bound_max      double precision,
    met            boolean,                   -- this experiment's value within the bounds; NULL without a value
    evaluated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (experiment_id, slo),
    CHECK (bound_min IS NOT NULL OR bound_max IS NOT NULL),
    CHECK ((value IS NULL) = (met IS NULL))
);

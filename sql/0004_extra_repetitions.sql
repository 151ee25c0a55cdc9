-- Repetitions added to one scenario beyond its suite's `repetitions` (kubexp verdict|compare --until-decided):
-- the scenario plans repetitions + extra_repetitions experiments. Reloading the suite keeps them.
ALTER TABLE suite_scenario ADD COLUMN extra_repetitions integer NOT NULL DEFAULT 0 CHECK (extra_repetitions >= 0);

-- The strategy's apply stages, one row each: a step rewrites its stage, not the whole record,
-- which grows with the worker batches (500 stages at 5,000 workers). The record keeps the rest.
CREATE TABLE strategy_stage (
    position BIGINT NOT NULL PRIMARY KEY,
    stage    TEXT NOT NULL
);

INSERT INTO strategy_stage (position, stage)
    SELECT s.n - 1, s.value::text
    FROM strategy,
         jsonb_array_elements(strategy.record::jsonb -> 'apply_phase' -> 'stages')
             WITH ORDINALITY AS s (value, n);

UPDATE strategy SET record = jsonb_set(record::jsonb, '{apply_phase,stages}', '[]'::jsonb)::text;

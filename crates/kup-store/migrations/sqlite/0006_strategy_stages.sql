-- The strategy's apply stages, one row each: a step rewrites its stage, not the whole record,
-- which grows with the worker batches (500 stages at 5,000 workers). The record keeps the rest.
CREATE TABLE strategy_stage (
    position INTEGER NOT NULL PRIMARY KEY,
    stage    TEXT NOT NULL
);

INSERT INTO strategy_stage (position, stage)
    SELECT CAST(s.key AS INTEGER), s.value
    FROM strategy, json_each(strategy.record, '$.apply_phase.stages') AS s;

UPDATE strategy SET record = json_set(record, '$.apply_phase.stages', json('[]'));

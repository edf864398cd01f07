-- The upgrade strategy (at most one): its settings, state and phases as JSON; `state` beside
-- it for queries.
CREATE TABLE strategy (
    singleton  BIGINT NOT NULL PRIMARY KEY CHECK (singleton = 1),
    uuid       TEXT NOT NULL,
    state      TEXT NOT NULL,
    record     TEXT NOT NULL
);

-- Operations the engine started on the cluster, each recorded in the transaction of the
-- decision that started it: what was in flight at a crash is read from here, never guessed.
CREATE TABLE operations (
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    kind       TEXT NOT NULL,
    host       TEXT NULL,
    op         TEXT NOT NULL, -- the operation as JSON
    state      TEXT NOT NULL,
    started_at TEXT COLLATE "C" NOT NULL,
    ended_at   TEXT NULL,
    detail     TEXT NULL
);

CREATE INDEX operations_by_state ON operations (state);

-- Facts about the store itself (when it was created, last opened for writing).
CREATE TABLE meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);

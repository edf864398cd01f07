-- Which of the daemons sharing this database leads: one row. `token`, the fencing token, grows
-- by one at every takeover, and every write a leader makes checks in its own transaction that
-- the row still holds its token: a deposed leader that wakes up late writes nothing. Times are
-- the database's clock (milliseconds since the epoch), so the daemons' clocks need not agree.
CREATE TABLE lease (
    singleton   BIGINT NOT NULL PRIMARY KEY CHECK (singleton = 1),
    holder      TEXT   NOT NULL,
    address     TEXT   NOT NULL,
    token       BIGINT NOT NULL,
    acquired_ms BIGINT NOT NULL,
    renewed_ms  BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL
);

-- Every daemon sharing the database, as it last said it was alive.
CREATE TABLE replicas (
    id         TEXT   NOT NULL PRIMARY KEY,
    address    TEXT   NOT NULL,
    started_ms BIGINT NOT NULL,
    seen_ms    BIGINT NOT NULL
);

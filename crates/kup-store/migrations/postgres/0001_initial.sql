-- kup's durable state: the PostgreSQL twin of migrations/sqlite/0001 (BIGINT where SQLite says
-- INTEGER; TEXT for uuids, versions, states and timestamps, as there).

-- The Kubernetes upgrade in progress: at most one row, enforced by `singleton`.
CREATE TABLE kube_upgrade (
    id                BIGINT NOT NULL PRIMARY KEY,
    singleton         BIGINT NOT NULL DEFAULT 1 UNIQUE CHECK (singleton = 1),
    uuid              TEXT    NOT NULL UNIQUE,
    from_version      TEXT    NOT NULL,
    to_version        TEXT    NOT NULL,
    state             TEXT    NOT NULL,
    recovery_attempts BIGINT NOT NULL DEFAULT 0,
    created_at        TEXT    NOT NULL,
    updated_at        TEXT    NULL
);

-- Per-host upgrade progress; id equals the host's id.
CREATE TABLE kube_host_upgrade (
    id             BIGINT NOT NULL PRIMARY KEY,
    uuid           TEXT    NOT NULL UNIQUE,
    host_id        BIGINT NOT NULL UNIQUE,
    hostname       TEXT    NOT NULL UNIQUE,
    target_version TEXT    NULL,
    status         TEXT    NULL,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NULL
);

-- Append-only event log. `seq` is allocated as MAX(seq)+1 inside the writing transaction
-- (not AUTOINCREMENT), so it starts at 1 and has no gaps.
CREATE TABLE events (
    seq     BIGINT NOT NULL PRIMARY KEY,
    at      TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    message TEXT    NOT NULL
);

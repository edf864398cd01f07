-- The patch repository: one row per uploaded patch (the record as JSON, its state beside it
-- for queries), and which hosts have which patch installed.
CREATE TABLE patches (
    id TEXT NOT NULL PRIMARY KEY,
    state TEXT NOT NULL,
    record TEXT NOT NULL
);

CREATE TABLE patch_installs (
    patch_id TEXT NOT NULL REFERENCES patches (id) ON DELETE CASCADE,
    hostname TEXT NOT NULL,
    PRIMARY KEY (patch_id, hostname)
);

-- The patch repository: one row per uploaded patch (the record as JSON, its state beside it
-- for queries), and which hosts have which patch installed. Keys sort by bytes (COLLATE "C"),
-- as kup sorts them in memory and on SQLite, whatever the database's locale.
CREATE TABLE patches (
    id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    state TEXT NOT NULL,
    record TEXT NOT NULL
);

CREATE TABLE patch_installs (
    patch_id TEXT COLLATE "C" NOT NULL REFERENCES patches (id) ON DELETE CASCADE,
    hostname TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (patch_id, hostname)
);

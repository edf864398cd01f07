-- Each run of a step is an attempt (same kind, host and version: `key`), and each has a
-- deadline after which it counts as hung.
ALTER TABLE operations ADD COLUMN key TEXT NOT NULL DEFAULT '';
ALTER TABLE operations ADD COLUMN attempt BIGINT NOT NULL DEFAULT 1;
ALTER TABLE operations ADD COLUMN deadline TEXT NULL;

CREATE INDEX operations_by_key ON operations (key);

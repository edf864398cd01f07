-- A host's events (the dashboard's host panel) without reading the whole log.
CREATE INDEX events_subject ON events (subject, seq);

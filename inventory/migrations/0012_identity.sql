-- The inventory's identity: one row, written when the database is first
-- opened, so that every api and worker can tell whether they share one
-- inventory; and the fingerprint of the credential key its secrets are
-- sealed with, recorded by the first process that opens it with a key.
CREATE TABLE inventory_identity (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    key_fingerprint TEXT NOT NULL DEFAULT ''
);

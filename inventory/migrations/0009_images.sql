-- The OS image catalog: images metalflow proxies from an origin (url) or
-- keeps in its data directory (upload), each with the digest the deploy
-- agent checks.
CREATE TABLE images (
    name       TEXT      PRIMARY KEY,
    source     TEXT      NOT NULL,
    url        TEXT      NOT NULL DEFAULT '',
    sha256     TEXT      NOT NULL,
    format     TEXT      NOT NULL,
    os_family  TEXT      NOT NULL,
    size_bytes BIGINT    NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL,
    created_by TEXT      NOT NULL DEFAULT ''
);

-- Which image an install attempt writes. The reference keeps an image a
-- pending install names from being deleted even when the delete and the
-- install race, on either database; NULL for attempts that name none.
ALTER TABLE boot_configs ADD COLUMN image TEXT REFERENCES images (name);

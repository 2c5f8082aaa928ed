-- Sites, racks, assets and their history: metalflow's CMDB, modelled on
-- NetBox's DCIM. Portable SQL: the same file runs on SQLite and PostgreSQL;
-- @AUTO_ID@ is the one thing the two spell differently.

CREATE TABLE sites (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT ''
);

CREATE TABLE racks (
    site     TEXT    NOT NULL REFERENCES sites(name),
    name     TEXT    NOT NULL,
    room     TEXT    NOT NULL DEFAULT '',
    height_u INTEGER NOT NULL CHECK (height_u BETWEEN 1 AND 60),
    PRIMARY KEY (site, name)
);

CREATE TABLE assets (
    serial      TEXT PRIMARY KEY,
    vendor      TEXT NOT NULL DEFAULT '',
    model       TEXT NOT NULL DEFAULT '',
    asset_tag   TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL,
    site        TEXT NOT NULL DEFAULT '',
    room        TEXT NOT NULL DEFAULT '',
    rack        TEXT NOT NULL DEFAULT '',
    unit        INTEGER NOT NULL DEFAULT 0,
    face        TEXT NOT NULL DEFAULT '',
    height_u    INTEGER NOT NULL DEFAULT 1,
    bmc_address TEXT NOT NULL DEFAULT '',
    macs        TEXT NOT NULL DEFAULT '[]',
    hardware    TEXT NOT NULL DEFAULT '{}',
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);

-- One row per occupied rack unit: the primary key is what makes two servers
-- in one unit impossible, on either database, without explicit locking.
CREATE TABLE rack_units (
    site   TEXT    NOT NULL,
    rack   TEXT    NOT NULL,
    unit   INTEGER NOT NULL,
    serial TEXT    NOT NULL REFERENCES assets(serial),
    PRIMARY KEY (site, rack, unit),
    FOREIGN KEY (site, rack) REFERENCES racks(site, name)
);
CREATE INDEX rack_units_serial ON rack_units(serial);

CREATE TABLE asset_history (
    id     @AUTO_ID@,
    serial TEXT      NOT NULL REFERENCES assets(serial),
    at     TIMESTAMP NOT NULL,
    actor  TEXT      NOT NULL,
    action TEXT      NOT NULL,
    detail TEXT      NOT NULL DEFAULT ''
);
CREATE INDEX asset_history_serial ON asset_history(serial, id);

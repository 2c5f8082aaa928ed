-- Load balancing: the LB nodes as their registry workflows last heard of
-- them, the VIPs with the address each holds, and the address a server's
-- host answers on (what a VIP names as its backend).

CREATE TABLE lb_nodes (
    cluster        TEXT      NOT NULL,
    node           TEXT      NOT NULL,
    failure_domain TEXT      NOT NULL DEFAULT '',
    capacity       INTEGER   NOT NULL DEFAULT 0,
    vips           INTEGER   NOT NULL DEFAULT 0,
    healthy        BOOLEAN   NOT NULL DEFAULT FALSE,
    stopping       BOOLEAN   NOT NULL DEFAULT FALSE,
    last_seen      TIMESTAMP NOT NULL,
    PRIMARY KEY (cluster, node)
);

-- The UNIQUE address is what keeps two VIPs off one address when two
-- allocations race, on either database, without explicit locking.
CREATE TABLE vips (
    name         TEXT      PRIMARY KEY,
    address      TEXT      NOT NULL UNIQUE,
    exposure     TEXT      NOT NULL,
    state        TEXT      NOT NULL,
    requested_by TEXT      NOT NULL DEFAULT '',
    approved_by  TEXT      NOT NULL DEFAULT '',
    spec         TEXT      NOT NULL DEFAULT '{}',
    placement    TEXT      NOT NULL DEFAULT '[]',
    updated_at   TIMESTAMP NOT NULL
);

-- Additive: the boot service fills it once a host has an address.
ALTER TABLE assets ADD COLUMN host_address TEXT NOT NULL DEFAULT '';

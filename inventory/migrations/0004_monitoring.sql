-- What Prometheus should scrape: a server's BMC once registered, its host
-- once installed. Served through HTTP service discovery.
CREATE TABLE monitoring_targets (
    serial  TEXT NOT NULL,
    kind    TEXT NOT NULL,
    address TEXT NOT NULL,
    labels  TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (serial, kind)
);

-- One-off hardware side effects already done, so a retried activity does
-- not do them twice.
CREATE TABLE operations (
    serial TEXT      NOT NULL,
    key    TEXT      NOT NULL,
    at     TIMESTAMP NOT NULL,
    PRIMARY KEY (serial, key)
);

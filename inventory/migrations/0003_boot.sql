-- Install attempts: what the boot service hands a netbooting server, and the
-- one-time token its installer phones home with.
CREATE TABLE boot_configs (
    serial       TEXT      NOT NULL,
    attempt      INTEGER   NOT NULL,
    macs         TEXT      NOT NULL,
    token        TEXT      NOT NULL UNIQUE,
    issued_at    TIMESTAMP NOT NULL,
    expires_at   TIMESTAMP NOT NULL,
    cycled_at    TIMESTAMP,
    phoned_at    TIMESTAMP,
    retired_at   TIMESTAMP,
    PRIMARY KEY (serial, attempt)
);

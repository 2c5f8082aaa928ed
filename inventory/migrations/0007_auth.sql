-- API tokens: bound to a user and a role, optionally to the cloud project
-- (tenant) whose servers they may see. Only a hash of the secret is kept.
CREATE TABLE api_tokens (
    id          TEXT      PRIMARY KEY,
    name        TEXT      NOT NULL,
    user_name   TEXT      NOT NULL,
    role        TEXT      NOT NULL,
    project     TEXT      NOT NULL DEFAULT '',
    hash        TEXT      NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    created_by  TEXT      NOT NULL,
    revoked_at  TIMESTAMP
);

-- Who changed what through the API: every mutating call, allowed or not.
CREATE TABLE audit_log (
    id        @AUTO_ID@,
    at        TIMESTAMP NOT NULL,
    user_name TEXT      NOT NULL,
    role      TEXT      NOT NULL,
    method    TEXT      NOT NULL,
    path      TEXT      NOT NULL,
    status    INTEGER   NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);

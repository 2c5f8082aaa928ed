-- Sealed secrets (BMC credentials). Only ciphertext is stored; the key lives
-- outside the database, so a database dump alone reveals no password.
CREATE TABLE secrets (
    ref        TEXT PRIMARY KEY,
    scope      TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

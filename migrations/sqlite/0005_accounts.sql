-- Access control (DESIGN §13): accounts, server-side sessions and API tokens. Secrets are
-- never stored: passwords as Argon2id PHC strings, session ids and tokens as SHA-256 hex.

-- A person who signs in with a password.
CREATE TABLE account (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL
);

-- A signed-in browser. The cookie carries the id; only its hash is kept here, so a copy
-- of the database does not sign anyone in. Rows outlive a restart and expire.
CREATE TABLE session (
    id_hash     TEXT    PRIMARY KEY,
    account_id  BIGINT  NOT NULL REFERENCES account (id) ON DELETE CASCADE,
    csrf_token  TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL
);
CREATE INDEX session_expires ON session (expires_at);

-- A script's credential (`Authorization: Bearer …`), shown once at creation.
CREATE TABLE api_token (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    token_hash  TEXT    NOT NULL UNIQUE,
    account_id  BIGINT  REFERENCES account (id) ON DELETE CASCADE,
    created_at  BIGINT  NOT NULL,
    last_used_at BIGINT,
    revoked_at  BIGINT
);

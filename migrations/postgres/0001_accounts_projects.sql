-- Accounts, login sessions and projects. Timestamps are Unix milliseconds (BIGINT) so
-- that both backends compare them the same way.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
-- Emails are lowercased by the application; the index makes uniqueness hold regardless.
CREATE UNIQUE INDEX users_email_unique ON users (lower(email));

CREATE TABLE sessions (
    token_hash BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

CREATE TABLE projects (
    id                          TEXT PRIMARY KEY,
    owner_id                    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name                        TEXT NOT NULL,
    key_hash                    BYTEA NOT NULL UNIQUE,
    key_prefix                  TEXT NOT NULL,
    -- Per-project overrides; NULL means "the server default".
    max_message_bytes           BIGINT,
    messages_per_second         BIGINT,
    project_messages_per_second BIGINT,
    max_connections             BIGINT,
    allowed_origins             TEXT,
    created_at                  BIGINT NOT NULL
);
CREATE INDEX projects_owner ON projects (owner_id, created_at);

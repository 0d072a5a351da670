-- Accounts, login sessions and projects. Timestamps are Unix milliseconds (INTEGER) so
-- that both backends compare them the same way.
CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);
-- Emails are lowercased by the application; the index makes uniqueness hold regardless.
CREATE UNIQUE INDEX users_email_unique ON users (lower(email));

CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

CREATE TABLE projects (
    id                          TEXT PRIMARY KEY NOT NULL,
    owner_id                    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name                        TEXT NOT NULL,
    key_hash                    BLOB NOT NULL UNIQUE,
    key_prefix                  TEXT NOT NULL,
    -- Per-project overrides; NULL means "the server default".
    max_message_bytes           INTEGER,
    messages_per_second         INTEGER,
    project_messages_per_second INTEGER,
    max_connections             INTEGER,
    allowed_origins             TEXT,
    created_at                  INTEGER NOT NULL
);
CREATE INDEX projects_owner ON projects (owner_id, created_at);

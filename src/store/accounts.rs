//! Users and their login sessions. Session tokens are stored as SHA-256 hashes only.

use super::{on_pool, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A user's id (a UUID in canonical text form).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub String);

impl UserId {
    /// A fresh random id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user to insert.
#[derive(Debug)]
pub struct NewUser<'a> {
    /// Fresh id.
    pub id: &'a UserId,
    /// Normalized (lowercased) email.
    pub email: &'a str,
    /// Argon2id PHC string.
    pub password_hash: &'a str,
    /// Unix milliseconds.
    pub created_at_ms: i64,
}

/// A stored user.
#[derive(Clone, Debug)]
pub struct UserRecord {
    /// The user's id.
    pub id: UserId,
    /// Normalized email.
    pub email: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Unix milliseconds.
    pub created_at_ms: i64,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    email: String,
    password_hash: String,
    created_at: i64,
}

impl From<UserRow> for UserRecord {
    fn from(row: UserRow) -> Self {
        Self {
            id: UserId(row.id),
            email: row.email,
            password_hash: row.password_hash,
            created_at_ms: row.created_at,
        }
    }
}

impl Store {
    /// Inserts a user; [`StoreError::Conflict`] when the email is taken.
    pub async fn insert_user(&self, user: &NewUser<'_>) -> Result<(), StoreError> {
        const SQL: &str =
            "INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)";
        on_pool!(self, pool => sqlx::query(SQL)
            .bind(user.id.as_str())
            .bind(user.email)
            .bind(user.password_hash)
            .bind(user.created_at_ms)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// The user with this (normalized) email.
    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        const SQL: &str =
            "SELECT id, email, password_hash, created_at FROM users WHERE lower(email) = lower($1)";
        let row = on_pool!(self, pool => sqlx::query_as::<_, UserRow>(SQL)
            .bind(email)
            .fetch_optional(pool)
            .await?);
        Ok(row.map(UserRecord::from))
    }

    /// Records a session token (by hash) for a user until `expires_at_ms`.
    pub async fn insert_session(
        &self,
        user: &UserId,
        token_hash: &[u8; 32],
        created_at_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)";
        on_pool!(self, pool => sqlx::query(SQL)
            .bind(&token_hash[..])
            .bind(user.as_str())
            .bind(created_at_ms)
            .bind(expires_at_ms)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// The user owning the unexpired session with this token hash.
    pub async fn find_session_user(
        &self,
        token_hash: &[u8; 32],
        now_ms: i64,
    ) -> Result<Option<UserRecord>, StoreError> {
        const SQL: &str = "SELECT u.id, u.email, u.password_hash, u.created_at \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2";
        let row = on_pool!(self, pool => sqlx::query_as::<_, UserRow>(SQL)
            .bind(&token_hash[..])
            .bind(now_ms)
            .fetch_optional(pool)
            .await?);
        Ok(row.map(UserRecord::from))
    }

    /// Ends a session of `user`; false when there was none.
    pub async fn delete_session(
        &self,
        user: &UserId,
        token_hash: &[u8; 32],
    ) -> Result<bool, StoreError> {
        const SQL: &str = "DELETE FROM sessions WHERE user_id = $1 AND token_hash = $2";
        let deleted = on_pool!(self, pool => sqlx::query(SQL)
            .bind(user.as_str())
            .bind(&token_hash[..])
            .execute(pool)
            .await?
            .rows_affected());
        Ok(deleted > 0)
    }

    /// Deletes sessions that expired before `now_ms`; returns how many.
    pub async fn delete_expired_sessions(&self, now_ms: i64) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM sessions WHERE expires_at <= $1";
        let deleted = on_pool!(self, pool => sqlx::query(SQL)
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(deleted)
    }
}

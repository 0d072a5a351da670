//! Accounts and sessions: signup, login with throttling, session lookup, logout.

use super::secrets::SessionToken;
use super::{now_ms, validate, Platform, PlatformError};
use crate::store::{NewUser, StoreError, UserId, UserRecord};
use std::net::IpAddr;
use std::sync::atomic::Ordering;

// Expired sessions are swept after every this many new sessions, which keeps the table
// bounded without a background task.
const SWEEP_EVERY: u64 = 256;

/// A signed-in user, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// Normalized email.
    pub email: String,
}

impl From<UserRecord> for User {
    fn from(record: UserRecord) -> Self {
        Self {
            id: record.id,
            email: record.email,
        }
    }
}

impl Platform {
    /// Creates an account and signs it in.
    pub async fn signup(
        &self,
        email: &str,
        password: String,
    ) -> Result<(User, SessionToken), PlatformError> {
        let email = validate::email(email).map_err(PlatformError::Invalid)?;
        validate::password(&password).map_err(PlatformError::Invalid)?;
        // Cheap pre-check so a taken email does not cost a hash; the unique index below
        // still decides races.
        if self.inner.store.find_user_by_email(&email).await?.is_some() {
            return Err(PlatformError::EmailTaken);
        }
        let password_hash = self.inner.passwords.hash(password).await?;
        let id = UserId::generate();
        let new_user = NewUser {
            id: &id,
            email: &email,
            password_hash: &password_hash,
            created_at_ms: now_ms(),
        };
        match self.inner.store.insert_user(&new_user).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => return Err(PlatformError::EmailTaken),
            Err(other) => return Err(other.into()),
        }
        let token = self.open_session(&id).await?;
        tracing::info!(user = %id, "signed up");
        Ok((User { id, email }, token))
    }

    /// Checks credentials and opens a session. Unknown email and wrong password get the
    /// same answer after the same work; throttled attempts are refused before any check.
    pub async fn login(
        &self,
        email: &str,
        password: String,
        ip: Option<IpAddr>,
    ) -> Result<(User, SessionToken), PlatformError> {
        // Throttle on the normalized form, so case variants of one address share a
        // counter. Text that is not an email names no account (signup refuses it), so it
        // is not looked up; it is throttled under itself, NUL made storable (PostgreSQL
        // text cannot hold one).
        let normalized = validate::email(email).ok();
        let account = normalized
            .clone()
            .unwrap_or_else(|| email.replace('\0', "\u{fffd}"));
        let attempt = self
            .inner
            .throttle
            .begin(&account, ip)
            .await
            .map_err(|retry_after| PlatformError::TooManyAttempts { retry_after })?;
        let user = match normalized {
            Some(account) => self.inner.store.find_user_by_email(&account).await?,
            None => None,
        };
        let verified = match &user {
            Some(user) => {
                self.inner
                    .passwords
                    .verify(password, user.password_hash.clone())
                    .await?
            }
            None => self.inner.passwords.verify_dummy(password).await?,
        };
        let Some(user) = user.filter(|_| verified) else {
            tracing::info!("login failed");
            return Err(PlatformError::InvalidCredentials);
        };
        self.inner.throttle.succeeded(attempt).await;
        let token = self.open_session(&user.id).await?;
        tracing::info!(user = %user.id, "logged in");
        Ok((user.into(), token))
    }

    /// The user a session token belongs to, if it is live.
    pub async fn authenticate(&self, token: &SessionToken) -> Result<User, PlatformError> {
        let user = self
            .inner
            .store
            .find_session_user(&token.hash(), now_ms())
            .await?;
        user.map(User::from).ok_or(PlatformError::Unauthenticated)
    }

    /// Ends the session; the token is refused from then on.
    pub async fn logout(&self, user: &User, token: &SessionToken) -> Result<(), PlatformError> {
        if !self
            .inner
            .store
            .delete_session(&user.id, &token.hash())
            .await?
        {
            return Err(PlatformError::Unauthenticated);
        }
        tracing::info!(user = %user.id, "logged out");
        Ok(())
    }

    async fn open_session(&self, user: &UserId) -> Result<SessionToken, PlatformError> {
        let token = SessionToken::generate();
        let now = now_ms();
        let ttl_ms = i64::try_from(self.inner.config.session_ttl.as_millis()).unwrap_or(i64::MAX);
        self.inner
            .store
            .insert_session(user, &token.hash(), now, now.saturating_add(ttl_ms))
            .await?;
        if self.inner.sessions_created.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY
            == SWEEP_EVERY - 1
        {
            let swept = self.inner.store.delete_expired_sessions(now).await?;
            tracing::debug!(swept, "expired sessions removed");
        }
        Ok(token)
    }
}

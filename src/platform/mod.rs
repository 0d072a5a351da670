//! Domain rules: signup, login (with throttling), sessions, projects and their API keys.
//!
//! [`Platform`] is the one entry point the HTTP handlers call. It validates input,
//! hashes secrets, talks to the [`Store`] and tells the realtime side when a key dies or
//! settings change, so no handler can forget one of those steps.

mod accounts;
mod directory;
pub mod password;
mod projects;
pub mod secrets;
pub mod throttle;
pub mod types;
pub mod validate;

pub use accounts::User;
pub use directory::StoreDirectory;
pub use projects::{
    merge_settings, Patch, Project, ProjectPatch, SettingsPatch, SETTINGS_PROBLEM_SEPARATOR,
};

use crate::realtime::Realtime;
use crate::store::{Store, StoreError};
use password::Passwords;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use throttle::LoginThrottle;
use types::Limits;

/// Why a platform operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// Input that breaks a rule; the message is for the user.
    #[error("{0}")]
    Invalid(String),
    /// Signup with a registered email.
    #[error("email already registered")]
    EmailTaken,
    /// Wrong email or password (deliberately the same for both).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Login throttled.
    #[error("too many failed attempts")]
    TooManyAttempts {
        /// Until the window passes.
        retry_after: Duration,
    },
    /// Missing, unknown, expired or logged-out session.
    #[error("unauthenticated")]
    Unauthenticated,
    /// No such resource for this user.
    #[error("not found")]
    NotFound,
    /// Anything unexpected.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for PlatformError {
    fn from(error: StoreError) -> Self {
        Self::Internal(anyhow::Error::new(error).context("store"))
    }
}

/// Platform settings taken from the server configuration.
#[derive(Clone, Debug)]
pub struct PlatformConfig {
    /// Server-wide limits (defaults and ceilings of project settings).
    pub limits: Limits,
    /// Session lifetime.
    pub session_ttl: Duration,
    /// Password hashes allowed to run at once.
    pub hashing_concurrency: usize,
}

/// The domain layer; cheap to clone.
#[derive(Clone)]
pub struct Platform {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    realtime: Realtime,
    passwords: Passwords,
    throttle: LoginThrottle,
    config: PlatformConfig,
    sessions_created: AtomicU64,
}

impl Platform {
    /// The domain layer over a store, notifying `realtime` of key and settings changes.
    pub fn new(store: Store, realtime: Realtime, config: PlatformConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                realtime,
                passwords: Passwords::new(config.hashing_concurrency),
                throttle: LoginThrottle::default(),
                config,
                sessions_created: AtomicU64::new(0),
            }),
        }
    }

    /// Counts failed logins in `shared` (a cluster's Redis), so the limits hold across
    /// every node.
    pub fn share_login_throttle(&self, shared: Arc<dyn throttle::SharedAttempts>) {
        self.inner.throttle.share(shared);
    }

    /// On a single node: keeps failed logins in the database, so a restart does not
    /// lift a lockout before its window passes.
    pub fn keep_login_failures(&self) {
        self.inner.throttle.keep(self.inner.store.clone());
    }

    /// Server-wide limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.config.limits
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

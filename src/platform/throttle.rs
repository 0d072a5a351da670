//! Failed-login throttling: after `account_limit` failures for one account or `ip_limit`
//! from one IP within the window, further attempts (even correct ones) are refused until
//! the oldest counted failure leaves the window. Counted in memory on a single node, with
//! each failure also written to the database ([`LoginThrottle::keep`]) and read back after
//! a restart, so a restart does not lift a lockout early; in a cluster, in the shared
//! [`SharedAttempts`] (Redis) so the limits hold across nodes, with the node's own memory
//! as the fallback while that is unavailable.
//!
//! Memory stays the one place a single node decides: it is exact under a burst of
//! parallel attempts (one lock), which a read-then-insert on the database is not. The
//! database is its journal, written before the password check (so a crash during a
//! burst keeps the burst) and read once, before the first attempt after a start.
//!
//! An attempt is counted as a failure the moment it starts and forgiven if it succeeds:
//! counting only after the (slow) password check would let a burst of parallel guesses
//! all pass the check before any of them is recorded. A success forgives only itself:
//! the failures before it still count until they leave the window, as SPEC §2 reads
//! ("10 failures for one account within 15 minutes"), so a guesser who also knows one
//! working password cannot reset the count.

use crate::store::Store;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Boxed future of a [`SharedAttempts`] call.
pub type SharedFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The limits and window an attempt is checked against.
#[derive(Clone, Copy, Debug)]
pub struct ThrottleLimits {
    /// Failures per account.
    pub account: usize,
    /// Failures per IP.
    pub ip: usize,
    /// How long a failure counts.
    pub window: Duration,
}

/// Failure counts shared by every node of a cluster. `None` means the store could not
/// be reached: the node then counts in its own memory.
pub trait SharedAttempts: Send + Sync + 'static {
    /// Counts an attempt as a failure unless `account` or `ip` is over its limit:
    /// the attempt's token, or the time to wait.
    fn begin<'a>(
        &'a self,
        account: &'a str,
        ip: Option<IpAddr>,
        limits: ThrottleLimits,
    ) -> SharedFuture<'a, Option<Result<String, Duration>>>;
    /// The attempt with `token` succeeded: neither the account nor the IP is charged
    /// for it (earlier failures still count).
    fn succeeded<'a>(
        &'a self,
        account: &'a str,
        ip: Option<IpAddr>,
        token: String,
    ) -> SharedFuture<'a, ()>;
}

/// Failures per account before it is throttled (SPEC §2).
pub const ACCOUNT_LIMIT: usize = 10;
/// Failures per IP before it is throttled (SPEC §2).
pub const IP_LIMIT: usize = 100;
/// How long a failure counts.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// How the journal names an account's failures (`account:<normalized email>`).
const ACCOUNT_SUBJECT: &str = "account:";
/// How the journal names an IP's failures (`ip:<address>`).
const IP_SUBJECT: &str = "ip:";

/// The window in milliseconds, as the journal's timestamps count.
fn window_ms(window: Duration) -> i64 {
    i64::try_from(window.as_millis()).unwrap_or(i64::MAX)
}

// Drop idle entries every this many attempts, so the maps stay as small as the set of
// accounts and IPs that failed recently.
const PRUNE_EVERY: u64 = 1024;

/// Failure timestamps per key, oldest first, never more than the limit.
struct Failures<K> {
    by_key: HashMap<K, VecDeque<Instant>>,
    limit: usize,
}

impl<K: Hash + Eq + Clone> Failures<K> {
    fn new(limit: usize) -> Self {
        Self {
            by_key: HashMap::new(),
            limit,
        }
    }

    /// Time until `key` may try again, if it is throttled now.
    fn blocked(&mut self, key: &K, now: Instant, window: Duration) -> Option<Duration> {
        let times = self.by_key.get_mut(key)?;
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            times.pop_front();
        }
        if times.len() >= self.limit {
            times
                .front()
                .map(|oldest| window.saturating_sub(now.duration_since(*oldest)))
        } else {
            None
        }
    }

    fn record(&mut self, key: &K, now: Instant) {
        let times = self.by_key.entry(key.clone()).or_default();
        if times.len() >= self.limit {
            times.pop_front();
        }
        times.push_back(now);
    }

    fn forgive_one(&mut self, key: &K) {
        if let Some(times) = self.by_key.get_mut(key) {
            times.pop_back();
        }
    }

    fn prune(&mut self, now: Instant, window: Duration) {
        self.by_key.retain(|_, times| {
            times
                .back()
                .is_some_and(|t| now.duration_since(*t) < window)
        });
    }
}

struct State {
    accounts: Failures<String>,
    ips: Failures<IpAddr>,
    attempts: u64,
}

/// The login throttle; shared by every request of one node.
pub struct LoginThrottle {
    state: Mutex<State>,
    limits: ThrottleLimits,
    shared: OnceLock<Arc<dyn SharedAttempts>>,
    /// A single node's journal of failures, once [`Self::keep`] ran.
    kept: OnceLock<Store>,
    /// Done once the journal's failures still in the window are back in memory.
    restored: tokio::sync::OnceCell<()>,
}

/// An attempt that was let through; report its outcome with
/// [`LoginThrottle::succeeded`] (a dropped attempt stays counted as a failure).
#[must_use]
pub struct Attempt {
    account: String,
    ip: Option<IpAddr>,
    /// Its token in the shared counts, when it was counted there.
    shared: Option<String>,
    /// Its token in the database's journal, when it was written there.
    kept: Option<String>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new(ACCOUNT_LIMIT, IP_LIMIT, WINDOW)
    }
}

impl LoginThrottle {
    /// A throttle with explicit limits.
    pub fn new(account_limit: usize, ip_limit: usize, window: Duration) -> Self {
        Self {
            state: Mutex::new(State {
                accounts: Failures::new(account_limit),
                ips: Failures::new(ip_limit),
                attempts: 0,
            }),
            limits: ThrottleLimits {
                account: account_limit,
                ip: ip_limit,
                window,
            },
            shared: OnceLock::new(),
            kept: OnceLock::new(),
            restored: tokio::sync::OnceCell::new(),
        }
    }

    /// Counts failures in `shared` from now on (a cluster's nodes count together).
    pub fn share(&self, shared: Arc<dyn SharedAttempts>) {
        let _ = self.shared.set(shared);
    }

    /// On a single node: writes every counted failure to `store` too, and reads those
    /// still in the window back before the first attempt, so they outlive a restart.
    pub fn keep(&self, store: Store) {
        let _ = self.kept.set(store);
    }

    /// Starts a login attempt for `account` (normalized email) from `ip` (when known):
    /// refused with the time to wait if either is throttled, else counted as a failure
    /// until [`LoginThrottle::succeeded`] says otherwise.
    pub async fn begin(&self, account: &str, ip: Option<IpAddr>) -> Result<Attempt, Duration> {
        if let Some(shared) = self.shared.get() {
            if let Some(answer) = shared.begin(account, ip, self.limits).await {
                return answer.map(|token| Attempt {
                    account: account.to_owned(),
                    ip,
                    shared: Some(token),
                    kept: None,
                });
            }
        }
        let Some(store) = self.kept.get() else {
            return self.begin_here(account, ip);
        };
        self.restored.get_or_init(|| self.restore(store)).await;
        let mut attempt = self.begin_here(account, ip)?;
        let token = format!("{:032x}", rand::random::<u128>());
        let mut subjects = vec![format!("{ACCOUNT_SUBJECT}{account}")];
        subjects.extend(ip.map(|ip| format!("{IP_SUBJECT}{ip}")));
        let now_ms = super::now_ms();
        let expired_before = now_ms - window_ms(self.limits.window);
        match store
            .record_login_failure(&token, &subjects, now_ms, expired_before)
            .await
        {
            Ok(()) => attempt.kept = Some(token),
            Err(error) => {
                tracing::warn!(%error, "failed login not stored; counted in memory only");
            }
        }
        Ok(attempt)
    }

    /// Puts the journal's failures still in the window back into memory (once, before
    /// the first attempt after a start).
    async fn restore(&self, store: &Store) {
        let now_ms = super::now_ms();
        let failures = match store
            .recent_login_failures(now_ms - window_ms(self.limits.window))
            .await
        {
            Ok(failures) => failures,
            Err(error) => {
                tracing::warn!(%error, "stored failed logins unreadable; counting from now");
                return;
            }
        };
        let now = Instant::now();
        let mut state = self.state.lock();
        for (subject, failed_at_ms) in failures {
            let age = Duration::from_millis(u64::try_from(now_ms - failed_at_ms).unwrap_or(0));
            // Older than this boot's monotonic clock (a machine restarted within the
            // window): such a failure cannot be placed, and is let go.
            let Some(at) = now.checked_sub(age) else {
                continue;
            };
            if let Some(account) = subject.strip_prefix(ACCOUNT_SUBJECT) {
                state.accounts.record(&account.to_owned(), at);
            } else if let Some(ip) = subject
                .strip_prefix(IP_SUBJECT)
                .and_then(|ip| ip.parse::<IpAddr>().ok())
            {
                state.ips.record(&ip, at);
            }
        }
    }

    /// The attempt succeeded: neither its account nor its IP is charged for it.
    pub async fn succeeded(&self, mut attempt: Attempt) {
        // Forgiven where it was counted: a success counted in Redis must not forgive a
        // failure this node counted in its own memory while Redis was away.
        match (attempt.shared.take(), self.shared.get()) {
            (Some(token), Some(shared)) => {
                shared.succeeded(&attempt.account, attempt.ip, token).await;
            }
            _ => {
                if let (Some(token), Some(store)) = (attempt.kept.take(), self.kept.get()) {
                    if let Err(error) = store.forgive_login_failure(&token).await {
                        tracing::warn!(%error, "a successful login stays stored as failed");
                    }
                }
                self.succeeded_here(attempt);
            }
        }
    }

    /// [`Self::begin`] in this node's memory.
    fn begin_here(&self, account: &str, ip: Option<IpAddr>) -> Result<Attempt, Duration> {
        let now = Instant::now();
        let window = self.limits.window;
        let mut state = self.state.lock();
        state.attempts += 1;
        if state.attempts % PRUNE_EVERY == 0 {
            state.accounts.prune(now, window);
            state.ips.prune(now, window);
        }
        let account = account.to_owned();
        let wait_account = state.accounts.blocked(&account, now, window);
        let wait_ip = ip.and_then(|ip| state.ips.blocked(&ip, now, window));
        if let Some(wait) = wait_account.max(wait_ip) {
            return Err(wait);
        }
        state.accounts.record(&account, now);
        if let Some(ip) = ip {
            state.ips.record(&ip, now);
        }
        Ok(Attempt {
            account,
            ip,
            shared: None,
            kept: None,
        })
    }

    /// [`Self::succeeded`] in this node's memory.
    fn succeeded_here(&self, attempt: Attempt) {
        let mut state = self.state.lock();
        state.accounts.forgive_one(&attempt.account);
        if let Some(ip) = attempt.ip {
            state.ips.forgive_one(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared count that lets every attempt through and forgets successes.
    struct AlwaysAdmits;

    impl SharedAttempts for AlwaysAdmits {
        fn begin<'a>(
            &'a self,
            _: &'a str,
            _: Option<IpAddr>,
            _: ThrottleLimits,
        ) -> SharedFuture<'a, Option<Result<String, Duration>>> {
            Box::pin(async { Some(Ok("token".to_owned())) })
        }
        fn succeeded<'a>(
            &'a self,
            _: &'a str,
            _: Option<IpAddr>,
            _: String,
        ) -> SharedFuture<'a, ()> {
            Box::pin(async {})
        }
    }

    #[tokio::test]
    async fn a_success_counted_in_redis_forgives_no_failure_counted_in_memory() {
        let throttle = LoginThrottle::new(2, 100, WINDOW);
        // Redis was away: this node counted one failure itself.
        let _failed = throttle.begin("a@example.com", None).await.unwrap();
        throttle.share(Arc::new(AlwaysAdmits));
        let ok = throttle.begin("a@example.com", None).await.unwrap();
        throttle.succeeded(ok).await;
        // The local count still holds its failure (one more fills it).
        let _failed = throttle.begin_here("a@example.com", None).unwrap();
        assert!(throttle.begin_here("a@example.com", None).is_err());
    }

    #[test]
    fn ten_failures_block_the_account_but_not_others() {
        let throttle = LoginThrottle::default();
        for _ in 0..ACCOUNT_LIMIT {
            let _failed = throttle.begin_here("a@example.com", None).unwrap();
        }
        let wait = throttle.begin_here("a@example.com", None).err().unwrap();
        assert!(wait > Duration::from_secs(14 * 60) && wait <= WINDOW);
        assert!(throttle.begin_here("b@example.com", None).is_ok());
    }

    #[test]
    fn the_ip_limit_spans_accounts_and_success_forgives() {
        let throttle = LoginThrottle::new(10, 3, WINDOW);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let ok = throttle.begin_here("a@example.com", Some(ip)).unwrap();
        throttle.succeeded_here(ok);
        for n in 0..3 {
            let _failed = throttle
                .begin_here(&format!("{n}@example.com"), Some(ip))
                .unwrap();
        }
        assert!(throttle.begin_here("new@example.com", Some(ip)).is_err());
        assert!(throttle.begin_here("new@example.com", None).is_ok());
    }

    #[test]
    fn a_success_forgives_itself_but_not_the_failures_before_it() {
        let throttle = LoginThrottle::default();
        for _ in 0..5 {
            let _failed = throttle.begin_here("a@example.com", None).unwrap();
        }
        let ok = throttle.begin_here("a@example.com", None).unwrap();
        throttle.succeeded_here(ok);
        for _ in 0..5 {
            let _failed = throttle.begin_here("a@example.com", None).unwrap();
        }
        assert!(
            throttle.begin_here("a@example.com", None).is_err(),
            "10 failures in the window, with a success among them"
        );
    }

    #[test]
    fn failures_expire_with_the_window() {
        let throttle = LoginThrottle::new(1, 100, Duration::from_millis(30));
        let _failed = throttle.begin_here("a@example.com", None).unwrap();
        assert!(throttle.begin_here("a@example.com", None).is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert!(throttle.begin_here("a@example.com", None).is_ok());
    }
}

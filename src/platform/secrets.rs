//! Secrets handed to users: session tokens, CSRF tokens and project API keys.
//!
//! Each is 32 bytes from the OS RNG, base64url-encoded without padding; only its SHA-256
//! is stored. The newtypes redact themselves in `Debug` so a stray `{:?}` in a log line
//! cannot leak one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;

/// Where API keys start, so leaked keys are recognizable by secret scanners.
pub const API_KEY_PREFIX: &str = "rk_";
/// Length of the non-secret display prefix: `rk_` and 8 characters (48 bits).
pub const KEY_PREFIX_LEN: usize = 11;

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a secret, as stored.
pub fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A login session token (`Authorization: Bearer` or the session cookie).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    /// A fresh random token.
    pub fn generate() -> Self {
        Self(random_token())
    }

    /// Wraps a token a client presented.
    pub fn from_client(token: &str) -> Self {
        Self(token.to_owned())
    }

    /// The token, to send to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its stored hash.
    pub fn hash(&self) -> [u8; 32] {
        sha256(&self.0)
    }

    /// The CSRF token bound to this session: a hash of the session token under its own
    /// label. Deriving it (rather than drawing it at random) ties the double-submit value
    /// to the session, so a cookie planted by a sibling subdomain cannot match.
    pub fn csrf_token(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"roomcast-csrf\0");
        hasher.update(self.0.as_bytes());
        URL_SAFE_NO_PAD.encode(hasher.finalize())
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// A project API key: `rk_` and 43 base64url characters (256 random bits).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(format!("{API_KEY_PREFIX}{}", random_token()))
    }

    /// The key, shown to its owner exactly once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its stored hash (the same function the realtime side looks keys up with).
    pub fn hash(&self) -> [u8; 32] {
        crate::realtime::Realtime::hash_key(&self.0)
    }

    /// The non-secret prefix shown afterwards.
    pub fn display_prefix(&self) -> &str {
        &self.0[..KEY_PREFIX_LEN]
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}…)", self.display_prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_have_the_documented_shape() {
        let key = ApiKey::generate();
        assert_eq!(key.expose().len(), 3 + 43);
        assert!(key.expose().starts_with("rk_"));
        assert_eq!(key.display_prefix(), &key.expose()[..11]);
        assert!(!format!("{key:?}").contains(key.expose()));
        assert_ne!(ApiKey::generate(), key);
    }

    #[test]
    fn session_tokens_are_redacted_and_bound_to_their_csrf_token() {
        let token = SessionToken::generate();
        assert_eq!(token.expose().len(), 43);
        assert!(!format!("{token:?}").contains(token.expose()));
        assert_eq!(
            token.csrf_token(),
            SessionToken::from_client(token.expose()).csrf_token()
        );
        assert_ne!(token.csrf_token(), SessionToken::generate().csrf_token());
    }
}

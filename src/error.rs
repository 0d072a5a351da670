//! The REST API's error type and its single mapping to HTTP: every failure a client can
//! see becomes `{"error":{"code","message"}}` with a stable code (SPEC §2).
//!
//! Internal failures are logged here with their whole cause chain and answered with an
//! opaque 500, so no database or library text ever reaches a client.

use crate::platform::PlatformError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Everything the REST API can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed or invalid request (bad JSON, unknown field, failed validation).
    #[error("{0}")]
    InvalidRequest(String),
    /// No valid session.
    #[error("a valid session is required")]
    Unauthenticated,
    /// Login with a wrong email or password.
    #[error("email or password is wrong")]
    InvalidCredentials,
    /// Login throttled; `retry_after_secs` until the window passes.
    #[error("too many failed login attempts, try again later")]
    TooManyAttempts {
        /// Seconds until an attempt can succeed again.
        retry_after_secs: u64,
    },
    /// Signup with an email that already has an account.
    #[error("an account with this email already exists")]
    EmailTaken,
    /// Unknown route or a resource the caller may not see.
    #[error("not found")]
    NotFound,
    /// A route that exists, with another method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Request body over 1 MiB.
    #[error("request body is larger than 1 MiB")]
    PayloadTooLarge,
    /// A cookie-authenticated write without CSRF proof.
    #[error("cross-site request refused: a write with the session cookie must come from this site's pages or carry the X-CSRF-Token header")]
    CsrfRejected,
    /// `X-API-Key` missing or empty.
    #[error("API key is required")]
    ApiKeyRequired,
    /// `X-API-Key` is not a live key.
    #[error("invalid API key")]
    InvalidApiKey,
    /// Published message over the project's `max_message_bytes`.
    #[error("message is larger than {limit} bytes")]
    MessageTooLarge {
        /// The project's limit in bytes.
        limit: u32,
    },
    /// Project message rate exhausted.
    #[error("rate limit reached, retry later")]
    RateLimited {
        /// When a retry can succeed.
        retry_after_ms: u64,
    },
    /// A dependency (the database) does not answer.
    #[error("{0}")]
    NotReady(String),
    /// Anything unexpected; details are logged, never sent.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// The HTTP status and the stable code of this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
            Self::Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            Self::InvalidCredentials => (StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS"),
            Self::TooManyAttempts { .. } => (StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_ATTEMPTS"),
            Self::EmailTaken => (StatusCode::CONFLICT, "EMAIL_TAKEN"),
            Self::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            Self::CsrfRejected => (StatusCode::FORBIDDEN, "CSRF_REJECTED"),
            Self::ApiKeyRequired => (StatusCode::UNAUTHORIZED, "API_KEY_REQUIRED"),
            Self::InvalidApiKey => (StatusCode::UNAUTHORIZED, "INVALID_API_KEY"),
            Self::MessageTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "MESSAGE_TOO_LARGE"),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
            Self::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "NOT_READY"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        }
    }
}

impl From<PlatformError> for ApiError {
    fn from(error: PlatformError) -> Self {
        match error {
            PlatformError::Invalid(message) => Self::InvalidRequest(message),
            PlatformError::EmailTaken => Self::EmailTaken,
            PlatformError::InvalidCredentials => Self::InvalidCredentials,
            PlatformError::TooManyAttempts { retry_after } => Self::TooManyAttempts {
                retry_after_secs: retry_after.as_secs().max(1),
            },
            PlatformError::Unauthenticated => Self::Unauthenticated,
            PlatformError::NotFound => Self::NotFound,
            PlatformError::Internal(error) => Self::Internal(error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Internal(error) = &self {
            // `{:#}` prints the whole `context` chain on one line.
            tracing::error!(error = format!("{error:#}"), "internal error");
        }
        let mut body = json!({ "error": { "code": code, "message": self.to_string() } });
        let mut retry_after_secs = None;
        match &self {
            Self::RateLimited { retry_after_ms } => {
                body["error"]["retry_after_ms"] = json!(retry_after_ms);
                retry_after_secs = Some(retry_after_ms.div_ceil(1000).max(1));
            }
            Self::MessageTooLarge { limit } => body["error"]["limit"] = json!(limit),
            Self::TooManyAttempts {
                retry_after_secs: secs,
            } => retry_after_secs = Some(*secs),
            _ => {}
        }
        let mut response = (status, axum::Json(body)).into_response();
        // RFC 9110: a 401 names the scheme that would be accepted.
        let challenge = match &self {
            Self::Unauthenticated | Self::InvalidCredentials => Some(r#"Bearer realm="roomcast""#),
            Self::ApiKeyRequired | Self::InvalidApiKey => Some(r#"ApiKey realm="roomcast""#),
            _ => None,
        };
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Some(secs) = retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

//! Extractors that resolve "who is calling" once and turn every malformed request into
//! an [`ApiError`] in the SPEC's shape (never axum's plain-text rejections).
//!
//! # Sessions and CSRF
//!
//! A session is `Authorization: Bearer <token>` or the `roomcast_session` cookie. A
//! Bearer token cannot be attached by a browser on its own, so it needs nothing else. A
//! cookie is attached by the browser itself, so a cookie-authenticated write (any method
//! but GET/HEAD/OPTIONS) must not come from another site's page. It is decided in this
//! order:
//!
//! 1. an `X-CSRF-Token` header: accepted only if it holds this session's CSRF token
//!    (derived from the session token and handed to our pages in the `roomcast_csrf`
//!    cookie at login; a cookie of that name set by anyone else does not count);
//! 2. `Sec-Fetch-Site`, which every current browser sends: `same-origin` or `none` (typed
//!    by the user) pass, `same-site` and `cross-site` are refused;
//! 3. an `Origin` header (or, without one, a `Referer`) must name the request's `Host`;
//! 4. a request with none of these headers did not come from a browser (browsers send
//!    `Origin` on every cross-origin request and every POST): it is a program that holds
//!    the cookie itself, which no other site can make it send, so it passes. This is the
//!    rule of Go's `net/http.CrossOriginProtection`. The cookie's `SameSite=Lax` also
//!    keeps older browsers from attaching it to another site's POST at all.
//!
//! A refused write gets 403 `CSRF_REJECTED`.

use crate::app::AppState;
use crate::error::ApiError;
use crate::platform::secrets::SessionToken;
use crate::platform::User;
use crate::realtime::ProjectAccess;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "roomcast_session";
/// Name of the CSRF double-submit cookie.
pub const CSRF_COOKIE: &str = "roomcast_csrf";
/// Header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Header in which browsers say where a request comes from (Fetch Metadata).
const SEC_FETCH_SITE: &str = "sec-fetch-site";
/// Header carrying a project API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// A JSON object body; any problem becomes 400 `INVALID_REQUEST` (413
/// `PAYLOAD_TOO_LARGE` over the body limit). Only objects are accepted: serde would
/// otherwise also read a struct from a JSON array (`["a@b.c", "pw"]`).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::InvalidRequest(
                "expected a JSON body with Content-Type: application/json".into(),
            ));
        }
        let bytes = read_body(req, state).await?;
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::InvalidRequest(
                "the body must be a JSON object".into(),
            ));
        }
        // serde's text names the field and the problem ("unknown field `x`", "missing
        // field `email`"), which is what the caller needs to fix the request.
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))
    }
}

/// The body of an endpoint that takes none (logout, regenerate-key, delete): nothing,
/// whitespace or an empty JSON object `{}`; anything else names fields the endpoint does
/// not have, so it is refused like any unknown field (400 `INVALID_REQUEST`), and a body
/// over the limit gets 413 `PAYLOAD_TOO_LARGE` as everywhere else.
pub struct NoBody;

impl<S: Send + Sync> FromRequest<S> for NoBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        let text = std::str::from_utf8(&bytes).unwrap_or("?");
        let unfilled = text.trim().is_empty()
            || serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
                .is_ok_and(|fields| fields.is_empty());
        if unfilled {
            Ok(Self)
        } else {
            Err(ApiError::InvalidRequest(
                "this endpoint takes no request body".into(),
            ))
        }
    }
}

/// How much of an oversized body is read and thrown away before its 413 is sent.
const DISCARD_BYTES: u64 = 64 * 1024 * 1024;
/// How long an oversized body is read and thrown away before its 413 is sent.
const DISCARD_TIME: Duration = Duration::from_secs(10);

/// Middleware for the REST API: every request's body is read whole, before anything
/// looks at the request, and handed on in memory.
///
/// - A body over `MAX_BODY_BYTES` gets 413 `PAYLOAD_TOO_LARGE` whatever the endpoint,
///   the session or the content type, whether its length is declared or it is chunked.
/// - The answer is sent only once the client has finished sending (past the limit the
///   bytes are read and dropped, up to `DISCARD_BYTES` and `DISCARD_TIME`). A server that
///   answers early and closes while the upload is still arriving resets the connection,
///   and many clients (Node's `fetch` among them) then report `EPIPE`/`ECONNRESET`
///   instead of the answer. For the same reason an early 401 or 404 of a handler that
///   never reads the body needs it read first.
/// - A client that sent `Expect: 100-continue` has not sent an oversized declared body
///   yet: it gets its 413 at once, and sends nothing.
pub async fn read_bodies_whole(
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let limit = crate::app::MAX_BODY_BYTES;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let awaits_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (parts, body) = req.into_parts();
    if declared.is_some_and(|len| len > limit as u64) {
        if !awaits_continue {
            discard(body, DISCARD_BYTES).await;
        }
        return ApiError::PayloadTooLarge.into_response();
    }
    match read_within(body, limit).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Err(error) => error.into_response(),
    }
}

/// The whole body if it is at most `limit` bytes; past that, the rest is discarded
/// (see [`read_bodies_whole`]) and the answer is 413.
async fn read_within(body: axum::body::Body, limit: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut single: Option<Bytes> = None;
    let mut joined = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| unreadable())?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total += data.len();
        if total > limit {
            discard(body, DISCARD_BYTES).await;
            return Err(ApiError::PayloadTooLarge);
        }
        // Most bodies come in one piece, kept as it is; more are joined.
        if single.is_none() && joined.is_empty() {
            single = Some(data);
        } else {
            if let Some(earlier) = single.take() {
                joined.extend_from_slice(&earlier);
            }
            joined.extend_from_slice(&data);
        }
    }
    Ok(single.unwrap_or_else(|| joined.freeze()))
}

/// Reads and drops up to `budget` bytes of `body`, for at most `DISCARD_TIME`.
async fn discard(mut body: axum::body::Body, budget: u64) {
    use http_body_util::BodyExt;
    let deadline = tokio::time::Instant::now() + DISCARD_TIME;
    let mut left = budget;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await {
        let len = frame.data_ref().map_or(0, |data| data.len() as u64);
        match left.checked_sub(len) {
            Some(rest) if rest > 0 => left = rest,
            _ => return,
        }
    }
}

fn unreadable() -> ApiError {
    ApiError::InvalidRequest("the request body could not be read".into())
}

/// The whole body, within the body limit: 413 `PAYLOAD_TOO_LARGE` past it, 400
/// `INVALID_REQUEST` when it cannot be read.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            unreadable()
        }
    })
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// `Set-Cookie` values opening a session: the session cookie (HttpOnly) and the CSRF
/// cookie (readable by our pages' scripts, which echo it in `X-CSRF-Token`).
pub fn session_cookies(token: &SessionToken, ttl: Duration, secure: bool) -> [HeaderValue; 2] {
    let secure = if secure { "; Secure" } else { "" };
    let max_age = ttl.as_secs();
    let session = format!(
        "{SESSION_COOKIE}={}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}{secure}",
        token.expose()
    );
    let csrf = format!(
        "{CSRF_COOKIE}={}; SameSite=Lax; Path=/; Max-Age={max_age}{secure}",
        token.csrf_token()
    );
    // Both are base64url and ASCII digits: always valid header values.
    [session, csrf]
        .map(|value| HeaderValue::try_from(value).unwrap_or(HeaderValue::from_static("")))
}

/// `Set-Cookie` values that delete both cookies.
pub fn cleared_cookies(secure: bool) -> [HeaderValue; 2] {
    let secure = if secure { "; Secure" } else { "" };
    [
        format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0{secure}"),
        format!("{CSRF_COOKIE}=; SameSite=Lax; Path=/; Max-Age=0{secure}"),
    ]
    .map(|value| HeaderValue::try_from(value).unwrap_or(HeaderValue::from_static("")))
}

/// How the caller authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthVia {
    /// `Authorization: Bearer`.
    Bearer,
    /// The session cookie.
    Cookie,
}

/// The signed-in caller (401 `UNAUTHENTICATED` without a live session).
pub struct CurrentUser {
    /// Who is calling.
    pub user: User,
    /// The session they used (logout ends exactly this one).
    pub token: SessionToken,
    /// Where the token came from.
    pub via: AuthVia,
}

fn bearer(headers: &HeaderMap) -> Option<Result<&str, ApiError>> {
    let value = headers.get(header::AUTHORIZATION)?;
    let parsed = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty());
    Some(parsed.ok_or(ApiError::Unauthenticated))
}

/// The host[:port] of an `Origin` or `Referer` value.
fn authority_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    Some(rest.split(['/', '?', '#']).next().unwrap_or(rest))
}

/// Whether a submitted CSRF token (header or form field) equals the expected one, in
/// constant time. The one comparison every CSRF check goes through: the header check
/// here and the dashboard's hidden form fields alike.
pub fn csrf_matches(expected: &str, sent: &[u8]) -> bool {
    !expected.is_empty() && bool::from(sent.ct_eq(expected.as_bytes()))
}

fn csrf_ok(parts: &Parts, token: &SessionToken) -> bool {
    let headers = &parts.headers;
    if let Some(sent) = headers.get(CSRF_HEADER) {
        return csrf_matches(&token.csrf_token(), sent.as_bytes());
    }
    if let Some(site) = headers.get(SEC_FETCH_SITE) {
        return matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(source) = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
    else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));
    match (host, source.to_str().ok().and_then(authority_of)) {
        (Some(host), Some(from)) => host.eq_ignore_ascii_case(from),
        _ => false,
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (raw, via) = match bearer(&parts.headers) {
            Some(token) => (token?, AuthVia::Bearer),
            None => match cookie(&parts.headers, SESSION_COOKIE) {
                Some(token) if !token.is_empty() => (token, AuthVia::Cookie),
                _ => return Err(ApiError::Unauthenticated),
            },
        };
        let token = SessionToken::from_client(raw);
        let user = state.platform.authenticate(&token).await?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if via == AuthVia::Cookie && !safe && !csrf_ok(parts, &token) {
            return Err(ApiError::CsrfRejected);
        }
        Ok(Self { user, token, via })
    }
}

/// The project whose API key is in `X-API-Key` (401 `API_KEY_REQUIRED` / `INVALID_API_KEY`).
pub struct ProjectKey(pub ProjectAccess);

impl FromRequestParts<AppState> for ProjectKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(API_KEY_HEADER) else {
            return Err(ApiError::ApiKeyRequired);
        };
        let key = value.to_str().map_err(|_| ApiError::InvalidApiKey)?.trim();
        if key.is_empty() {
            return Err(ApiError::ApiKeyRequired);
        }
        match state.realtime.resolve_key(key).await? {
            Some(access) => Ok(Self(access)),
            None => Err(ApiError::InvalidApiKey),
        }
    }
}

/// The client's IP for throttling: the last `X-Forwarded-For` hop with `--trust-proxy`
/// (the address our proxy saw; earlier hops are client-supplied), else the TCP peer
/// when the accept loop recorded it, else unknown.
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.config.trust_proxy {
            let forwarded = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
                .next_back();
            if forwarded.is_some() {
                return Ok(Self(forwarded));
            }
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        Ok(Self(peer))
    }
}

/// A project id from the path; a malformed one is simply not found.
pub struct ProjectPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ProjectPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|path| Self(path.0))
            .map_err(|_| ApiError::NotFound)
    }
}

/// Reads `field` as "absent / null / value" (serde maps both absent and null to `None`
/// for a plain `Option`). Use with `#[serde(default, deserialize_with = "nullable")]`.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}

/// Like [`nullable`], for a field that must be a JSON object or `null`: serde's derived
/// structs would also take an array and read its items by position, which no client
/// means (`"settings": [100, 5]` is refused, not read as two limits).
pub fn nullable_object<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    struct ObjectOrNull<T>(std::marker::PhantomData<T>);

    impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for ObjectOrNull<T> {
        type Value = Option<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object or null")
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }

    deserializer
        .deserialize_any(ObjectOrNull(std::marker::PhantomData))
        .map(Some)
}

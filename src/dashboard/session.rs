//! Who is looking at a page, and the CSRF check of every dashboard form.
//!
//! The dashboard knows its visitor only by the `roomcast_session` cookie (never a Bearer
//! token, never an API key). Forms carry the double-submit token in a hidden `csrf`
//! field:
//!
//! - signed-in forms: the token derived from the session (the same value as the
//!   `roomcast_csrf` cookie and the REST API's `X-CSRF-Token`);
//! - the log-in and sign-up forms, which have no session yet: a random token that the
//!   form page also sets as the `roomcast_csrf` cookie, so only a page that could read
//!   our cookie can submit it (this stops log-in CSRF).
//!
//! Both compare through [`csrf_matches`], the check the REST extractor uses too.

use super::PageError;
use crate::app::AppState;
use crate::http::extract::{cookie, csrf_matches, CSRF_COOKIE, SESSION_COOKIE};
use crate::platform::secrets::SessionToken;
use crate::platform::{PlatformError, User};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A signed-in visitor; pages that need one redirect to the log-in form without it.
pub struct Viewer {
    /// Who is looking.
    pub user: User,
    /// Their session (log out ends exactly this one).
    pub token: SessionToken,
}

impl Viewer {
    /// The CSRF token this visitor's forms carry.
    pub fn csrf(&self) -> String {
        self.token.csrf_token()
    }
}

/// The visitor behind the session cookie, if it names a live session.
pub async fn current_viewer(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Viewer>, PageError> {
    let Some(raw) = cookie(headers, SESSION_COOKIE).filter(|raw| !raw.is_empty()) else {
        return Ok(None);
    };
    let token = SessionToken::from_client(raw);
    match state.platform.authenticate(&token).await {
        Ok(user) => Ok(Some(Viewer { user, token })),
        Err(PlatformError::Unauthenticated) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        match current_viewer(state, &parts.headers).await? {
            Some(viewer) => Ok(viewer),
            None => {
                // Come back to the page after logging in; a form POST has no page to
                // return to, so it lands on the projects list instead.
                let next = (parts.method == Method::GET)
                    .then(|| parts.uri.path().to_owned())
                    .filter(|path| safe_next(path));
                Err(PageError::LogIn { next })
            }
        }
    }
}

/// Whether `next` is a path on this site (not `//evil.example` or a full URL), so the
/// redirect after log-in cannot be pointed elsewhere. Only visible ASCII is allowed:
/// browsers drop tabs and newlines from a URL (`/<TAB>/evil.example` becomes
/// `//evil.example`) and read `\` as `/`, and a control character would not fit in a
/// `Location` header at all. Our own paths need none of them.
pub fn safe_next(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
        && !next.starts_with("/api/")
}

/// The fields of a form that has nothing but its CSRF token (log out, confirmations).
#[derive(Deserialize)]
pub struct NoFields {}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// Reads a URL-encoded form body and its hidden `csrf` field.
async fn read_form<T: DeserializeOwned>(
    req: Request,
    state: &AppState,
) -> Result<(T, String), PageError> {
    let bytes = Bytes::from_request(req, state)
        .await
        .map_err(|_| PageError::BadRequest)?;
    // Browsers send our forms in the pages' encoding, UTF-8. Anything else was not typed
    // into them, and decoding it leniently would store U+FFFD in place of what was sent.
    if percent_encoding::percent_decode(&bytes)
        .decode_utf8()
        .is_err()
    {
        return Err(PageError::BadRequest);
    }
    let csrf = serde_urlencoded::from_bytes::<CsrfField>(&bytes)
        .map_err(|_| PageError::BadRequest)?
        .csrf;
    let form = serde_urlencoded::from_bytes::<T>(&bytes).map_err(|_| PageError::BadRequest)?;
    Ok((form, csrf))
}

/// A form posted by a signed-in visitor, whose hidden `csrf` field matched their session.
pub struct SignedForm<T> {
    /// Who posted it.
    pub viewer: Viewer,
    /// The form's fields.
    pub form: T,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for SignedForm<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, PageError> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        let (form, csrf) = read_form::<T>(Request::from_parts(parts, body), state).await?;
        if !csrf_matches(&viewer.csrf(), csrf.as_bytes()) {
            return Err(PageError::Csrf);
        }
        Ok(Self { viewer, form })
    }
}

/// A form posted without a session (log in, sign up), whose hidden `csrf` field matched
/// the `roomcast_csrf` cookie set by the form's page.
pub struct AnonymousForm<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequest<AppState> for AnonymousForm<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, PageError> {
        let expected = cookie(req.headers(), CSRF_COOKIE).unwrap_or("").to_owned();
        let (form, csrf) = read_form::<T>(req, state).await?;
        if !csrf_matches(&expected, csrf.as_bytes()) {
            return Err(PageError::Csrf);
        }
        Ok(Self(form))
    }
}

/// The token for a log-in or sign-up form: the visitor's `roomcast_csrf` cookie when
/// they have one, else a fresh one plus the `Set-Cookie` that stores it.
pub fn anonymous_csrf(headers: &HeaderMap, secure: bool) -> (String, Option<HeaderValue>) {
    if let Some(existing) = cookie(headers, CSRF_COOKIE).filter(|value| !value.is_empty()) {
        return (existing.to_owned(), None);
    }
    // A session token's randomness is exactly what this needs; it is never a session.
    let token = SessionToken::generate().expose().to_owned();
    let secure = if secure { "; Secure" } else { "" };
    // Base64url only: always a valid header value.
    let set_cookie = HeaderValue::try_from(format!(
        "{CSRF_COOKIE}={token}; SameSite=Lax; Path=/{secure}"
    ))
    .ok();
    (token, set_cookie)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_is_a_visible_local_path() {
        for good in ["/", "/projects", "/projects/new?x=1#y", "/projects/%2F%2Fx"] {
            assert!(safe_next(good), "{good}");
        }
        for bad in [
            "",
            "projects",
            "//evil.example/",
            "/\tevil",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/x",
            "/\\evil.example",
            "/\\/evil",
            "/\u{1}",
            "/\u{0}",
            "/\u{7f}",
            "/\u{b}",
            "/ /evil",
            "/é",
            "/api/v1/me",
            "https://evil.example/",
        ] {
            assert!(!safe_next(bad), "{bad:?}");
        }
    }
}

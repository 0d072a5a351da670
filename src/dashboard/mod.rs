//! The dashboard: server-rendered pages on `/` for people (SPEC §5): sign up, log in,
//! projects, keys shown once, settings, live counts and a live console.
//!
//! Pages are askama templates (`templates/`, checked at compile time, every value
//! HTML-escaped) over the same [`Platform`](crate::platform::Platform) calls the REST
//! API makes, so both surfaces share one set of rules. The visitor is identified by the
//! session cookie only ([`session::Viewer`]); every form carries a hidden CSRF token
//! checked by [`session::SignedForm`] / [`session::AnonymousForm`]. Live counts and the
//! console stream over Server-Sent Events (`live`); a small embedded script upgrades
//! the pages with them, and everything else works without JavaScript.
//!
//! Routes: `/`, `/signup`, `/login`, `/logout`, `/projects…` and `/assets/…`; nothing
//! under `/api`, `/socket.io`, `/healthz`, `/readyz` or `/metrics`.

mod auth;
mod live;
mod projects;
pub mod session;
mod views;

use crate::app::AppState;
use crate::platform::PlatformError;
use askama::Template;
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// The dashboard's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(auth::home))
        .route("/signup", get(auth::signup_form).post(auth::signup))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", get(home).post(auth::logout))
        .route("/projects", get(projects::list).post(projects::create))
        .route("/projects/new", get(projects::new_form))
        .route("/projects/live", get(live::list))
        .route("/projects/{id}", get(projects::show))
        .route(
            "/projects/{id}/rename",
            get(to_project).post(projects::rename),
        )
        .route(
            "/projects/{id}/settings",
            get(to_project).post(projects::settings),
        )
        .route(
            "/projects/{id}/regenerate",
            get(projects::regenerate_confirm).post(projects::regenerate),
        )
        .route(
            "/projects/{id}/delete",
            get(projects::delete_confirm).post(projects::delete),
        )
        .route("/projects/{id}/key", get(projects::show_key))
        .route("/projects/{id}/send", get(to_project).post(projects::send))
        .route("/projects/{id}/live", get(live::project))
        .route("/assets/dashboard.css", get(stylesheet))
        .route("/assets/dashboard.js", get(script))
        .route("/favicon.ico", get(no_favicon))
        .layer(axum::middleware::map_response(security_headers))
}

const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/dashboard.js");

async fn stylesheet() -> impl IntoResponse {
    asset("text/css; charset=utf-8", CSS)
}

async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", JS)
}

/// `GET` of a form's address (a failed form's page left it in the address bar, and
/// then it was reloaded or bookmarked): the project page the form belongs to.
async fn to_project(Path(id): Path<String>) -> Redirect {
    Redirect::to(&format!("/projects/{}", views::encode_query(&id)))
}

/// `GET /logout`: logging out takes the form (with its CSRF token); a typed address
/// goes to the dashboard's front page instead.
async fn home() -> Redirect {
    Redirect::to("/")
}

/// Browsers ask for `/favicon.ico` on every first visit; we have none, and a 404 would
/// show as an error in every page's console.
async fn no_favicon() -> impl IntoResponse {
    (
        StatusCode::NO_CONTENT,
        [(header::CACHE_CONTROL, "public, max-age=86400")],
    )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Assets change only with the binary; an hour keeps upgrades visible soon.
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
}

/// Pages only ever load our own embedded assets, so the policy can forbid everything
/// else: no inline script, no third-party request, no framing.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Why a page could not be shown. Form mistakes are not errors: handlers re-render the
/// form with inline messages. This is the dashboard's one mapping to responses.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// No live session: go to the log-in form, then come back to `next`.
    #[error("log in required")]
    LogIn {
        /// Where to return after logging in (a local path).
        next: Option<String>,
    },
    /// No such page, or another user's project.
    #[error("not found")]
    NotFound,
    /// A form POST without the right hidden CSRF token.
    #[error("form token missing or wrong")]
    Csrf,
    /// A request our own pages never send (missing form fields).
    #[error("malformed request")]
    BadRequest,
    /// Anything unexpected; logged, never shown.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<PlatformError> for PageError {
    fn from(error: PlatformError) -> Self {
        match error {
            PlatformError::Unauthenticated => Self::LogIn { next: None },
            PlatformError::NotFound => Self::NotFound,
            PlatformError::Internal(error) => Self::Internal(error),
            // Handlers turn these into inline form errors; reaching here means a form
            // our pages do not render was posted.
            PlatformError::Invalid(_)
            | PlatformError::EmailTaken
            | PlatformError::InvalidCredentials
            | PlatformError::TooManyAttempts { .. } => Self::BadRequest,
        }
    }
}

impl From<askama::Error> for PageError {
    fn from(error: askama::Error) -> Self {
        Self::Internal(anyhow::Error::new(error).context("rendering a template"))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, text) = match &self {
            Self::LogIn { next } => {
                let target = match next {
                    Some(next) => format!("/login?next={}", views::encode_query(next)),
                    None => "/login".to_owned(),
                };
                return Redirect::to(&target).into_response();
            }
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such page, or the project was deleted.",
            ),
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form was not sent by this dashboard's own page, or it expired. \
                 Go back, reload the page and try again.",
            ),
            Self::BadRequest => (
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The request was not understood. Go back, reload the page and try again.",
            ),
            Self::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "dashboard internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The server could not complete this request. Try again in a moment.",
                )
            }
        };
        let page = views::ErrorPage {
            layout: views::Layout::unknown_viewer(),
            title,
            text,
        };
        match page.render() {
            Ok(body) => (status, Html(body)).into_response(),
            Err(_) => (status, text).into_response(),
        }
    }
}

/// Adds a `Set-Cookie` to `response`, if there is one to add.
pub(crate) fn with_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// A rendered page with its status, and `no-store` so a key or form never outlives the
/// tab in a shared cache.
pub(crate) fn page(status: StatusCode, template: &impl Template) -> Result<Response, PageError> {
    let body = template.render()?;
    Ok((status, [(header::CACHE_CONTROL, "no-store")], Html(body)).into_response())
}

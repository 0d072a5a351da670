//! Sign up, log in and log out pages. Mistakes re-render the form with an inline message
//! next to the field and the typed email kept (the password never is).

use super::session::{
    anonymous_csrf, current_viewer, safe_next, AnonymousForm, NoFields, SignedForm,
};
use super::views::{Field, Layout, LoginPage, SignupPage};
use super::{page, with_cookie, PageError};
use crate::app::AppState;
use crate::http::extract::{cleared_cookies, session_cookies, ClientIp};
use crate::platform::secrets::SessionToken;
use crate::platform::{validate, PlatformError};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

/// `/`: the projects for a signed-in visitor, the log-in form for anyone else.
pub async fn home(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Redirect, PageError> {
    Ok(match current_viewer(&state, &headers).await? {
        Some(_) => Redirect::to("/projects"),
        None => Redirect::to("/login"),
    })
}

fn email_field(value: &str) -> Field {
    Field::new("email", "Email", "email")
        .value(value)
        .attrs(r#"autocomplete="email" required"#)
}

fn password_field(new: bool) -> Field {
    let field = Field::new("password", "Password", "password");
    if new {
        field
            .hint(format!("At least {} characters.", validate::PASSWORD_MIN))
            .attrs(r#"autocomplete="new-password" required"#)
    } else {
        field.attrs(r#"autocomplete="current-password" required"#)
    }
}

/// A response that opens the session (both cookies) and goes to `to`.
fn signed_in(state: &AppState, token: &SessionToken, to: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    for cookie in session_cookies(
        token,
        state.config.session_ttl(),
        state.config.secure_cookies,
    ) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// `GET /login`.
pub async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Result<Response, PageError> {
    let next = query.next.filter(|next| safe_next(next));
    if current_viewer(&state, &headers).await?.is_some() {
        return Ok(Redirect::to(next.as_deref().unwrap_or("/projects")).into_response());
    }
    let (csrf, cookie) = anonymous_csrf(&headers, state.config.secure_cookies);
    let view = LoginPage {
        layout: Layout::anonymous(),
        csrf,
        next: next.unwrap_or_default(),
        email: email_field("").attrs(r#"autocomplete="email" required autofocus"#),
        password: password_field(false),
    };
    Ok(with_cookie(page(StatusCode::OK, &view)?, cookie))
}

#[derive(Deserialize)]
pub struct LoginIn {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

/// `POST /login`.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientIp(ip): ClientIp,
    AnonymousForm(form): AnonymousForm<LoginIn>,
) -> Result<Response, PageError> {
    let mut email = email_field(&form.email);
    let mut password = password_field(false);
    if form.email.trim().is_empty() {
        email = email.error("Enter your email.");
    }
    if form.password.is_empty() {
        password = password.error("Enter your password.");
    }
    let status = if email.error.is_some() || password.error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        match state.platform.login(&form.email, form.password, ip).await {
            Ok((_, token)) => {
                let to = Some(form.next)
                    .filter(|next| safe_next(next))
                    .unwrap_or_else(|| "/projects".to_owned());
                return Ok(signed_in(&state, &token, &to));
            }
            // One message for both fields, as the API does: which one was wrong is
            // exactly what an attacker would like to learn.
            Err(PlatformError::InvalidCredentials) => {
                password = password.error("Email or password is wrong.");
                StatusCode::UNAUTHORIZED
            }
            Err(PlatformError::TooManyAttempts { retry_after }) => {
                let minutes = retry_after.as_secs().div_ceil(60).max(1);
                password = password.error(format!(
                    "Too many attempts: try again in {minutes} minute(s)."
                ));
                StatusCode::TOO_MANY_REQUESTS
            }
            Err(other) => return Err(other.into()),
        }
    };
    let (csrf, cookie) = anonymous_csrf(&headers, state.config.secure_cookies);
    let view = LoginPage {
        layout: Layout::anonymous(),
        csrf,
        next: Some(form.next).filter(|n| safe_next(n)).unwrap_or_default(),
        email,
        password,
    };
    Ok(with_cookie(page(status, &view)?, cookie))
}

/// `GET /signup`.
pub async fn signup_form(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    if current_viewer(&state, &headers).await?.is_some() {
        return Ok(Redirect::to("/projects").into_response());
    }
    let (csrf, cookie) = anonymous_csrf(&headers, state.config.secure_cookies);
    let view = SignupPage {
        layout: Layout::anonymous(),
        csrf,
        email: email_field("").attrs(r#"autocomplete="email" required autofocus"#),
        password: password_field(true),
    };
    Ok(with_cookie(page(StatusCode::OK, &view)?, cookie))
}

#[derive(Deserialize)]
pub struct SignupIn {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

/// `POST /signup`.
pub async fn signup(
    State(state): State<AppState>,
    headers: HeaderMap,
    AnonymousForm(form): AnonymousForm<SignupIn>,
) -> Result<Response, PageError> {
    let mut email = email_field(&form.email);
    let mut password = password_field(true);
    // The platform's own rules, run field by field so every mistake shows at once;
    // `signup` below applies them again and stays the authority.
    if let Err(message) = validate::email(&form.email) {
        email = email.error(sentence(&message));
    }
    if let Err(message) = validate::password(&form.password) {
        password = password.error(sentence(&message));
    }
    if email.error.is_none() && password.error.is_none() {
        match state.platform.signup(&form.email, form.password).await {
            Ok((_, token)) => return Ok(signed_in(&state, &token, "/projects/new")),
            Err(PlatformError::EmailTaken) => {
                email = email.error("An account with this email already exists. Log in instead.");
            }
            Err(PlatformError::Invalid(message)) => {
                password = password.error(sentence(&message));
            }
            Err(other) => return Err(other.into()),
        }
    }
    let (csrf, cookie) = anonymous_csrf(&headers, state.config.secure_cookies);
    let view = SignupPage {
        layout: Layout::anonymous(),
        csrf,
        email,
        password,
    };
    Ok(with_cookie(
        page(StatusCode::UNPROCESSABLE_ENTITY, &view)?,
        cookie,
    ))
}

/// `POST /logout`: ends this session and clears both cookies.
pub async fn logout(
    State(state): State<AppState>,
    SignedForm { viewer, .. }: SignedForm<NoFields>,
) -> Result<Response, PageError> {
    match state.platform.logout(&viewer.user, &viewer.token).await {
        // Already gone (logged out in another tab): the outcome the user wants anyway.
        Ok(()) | Err(PlatformError::Unauthenticated) => {}
        Err(other) => return Err(other.into()),
    }
    let mut response = Redirect::to("/login").into_response();
    for cookie in cleared_cookies(state.config.secure_cookies) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// The platform's messages are lower-case API text ("email must be …"); on a page they
/// read better as sentences.
pub fn sentence(message: &str) -> String {
    let message = message.strip_prefix("settings.").unwrap_or(message);
    let mut chars = message.chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

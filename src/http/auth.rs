//! Accounts: `POST /api/v1/signup`, `POST /api/v1/login`, `POST /api/v1/logout`,
//! `GET /api/v1/me`.

use super::extract::{cleared_cookies, session_cookies, ApiJson, ClientIp, CurrentUser, NoBody};
use crate::app::AppState;
use crate::error::ApiError;
use crate::platform::secrets::SessionToken;
use crate::platform::User;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/signup", post(signup))
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/me", get(me))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsIn {
    email: String,
    password: String,
}

#[derive(Serialize)]
struct UserOut {
    id: String,
    email: String,
}

impl From<User> for UserOut {
    fn from(user: User) -> Self {
        Self {
            id: user.id.0,
            email: user.email,
        }
    }
}

#[derive(Serialize)]
struct SessionOut {
    user: UserOut,
    token: String,
}

#[derive(Serialize)]
struct MeOut {
    user: UserOut,
}

fn session_response(
    state: &AppState,
    status: StatusCode,
    user: User,
    token: SessionToken,
) -> Response {
    let mut headers = HeaderMap::new();
    for cookie in session_cookies(
        &token,
        state.config.session_ttl(),
        state.config.secure_cookies,
    ) {
        headers.append(header::SET_COOKIE, cookie);
    }
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    let body = SessionOut {
        user: user.into(),
        token: token.expose().to_owned(),
    };
    (status, headers, Json(body)).into_response()
}

async fn signup(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CredentialsIn>,
) -> Result<Response, ApiError> {
    let (user, token) = state.platform.signup(&body.email, body.password).await?;
    Ok(session_response(&state, StatusCode::CREATED, user, token))
}

async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<CredentialsIn>,
) -> Result<Response, ApiError> {
    let (user, token) = state.platform.login(&body.email, body.password, ip).await?;
    Ok(session_response(&state, StatusCode::OK, user, token))
}

async fn logout(
    State(state): State<AppState>,
    caller: CurrentUser,
    _: NoBody,
) -> Result<Response, ApiError> {
    state.platform.logout(&caller.user, &caller.token).await?;
    let mut headers = HeaderMap::new();
    for cookie in cleared_cookies(state.config.secure_cookies) {
        headers.append(header::SET_COOKIE, cookie);
    }
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

async fn me(caller: CurrentUser) -> Json<MeOut> {
    Json(MeOut {
        user: caller.user.into(),
    })
}

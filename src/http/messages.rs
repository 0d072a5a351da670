//! `POST /api/v1/messages`: publish to a project's room with its API key.

use super::extract::{ApiJson, ProjectKey};
use crate::app::AppState;
use crate::error::ApiError;
use crate::realtime::PublishError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/messages", post(publish))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishIn {
    message: String,
}

#[derive(Serialize)]
struct PublishOut {
    delivered_to: u64,
}

impl From<PublishError> for ApiError {
    fn from(error: PublishError) -> Self {
        match error {
            PublishError::MessageTooLarge { limit } => Self::MessageTooLarge { limit },
            PublishError::RateLimited { retry_after_ms } => Self::RateLimited { retry_after_ms },
        }
    }
}

async fn publish(
    State(state): State<AppState>,
    ProjectKey(access): ProjectKey,
    body: Result<ApiJson<PublishIn>, ApiError>,
) -> Result<(StatusCode, Json<PublishOut>), ApiError> {
    let ApiJson(body) = body.inspect_err(|_| state.realtime.count_malformed_publish(&access))?;
    let delivered_to = state.realtime.publish(&access, &body.message)?;
    Ok((StatusCode::ACCEPTED, Json(PublishOut { delivered_to })))
}

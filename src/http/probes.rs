//! Probes and metrics: `GET /healthz` (the process serves), `GET /readyz` (the database,
//! and Redis when clustered, answer), `GET /metrics` (Prometheus text).

use crate::app::AppState;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::time::Duration;

/// How long the database may take to answer a readiness check.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "readiness: database failed");
            return Err(ApiError::NotReady("database is not answering".into()));
        }
        Err(_) => return Err(ApiError::NotReady("database did not answer in time".into())),
    }
    if let Some(cluster) = &state.cluster {
        cluster.health().await.map_err(ApiError::NotReady)?;
    }
    Ok(Json(json!({ "status": "ready" })))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Upkeep drains histogram buckets; doing it at scrape time avoids a background task.
    state.metrics.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

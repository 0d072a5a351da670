//! Projects: `/api/v1/projects` CRUD, `regenerate-key` and `stats`, all scoped to the
//! signed-in user (another user's project answers 404).

use super::extract::{nullable, nullable_object, ApiJson, CurrentUser, NoBody, ProjectPath};
use crate::app::AppState;
use crate::error::ApiError;
use crate::platform::secrets::ApiKey;
use crate::platform::types::ProjectSettings;
use crate::platform::{Project, ProjectPatch, SettingsPatch};
use crate::realtime::ProjectStats;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/projects", get(list).post(create))
        .route(
            "/api/v1/projects/{id}",
            get(show).patch(update).delete(remove),
        )
        .route("/api/v1/projects/{id}/regenerate-key", post(regenerate_key))
        .route("/api/v1/projects/{id}/stats", get(stats))
}

#[derive(Serialize)]
struct ProjectOut {
    id: String,
    name: String,
    key_prefix: String,
    /// RFC 3339, UTC, millisecond precision.
    created_at: String,
    settings: ProjectSettings,
}

impl From<Project> for ProjectOut {
    fn from(project: Project) -> Self {
        Self {
            id: project.id.0,
            name: project.name,
            key_prefix: project.key_prefix,
            created_at: project
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            settings: project.settings,
        }
    }
}

#[derive(Serialize)]
struct ProjectEnvelope {
    project: ProjectOut,
}

#[derive(Serialize)]
struct ProjectWithKeyOut {
    project: ProjectOut,
    api_key: String,
}

impl ProjectWithKeyOut {
    fn new(project: Project, key: ApiKey) -> Json<Self> {
        Json(Self {
            project: project.into(),
            api_key: key.expose().to_owned(),
        })
    }
}

#[derive(Serialize)]
struct ProjectListOut {
    projects: Vec<ProjectOut>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateProjectIn {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateProjectIn {
    #[serde(default, deserialize_with = "nullable")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable_object")]
    settings: Option<Option<SettingsIn>>,
}

/// Each field: absent = unchanged, `null` = server default, value = override.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsIn {
    #[serde(default, deserialize_with = "nullable")]
    max_message_bytes: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    messages_per_second: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    project_messages_per_second: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    max_connections: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    allowed_origins: Option<Option<Vec<String>>>,
}

impl TryFrom<UpdateProjectIn> for ProjectPatch {
    type Error = ApiError;

    fn try_from(body: UpdateProjectIn) -> Result<Self, ApiError> {
        let name = match body.name {
            Some(None) => return Err(ApiError::InvalidRequest("name cannot be null".into())),
            other => other.flatten(),
        };
        let settings = match body.settings {
            None => SettingsPatch::default(),
            Some(None) => SettingsPatch::reset_all(),
            Some(Some(s)) => SettingsPatch {
                max_message_bytes: s.max_message_bytes.into(),
                messages_per_second: s.messages_per_second.into(),
                project_messages_per_second: s.project_messages_per_second.into(),
                max_connections: s.max_connections.into(),
                allowed_origins: s.allowed_origins.into(),
            },
        };
        Ok(Self { name, settings })
    }
}

async fn list(
    State(state): State<AppState>,
    caller: CurrentUser,
) -> Result<Json<ProjectListOut>, ApiError> {
    let projects = state.platform.list_projects(&caller.user).await?;
    Ok(Json(ProjectListOut {
        projects: projects.into_iter().map(ProjectOut::from).collect(),
    }))
}

async fn create(
    State(state): State<AppState>,
    caller: CurrentUser,
    ApiJson(body): ApiJson<CreateProjectIn>,
) -> Result<(StatusCode, Json<ProjectWithKeyOut>), ApiError> {
    let (project, key) = state
        .platform
        .create_project(&caller.user, &body.name)
        .await?;
    Ok((StatusCode::CREATED, ProjectWithKeyOut::new(project, key)))
}

async fn show(
    State(state): State<AppState>,
    caller: CurrentUser,
    ProjectPath(id): ProjectPath,
) -> Result<Json<ProjectEnvelope>, ApiError> {
    let project = state.platform.get_project(&caller.user, &id).await?;
    Ok(Json(ProjectEnvelope {
        project: project.into(),
    }))
}

async fn update(
    State(state): State<AppState>,
    caller: CurrentUser,
    ProjectPath(id): ProjectPath,
    ApiJson(body): ApiJson<UpdateProjectIn>,
) -> Result<Json<ProjectEnvelope>, ApiError> {
    let patch = ProjectPatch::try_from(body)?;
    let project = state
        .platform
        .update_project(&caller.user, &id, patch)
        .await?;
    Ok(Json(ProjectEnvelope {
        project: project.into(),
    }))
}

async fn remove(
    State(state): State<AppState>,
    caller: CurrentUser,
    ProjectPath(id): ProjectPath,
    _: NoBody,
) -> Result<StatusCode, ApiError> {
    state.platform.delete_project(&caller.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn regenerate_key(
    State(state): State<AppState>,
    caller: CurrentUser,
    ProjectPath(id): ProjectPath,
    _: NoBody,
) -> Result<Json<ProjectWithKeyOut>, ApiError> {
    let (project, key) = state.platform.regenerate_key(&caller.user, &id).await?;
    Ok(ProjectWithKeyOut::new(project, key))
}

async fn stats(
    State(state): State<AppState>,
    caller: CurrentUser,
    ProjectPath(id): ProjectPath,
) -> Result<Json<ProjectStats>, ApiError> {
    Ok(Json(state.platform.project_stats(&caller.user, &id).await?))
}

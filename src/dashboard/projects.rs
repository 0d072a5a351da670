//! Project pages: the list, creation (the key shown once), the project page with its
//! rename / settings / send forms, and the confirmation steps of regenerating the key and
//! deleting the project. Every change goes through the same [`Platform`] call as the REST
//! API, so its rules and side effects (revoking keys, applying settings live) are shared.
//!
//! [`Platform`]: crate::platform::Platform

use super::auth::sentence;
use super::session::{NoFields, SignedForm, Viewer};
use super::views::{
    client_snippet, ConfirmPage, Field, KeyPage, Layout, NewProjectPage, ProjectPage, ProjectRow,
    ProjectsPage, SettingsForm,
};
use super::{page, with_cookie, PageError};
use crate::app::AppState;
use crate::http::extract::cookie;
use crate::platform::secrets::ApiKey;
use crate::platform::types::{Limits, ProjectId};
use crate::platform::{
    merge_settings, validate, Patch, PlatformError, Project, ProjectPatch, SettingsPatch,
    SETTINGS_PROBLEM_SEPARATOR,
};
use crate::realtime::{ProjectAccess, PublishError};
use crate::store::SettingsOverrides;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::num::IntErrorKind;

fn layout(viewer: &Viewer) -> Layout {
    Layout {
        email: Some(viewer.user.email.clone()),
        csrf: viewer.csrf(),
        account_links: false,
    }
}

fn display_time(project: &Project) -> (String, String) {
    (
        project.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        project
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// What the last action did, after its redirect. Read as text so that a hand-edited
/// query string is ignored rather than refused.
#[derive(Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
    delivered: Option<String>,
}

impl DoneQuery {
    /// The confirmation to show after a redirect; only known words are shown, so the
    /// query string cannot put text of its own on the page.
    fn notice(&self) -> Option<String> {
        Some(match self.done.as_deref()? {
            "deleted" => "Project deleted.".to_owned(),
            "renamed" => "Project renamed.".to_owned(),
            "saved" => "Settings saved. They apply to live clients at once.".to_owned(),
            "key-shown" => "The API key is shown only once, when it is made. If it was \
                            lost, regenerate it: the old one then stops working."
                .to_owned(),
            "sent" => format!(
                "Message sent to {} client(s).",
                self.delivered
                    .as_deref()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or_default()
            ),
            _ => return None,
        })
    }
}

/// `GET /projects`.
pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<DoneQuery>,
) -> Result<Response, PageError> {
    let projects = state.platform.list_projects(&viewer.user).await?;
    let rows = projects
        .into_iter()
        .map(|project| {
            let (created, created_iso) = display_time(&project);
            ProjectRow {
                connections: state.realtime.connections(&project.id),
                id: project.id,
                name: project.name,
                key_prefix: project.key_prefix,
                created,
                created_iso,
            }
        })
        .collect();
    let view = ProjectsPage {
        layout: layout(&viewer),
        rows,
        notice: query.notice(),
    };
    page(StatusCode::OK, &view)
}

/// The name box's attributes; `maxlength` only stops runaway pastes (the browser counts
/// UTF-16 units, so a tighter bound would cut 101 emoji to a valid 100 without a word:
/// the server's "1 to 100 characters" error is what a person should see).
macro_rules! name_attrs {
    () => {
        r#"required maxlength="1000" autocomplete="off""#
    };
}

fn name_field(value: &str) -> Field {
    Field::new("name", "Name", "text")
        .value(value)
        .hint(format!("1 to {} characters.", validate::NAME_MAX))
        .attrs(name_attrs!())
}

/// `GET /projects/new`.
pub async fn new_form(viewer: Viewer) -> Result<Response, PageError> {
    let view = NewProjectPage {
        layout: layout(&viewer),
        name: name_field("").attrs(concat!(name_attrs!(), " autofocus")),
    };
    page(StatusCode::OK, &view)
}

#[derive(Deserialize)]
pub struct NameIn {
    #[serde(default)]
    name: String,
}

/// `POST /projects`: creates the project; its key is shown once, on the page the answer
/// redirects to.
pub async fn create(
    State(state): State<AppState>,
    SignedForm { viewer, form }: SignedForm<NameIn>,
) -> Result<Response, PageError> {
    match state
        .platform
        .create_project(&viewer.user, &form.name)
        .await
    {
        Ok((project, key)) => Ok(show_key_once(&state, &project, &key, false)),
        Err(PlatformError::Invalid(message)) => {
            let view = NewProjectPage {
                layout: layout(&viewer),
                name: name_field(&form.name).error(sentence(&message)),
            };
            page(StatusCode::UNPROCESSABLE_ENTITY, &view)
        }
        Err(other) => Err(other.into()),
    }
}

/// This server's URL as the browser reached it, for the client snippet. The `Host`
/// header is used only when it looks like a host[:port]; the bind address otherwise.
fn server_url(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| {
            !host.is_empty()
                && host.len() <= 255
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .map_or_else(|| state.config.bind.to_string(), str::to_owned);
    let scheme = if state.config.secure_cookies {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

/// The cookie that carries a new key from the POST that made it to the one page that
/// shows it (post/redirect/get). So reloading that page, or coming back to it, neither
/// repeats the action nor shows the key again: the page clears the cookie as it reads
/// it. A cookie rather than server memory, because behind a load balancer the redirect
/// may land on another node; scoped to that page's path, `HttpOnly`, `SameSite=Strict`,
/// and gone after a few minutes even if the page is never opened.
const NEW_KEY_COOKIE: &str = "roomcast_new_key";
/// How long an unread [`NEW_KEY_COOKIE`] lives, in seconds.
const NEW_KEY_COOKIE_SECONDS: u32 = 300;

/// The page that shows a project's new key.
fn key_path(project: &ProjectId) -> String {
    format!("/projects/{project}/key")
}

/// `Set-Cookie` of the new-key cookie: `value` for `max_age` seconds (0 clears it).
fn new_key_cookie(
    state: &AppState,
    project: &ProjectId,
    value: &str,
    max_age: u32,
) -> Option<header::HeaderValue> {
    let secure = if state.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    // Ids and keys are base64url or UUIDs: always a valid header value.
    header::HeaderValue::try_from(format!(
        "{NEW_KEY_COOKIE}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}",
        key_path(project)
    ))
    .ok()
}

/// Answers a POST that made a new key: a redirect to the page that shows it, carrying it
/// there in [`NEW_KEY_COOKIE`] (`c.<key>` after a creation, `r.<key>` after a
/// regeneration).
fn show_key_once(state: &AppState, project: &Project, key: &ApiKey, regenerated: bool) -> Response {
    let kind = if regenerated { 'r' } else { 'c' };
    let value = format!("{kind}.{}", key.expose());
    with_cookie(
        Redirect::to(&key_path(&project.id)).into_response(),
        new_key_cookie(state, &project.id, &value, NEW_KEY_COOKIE_SECONDS),
    )
}

/// `GET /projects/{id}/key`: the key the last POST made, once; afterwards (a reload, the
/// Back button, another node's stale cookie) the project page, which says why.
pub async fn show_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let project = state.platform.get_project(&viewer.user, &id).await?;
    let carried = cookie(&headers, NEW_KEY_COOKIE).and_then(|value| value.split_once('.'));
    // Shown only while it is this project's live key: not a key a later regeneration
    // replaced, nor text someone else put in the cookie.
    let live = match carried {
        Some((kind, key)) => match state.realtime.resolve_key(key).await {
            Ok(Some(access)) if access.project_id == project.id => Some((kind == "r", key)),
            _ => None,
        },
        None => None,
    };
    let response = match live {
        Some((regenerated, key)) => {
            let view = KeyPage {
                layout: layout(&viewer),
                project_id: project.id.clone(),
                project_name: project.name.clone(),
                api_key: key.to_owned(),
                snippet: client_snippet(&server_url(&state, &headers), key),
                regenerated,
            };
            page(StatusCode::OK, &view)?
        }
        None => back_to(project.id.as_str(), "key-shown"),
    };
    let clear = new_key_cookie(&state, &project.id, "", 0);
    Ok(with_cookie(response, clear))
}

/// The console's message box. The placeholder is the one text on the page that finds it
/// alone: "message" is also in the names of three limit boxes.
fn console_message_field() -> Field {
    Field::new("message", "Message", "text")
        .attrs(r#"autocomplete="off" spellcheck="false" placeholder="Type a message for the room""#)
}

/// A limit field: blank means "the server default", so only a project's own lower value
/// is shown.
fn limit_field(
    id: &'static str,
    label: &'static str,
    value: u32,
    ceiling: u32,
    unit: &str,
) -> Field {
    let shown = if value == ceiling {
        String::new()
    } else {
        value.to_string()
    };
    Field::new(id, label, "text")
        .value(shown)
        .hint(format!(
            "1 to {ceiling}{unit}. Leave blank for the server default ({ceiling})."
        ))
        .attrs(r#"inputmode="numeric" autocomplete="off""#)
}

fn settings_form(project: &Project, limits: &Limits) -> SettingsForm {
    let s = &project.settings;
    SettingsForm {
        max_message_bytes: limit_field(
            "max_message_bytes",
            "Max message size (bytes)",
            s.max_message_bytes,
            limits.max_message_bytes,
            " bytes",
        ),
        messages_per_second: limit_field(
            "messages_per_second",
            "Messages per second per connection",
            s.messages_per_second,
            limits.messages_per_second,
            "",
        ),
        project_messages_per_second: limit_field(
            "project_messages_per_second",
            "Messages per second for the whole project",
            s.project_messages_per_second,
            limits.project_messages_per_second,
            "",
        ),
        max_connections: limit_field(
            "max_connections",
            "Max connections",
            s.max_connections,
            limits.max_connections,
            "",
        ),
        allowed_origins: Field::new("allowed_origins", "Allowed origins", "textarea")
            .value(s.allowed_origins.join("\n"))
            .hint(
                "One per line, like https://app.example.com. Leave empty to allow any \
                 origin. Clients that send no Origin (servers, apps) are always allowed.",
            )
            .attrs(r#"autocomplete="off" spellcheck="false""#),
    }
}

async fn project_page(state: &AppState, viewer: &Viewer, project: &Project) -> ProjectPage {
    ProjectPage {
        layout: layout(viewer),
        id: project.id.clone(),
        name: project.name.clone(),
        key_prefix: project.key_prefix.clone(),
        created: display_time(project).0,
        stats: state.realtime.stats(&project.id).await,
        notice: None,
        message: console_message_field(),
        rename: name_field(&project.name),
        settings: settings_form(project, state.platform.limits()),
    }
}

/// `GET /projects/{id}`.
pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(query): Query<DoneQuery>,
) -> Result<Response, PageError> {
    let project = state.platform.get_project(&viewer.user, &id).await?;
    let mut view = project_page(&state, &viewer, &project).await;
    view.notice = query.notice();
    page(StatusCode::OK, &view)
}

fn back_to(project: &str, done: &str) -> Response {
    Redirect::to(&format!("/projects/{project}?done={done}")).into_response()
}

/// `POST /projects/{id}/rename`.
pub async fn rename(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm { viewer, form }: SignedForm<NameIn>,
) -> Result<Response, PageError> {
    let patch = ProjectPatch {
        name: Some(form.name.clone()),
        settings: SettingsPatch::default(),
    };
    match state
        .platform
        .update_project(&viewer.user, &id, patch)
        .await
    {
        Ok(project) => Ok(back_to(project.id.as_str(), "renamed")),
        Err(PlatformError::Invalid(message)) => {
            let project = state.platform.get_project(&viewer.user, &id).await?;
            let mut view = project_page(&state, &viewer, &project).await;
            view.rename = name_field(&form.name).error(sentence(&message));
            page(StatusCode::UNPROCESSABLE_ENTITY, &view)
        }
        Err(other) => Err(other.into()),
    }
}

#[derive(Deserialize)]
pub struct SettingsIn {
    #[serde(default)]
    max_message_bytes: String,
    #[serde(default)]
    messages_per_second: String,
    #[serde(default)]
    project_messages_per_second: String,
    #[serde(default)]
    max_connections: String,
    #[serde(default)]
    allowed_origins: String,
}

/// Reads a limit box: blank resets to the server default; anything else must be a whole
/// number (whether it is in range is the platform's rule, checked by `update_project`).
/// A whole number too long for `i64` is still a number: it goes on as the extreme of its
/// sign, so the user reads the range, not "enter a whole number".
fn parse_limit(raw: &str) -> Result<Patch<i64>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(Patch::Reset);
    }
    match raw.replace(['_', ','], "").parse::<i64>() {
        Ok(value) => Ok(Patch::Set(value)),
        Err(error) => match error.kind() {
            IntErrorKind::PosOverflow => Ok(Patch::Set(i64::MAX)),
            IntErrorKind::NegOverflow => Ok(Patch::Set(i64::MIN)),
            _ => Err("Enter a whole number, or leave it blank for the server default.".into()),
        },
    }
}

/// Puts each problem the platform named ("settings.<field> …", see
/// [`merge_settings`]) under its box, worded for that box (the field's name is its
/// label already). A box keeps the error of its own parsing, if it had one.
fn mark_setting_problems(fields: &mut SettingsForm, messages: &str) {
    for message in messages.split(SETTINGS_PROBLEM_SEPARATOR) {
        let Some(named) = message.strip_prefix("settings.") else {
            continue;
        };
        let boxes = [
            &mut fields.max_message_bytes,
            &mut fields.messages_per_second,
            &mut fields.project_messages_per_second,
            &mut fields.max_connections,
            &mut fields.allowed_origins,
        ];
        for field in boxes {
            let Some(detail) = named.strip_prefix(field.id) else {
                continue;
            };
            if field.error.is_none() {
                field.error = Some(sentence(detail.trim_start_matches([':', ' '])));
            }
            break;
        }
    }
}

/// `POST /projects/{id}/settings`.
pub async fn settings(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm { viewer, form }: SignedForm<SettingsIn>,
) -> Result<Response, PageError> {
    let project = state.platform.get_project(&viewer.user, &id).await?;
    let mut fields = settings_form(&project, state.platform.limits());
    // Whatever happens below, the form shows what was typed.
    fields.max_message_bytes.value = form.max_message_bytes.clone();
    fields.messages_per_second.value = form.messages_per_second.clone();
    fields.project_messages_per_second.value = form.project_messages_per_second.clone();
    fields.max_connections.value = form.max_connections.clone();
    fields.allowed_origins.value = form.allowed_origins.clone();

    let mut parsed = SettingsPatch::default();
    let mut invalid = false;
    for (raw, field, target) in [
        (
            &form.max_message_bytes,
            &mut fields.max_message_bytes,
            &mut parsed.max_message_bytes,
        ),
        (
            &form.messages_per_second,
            &mut fields.messages_per_second,
            &mut parsed.messages_per_second,
        ),
        (
            &form.project_messages_per_second,
            &mut fields.project_messages_per_second,
            &mut parsed.project_messages_per_second,
        ),
        (
            &form.max_connections,
            &mut fields.max_connections,
            &mut parsed.max_connections,
        ),
    ] {
        match parse_limit(raw) {
            Ok(patch) => *target = patch,
            Err(message) => {
                field.error = Some(message);
                invalid = true;
            }
        }
    }
    let origins: Vec<String> = form
        .allowed_origins
        .split(['\n', ','])
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    parsed.allowed_origins = if origins.is_empty() {
        Patch::Reset
    } else {
        Patch::Set(origins)
    };

    if invalid {
        // Check the boxes that did parse too, so every mistake shows at once.
        let scratch = &mut SettingsOverrides::default();
        if let Err(PlatformError::Invalid(messages)) =
            merge_settings(scratch, parsed, state.platform.limits())
        {
            mark_setting_problems(&mut fields, &messages);
        }
    } else {
        let patch = ProjectPatch {
            name: None,
            settings: parsed,
        };
        match state
            .platform
            .update_project(&viewer.user, &id, patch)
            .await
        {
            Ok(project) => return Ok(back_to(project.id.as_str(), "saved")),
            Err(PlatformError::Invalid(messages)) => {
                mark_setting_problems(&mut fields, &messages);
            }
            Err(other) => return Err(other.into()),
        }
    }
    let mut view = project_page(&state, &viewer, &project).await;
    view.settings = fields;
    page(StatusCode::UNPROCESSABLE_ENTITY, &view)
}

/// `GET /projects/{id}/regenerate`: the confirmation step.
pub async fn regenerate_confirm(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let project = state.platform.get_project(&viewer.user, &id).await?;
    let view = ConfirmPage {
        layout: layout(&viewer),
        title: format!("Regenerate the key of {}?", project.name),
        text: "The current key stops working at once and every live client connected with \
               it will be disconnected. Clients need the new key to reconnect.",
        action: format!("/projects/{}/regenerate", project.id),
        button: "Regenerate key",
        cancel: format!("/projects/{}", project.id),
    };
    page(StatusCode::OK, &view)
}

/// `POST /projects/{id}/regenerate`: issues the new key; it is shown once, on the page
/// the answer redirects to.
pub async fn regenerate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm { viewer, .. }: SignedForm<NoFields>,
) -> Result<Response, PageError> {
    let (project, key) = state.platform.regenerate_key(&viewer.user, &id).await?;
    Ok(show_key_once(&state, &project, &key, true))
}

/// `GET /projects/{id}/delete`: the confirmation step.
pub async fn delete_confirm(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let project = state.platform.get_project(&viewer.user, &id).await?;
    let view = ConfirmPage {
        layout: layout(&viewer),
        title: format!("Delete {}?", project.name),
        text: "The project and its key are deleted and every live client is disconnected. \
               This cannot be undone.",
        action: format!("/projects/{}/delete", project.id),
        button: "Delete",
        cancel: format!("/projects/{}", project.id),
    };
    page(StatusCode::OK, &view)
}

/// `POST /projects/{id}/delete`.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm { viewer, .. }: SignedForm<NoFields>,
) -> Result<Response, PageError> {
    state.platform.delete_project(&viewer.user, &id).await?;
    Ok(Redirect::to("/projects?done=deleted").into_response())
}

#[derive(Deserialize)]
pub struct SendIn {
    #[serde(default)]
    message: String,
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"))
}

/// `POST /projects/{id}/send`: publishes into the project's room as the owner (the
/// session, not the key, authorizes it). The console's script asks for JSON; a plain
/// form post gets the page back.
pub async fn send(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    SignedForm { viewer, form }: SignedForm<SendIn>,
) -> Result<Response, PageError> {
    let project = state.platform.get_project(&viewer.user, &id).await?;
    let outcome = if form.message.is_empty() {
        Err("Enter a message to send.".to_owned())
    } else {
        let access = ProjectAccess {
            project_id: project.id.clone(),
            settings: project.settings.clone(),
        };
        state
            .realtime
            .publish(&access, &form.message)
            .map_err(|error| match error {
                PublishError::MessageTooLarge { limit } => {
                    format!("The message is larger than this project's limit of {limit} bytes.")
                }
                PublishError::RateLimited { retry_after_ms } => format!(
                    "The project's message rate is exhausted; try again in {retry_after_ms} ms."
                ),
            })
    };
    match (outcome, wants_json(&headers)) {
        (Ok(delivered), true) => Ok(Json(json!({ "delivered_to": delivered })).into_response()),
        (Ok(delivered), false) => Ok(Redirect::to(&format!(
            "/projects/{}?done=sent&delivered={delivered}#console-heading",
            project.id
        ))
        .into_response()),
        (Err(message), true) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": { "message": message } })),
        )
            .into_response()),
        (Err(message), false) => {
            let mut view = project_page(&state, &viewer, &project).await;
            view.message = console_message_field().value(form.message).error(message);
            page(StatusCode::UNPROCESSABLE_ENTITY, &view)
        }
    }
}

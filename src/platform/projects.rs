//! Projects: creation with a fresh API key, settings within the server limits, key
//! rotation and deletion (both revoke the old key on the realtime side at once).

use super::secrets::ApiKey;
use super::types::{Limits, ProjectId, ProjectSettings};
use super::{now_ms, validate, Platform, PlatformError, User};
use crate::realtime::ProjectStats;
use crate::store::{NewProject, ProjectRecord, SettingsOverrides};
use chrono::{DateTime, Utc};

/// A project as its owner sees it: effective settings, key shown only by prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Project {
    /// The project's id.
    pub id: ProjectId,
    /// Display name.
    pub name: String,
    /// Non-secret start of the current API key.
    pub key_prefix: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Settings in force (overrides, or server defaults).
    pub settings: ProjectSettings,
}

/// One field of a partial update.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Patch<T> {
    /// Not mentioned: unchanged.
    #[default]
    Keep,
    /// `null`: back to the server default.
    Reset,
    /// A new value.
    Set(T),
}

impl<T> From<Option<Option<T>>> for Patch<T> {
    /// Maps serde's "absent / null / value" reading of a field.
    fn from(field: Option<Option<T>>) -> Self {
        match field {
            None => Self::Keep,
            Some(None) => Self::Reset,
            Some(Some(value)) => Self::Set(value),
        }
    }
}

/// Changes to a project's settings; limits are checked against the server's.
#[derive(Clone, Debug, Default)]
pub struct SettingsPatch {
    /// New `max_message_bytes`.
    pub max_message_bytes: Patch<i64>,
    /// New `messages_per_second`.
    pub messages_per_second: Patch<i64>,
    /// New `project_messages_per_second`.
    pub project_messages_per_second: Patch<i64>,
    /// New `max_connections`.
    pub max_connections: Patch<i64>,
    /// New `allowed_origins`.
    pub allowed_origins: Patch<Vec<String>>,
}

impl SettingsPatch {
    /// Every setting back to the server's default (`"settings": null`, as in a JSON
    /// merge patch).
    pub fn reset_all() -> Self {
        Self {
            max_message_bytes: Patch::Reset,
            messages_per_second: Patch::Reset,
            project_messages_per_second: Patch::Reset,
            max_connections: Patch::Reset,
            allowed_origins: Patch::Reset,
        }
    }
}

/// Changes to a project.
#[derive(Clone, Debug, Default)]
pub struct ProjectPatch {
    /// New name, if any.
    pub name: Option<String>,
    /// Settings to merge.
    pub settings: SettingsPatch,
}

/// Parses a project id from a URL; anything that is not a UUID cannot exist (404).
fn parse_id(raw: &str) -> Result<ProjectId, PlatformError> {
    uuid::Uuid::parse_str(raw)
        .map(|id| ProjectId(id.hyphenated().to_string()))
        .map_err(|_| PlatformError::NotFound)
}

fn merge_limit(
    target: &mut Option<u32>,
    patch: Patch<i64>,
    field: &str,
    ceiling: u32,
) -> Result<(), PlatformError> {
    match patch {
        Patch::Keep => {}
        Patch::Reset => *target = None,
        Patch::Set(value) => {
            let valid = u32::try_from(value)
                .ok()
                .filter(|v| (1..=ceiling).contains(v));
            let Some(value) = valid else {
                return Err(PlatformError::Invalid(format!(
                    "settings.{field} must be between 1 and {ceiling} (the server limit)"
                )));
            };
            *target = Some(value);
        }
    }
    Ok(())
}

/// Joins the messages of several refused settings in one `INVALID_REQUEST` message.
pub const SETTINGS_PROBLEM_SEPARATOR: &str = "; ";

fn normalize_origins(origins: &[String]) -> Result<Vec<String>, String> {
    if origins.len() > validate::ORIGINS_MAX {
        return Err(format!(
            "settings.allowed_origins may list at most {} origins",
            validate::ORIGINS_MAX
        ));
    }
    let mut normalized = Vec::with_capacity(origins.len());
    let mut refused = Vec::new();
    for raw in origins {
        match validate::origin(raw) {
            Ok(origin) if !normalized.contains(&origin) => normalized.push(origin),
            Ok(_) => {}
            Err(reason) => refused.push((raw, reason)),
        }
    }
    // Every bad entry at once, so a list pasted with several mistakes is fixed in one go.
    match refused.as_slice() {
        [] => Ok(normalized),
        [(_, reason)] => Err(format!("settings.allowed_origins: {reason}")),
        many => {
            let quoted: Vec<String> = many.iter().map(|(raw, _)| format!("{raw:?}")).collect();
            Err(format!(
                "settings.allowed_origins: {} are not origins like {}",
                quoted.join(", "),
                validate::ORIGIN_EXAMPLES
            ))
        }
    }
}

/// Merges `s` into a project's `own` overrides, checking each setting against the
/// server's `limits`. Every refused setting is reported, not just the first (joined by
/// [`SETTINGS_PROBLEM_SEPARATOR`], each starting `settings.<field>`), so a form can mark
/// each; `own` is then partly merged and must not be saved.
pub fn merge_settings(
    own: &mut SettingsOverrides,
    s: SettingsPatch,
    limits: &Limits,
) -> Result<(), PlatformError> {
    let mut problems = Vec::new();
    for (target, patch, field, ceiling) in [
        (
            &mut own.max_message_bytes,
            s.max_message_bytes,
            "max_message_bytes",
            limits.max_message_bytes,
        ),
        (
            &mut own.messages_per_second,
            s.messages_per_second,
            "messages_per_second",
            limits.messages_per_second,
        ),
        (
            &mut own.project_messages_per_second,
            s.project_messages_per_second,
            "project_messages_per_second",
            limits.project_messages_per_second,
        ),
        (
            &mut own.max_connections,
            s.max_connections,
            "max_connections",
            limits.max_connections,
        ),
    ] {
        if let Err(PlatformError::Invalid(problem)) = merge_limit(target, patch, field, ceiling) {
            problems.push(problem);
        }
    }
    match s.allowed_origins {
        Patch::Keep => {}
        Patch::Reset => own.allowed_origins = None,
        Patch::Set(origins) => match normalize_origins(&origins) {
            Ok(normalized) => own.allowed_origins = Some(normalized),
            Err(problem) => problems.push(problem),
        },
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PlatformError::Invalid(
            problems.join(SETTINGS_PROBLEM_SEPARATOR),
        ))
    }
}

impl Platform {
    fn to_project(&self, record: ProjectRecord) -> Project {
        Project {
            settings: record.overrides.effective(self.limits()),
            created_at: DateTime::from_timestamp_millis(record.created_at_ms).unwrap_or_default(),
            id: record.id,
            name: record.name,
            key_prefix: record.key_prefix,
        }
    }

    async fn owned(&self, user: &User, id: &str) -> Result<ProjectRecord, PlatformError> {
        let id = parse_id(id)?;
        self.inner
            .store
            .get_project(&user.id, &id)
            .await?
            .ok_or(PlatformError::NotFound)
    }

    /// Creates a project and its first API key (returned once, never stored).
    pub async fn create_project(
        &self,
        user: &User,
        name: &str,
    ) -> Result<(Project, ApiKey), PlatformError> {
        let name = validate::project_name(name).map_err(PlatformError::Invalid)?;
        let id = ProjectId(uuid::Uuid::new_v4().hyphenated().to_string());
        let key = ApiKey::generate();
        let created_at_ms = now_ms();
        let new = NewProject {
            id: &id,
            name: &name,
            key_hash: &key.hash(),
            key_prefix: key.display_prefix(),
            created_at_ms,
        };
        self.inner.store.insert_project(&user.id, &new).await?;
        tracing::info!(user = %user.id, project = %id, "project created");
        let record = ProjectRecord {
            id,
            owner: user.id.clone(),
            name,
            key_prefix: key.display_prefix().to_owned(),
            overrides: SettingsOverrides::default(),
            created_at_ms,
        };
        Ok((self.to_project(record), key))
    }

    /// The user's projects, oldest first.
    pub async fn list_projects(&self, user: &User) -> Result<Vec<Project>, PlatformError> {
        let records = self.inner.store.list_projects(&user.id).await?;
        Ok(records.into_iter().map(|r| self.to_project(r)).collect())
    }

    /// One of the user's projects.
    pub async fn get_project(&self, user: &User, id: &str) -> Result<Project, PlatformError> {
        Ok(self.to_project(self.owned(user, id).await?))
    }

    /// Renames a project and/or merges settings; new settings apply to live sockets at once.
    pub async fn update_project(
        &self,
        user: &User,
        id: &str,
        patch: ProjectPatch,
    ) -> Result<Project, PlatformError> {
        let mut record = self.owned(user, id).await?;
        if let Some(name) = patch.name {
            record.name = validate::project_name(&name).map_err(PlatformError::Invalid)?;
        }
        merge_settings(&mut record.overrides, patch.settings, self.limits())?;
        let updated = self
            .inner
            .store
            .update_project(&user.id, &record.id, &record.name, &record.overrides)
            .await?;
        if !updated {
            // Deleted between our read and write.
            return Err(PlatformError::NotFound);
        }
        let project = self.to_project(record);
        self.inner
            .realtime
            .update_settings(&project.id, &project.settings);
        tracing::info!(user = %user.id, project = %project.id, "project updated");
        Ok(project)
    }

    /// Issues a new API key; the old one stops working at once and its sockets are
    /// disconnected.
    pub async fn regenerate_key(
        &self,
        user: &User,
        id: &str,
    ) -> Result<(Project, ApiKey), PlatformError> {
        let mut record = self.owned(user, id).await?;
        let key = ApiKey::generate();
        let replaced = self
            .inner
            .store
            .replace_project_key(&user.id, &record.id, &key.hash(), key.display_prefix())
            .await?;
        if !replaced {
            return Err(PlatformError::NotFound);
        }
        self.inner
            .realtime
            .revoke_project(&record.id, Some(key.hash()));
        tracing::info!(user = %user.id, project = %record.id, "API key regenerated");
        record.key_prefix = key.display_prefix().to_owned();
        Ok((self.to_project(record), key))
    }

    /// Deletes a project; its key dies and its sockets are disconnected.
    pub async fn delete_project(&self, user: &User, id: &str) -> Result<(), PlatformError> {
        let id = parse_id(id)?;
        if !self.inner.store.delete_project(&user.id, &id).await? {
            return Err(PlatformError::NotFound);
        }
        self.inner.realtime.revoke_project(&id, None);
        tracing::info!(user = %user.id, project = %id, "project deleted");
        Ok(())
    }

    /// The project's live counters.
    pub async fn project_stats(
        &self,
        user: &User,
        id: &str,
    ) -> Result<ProjectStats, PlatformError> {
        let record = self.owned(user, id).await?;
        Ok(self.inner.realtime.stats(&record.id).await)
    }
}

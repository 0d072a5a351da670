//! Projects: name, API key (hash and display prefix) and per-project setting overrides.

use super::{on_pool, to_u32, Store, StoreError, UserId};
use crate::platform::types::{Limits, ProjectId, ProjectSettings};

/// A project's own settings; `None` means "the server default".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettingsOverrides {
    /// Override of `max_message_bytes`.
    pub max_message_bytes: Option<u32>,
    /// Override of `messages_per_second`.
    pub messages_per_second: Option<u32>,
    /// Override of `project_messages_per_second`.
    pub project_messages_per_second: Option<u32>,
    /// Override of `max_connections`.
    pub max_connections: Option<u32>,
    /// Allowed browser origins; `None` (or empty) means any.
    pub allowed_origins: Option<Vec<String>>,
}

impl SettingsOverrides {
    /// The settings in force: each override, capped by the server limit (an operator who
    /// lowers a limit after a project raised its own still gets the lower ceiling).
    pub fn effective(&self, limits: &Limits) -> ProjectSettings {
        let pick = |own: Option<u32>, server: u32| own.map_or(server, |own| own.min(server));
        ProjectSettings {
            max_message_bytes: pick(self.max_message_bytes, limits.max_message_bytes),
            messages_per_second: pick(self.messages_per_second, limits.messages_per_second),
            project_messages_per_second: pick(
                self.project_messages_per_second,
                limits.project_messages_per_second,
            ),
            max_connections: pick(self.max_connections, limits.max_connections),
            allowed_origins: self.allowed_origins.clone().unwrap_or_default(),
        }
    }
}

/// A project to insert.
#[derive(Debug)]
pub struct NewProject<'a> {
    /// Fresh id.
    pub id: &'a ProjectId,
    /// Validated name.
    pub name: &'a str,
    /// SHA-256 of the API key.
    pub key_hash: &'a [u8; 32],
    /// The key's non-secret display prefix.
    pub key_prefix: &'a str,
    /// Unix milliseconds.
    pub created_at_ms: i64,
}

/// A stored project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectRecord {
    /// The project's id.
    pub id: ProjectId,
    /// Its owner.
    pub owner: UserId,
    /// Display name.
    pub name: String,
    /// Non-secret start of the current API key.
    pub key_prefix: String,
    /// Setting overrides.
    pub overrides: SettingsOverrides,
    /// Unix milliseconds.
    pub created_at_ms: i64,
}

#[derive(sqlx::FromRow)]
struct ProjectRow {
    id: String,
    owner_id: String,
    name: String,
    key_prefix: String,
    max_message_bytes: Option<i64>,
    messages_per_second: Option<i64>,
    project_messages_per_second: Option<i64>,
    max_connections: Option<i64>,
    allowed_origins: Option<String>,
    created_at: i64,
}

const COLUMNS: &str = "id, owner_id, name, key_prefix, max_message_bytes, messages_per_second, \
     project_messages_per_second, max_connections, allowed_origins, created_at";

impl TryFrom<ProjectRow> for ProjectRecord {
    type Error = StoreError;

    fn try_from(row: ProjectRow) -> Result<Self, StoreError> {
        let limit = |value: Option<i64>, column| value.map(|v| to_u32(v, column)).transpose();
        let allowed_origins = row
            .allowed_origins
            .map(|json| serde_json::from_str::<Vec<String>>(&json))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("allowed_origins: {e}")))?;
        Ok(Self {
            id: ProjectId(row.id),
            owner: UserId(row.owner_id),
            name: row.name,
            key_prefix: row.key_prefix,
            overrides: SettingsOverrides {
                max_message_bytes: limit(row.max_message_bytes, "max_message_bytes")?,
                messages_per_second: limit(row.messages_per_second, "messages_per_second")?,
                project_messages_per_second: limit(
                    row.project_messages_per_second,
                    "project_messages_per_second",
                )?,
                max_connections: limit(row.max_connections, "max_connections")?,
                allowed_origins,
            },
            created_at_ms: row.created_at,
        })
    }
}

/// Projects updated by one statement of [`Store::add_message_counters`] (4 parameters
/// each, far below either backend's limit).
const COUNTER_ROWS_PER_STATEMENT: usize = 250;

/// `UPDATE … FROM (VALUES …)` adding `rows` projects' deltas, written once for both
/// backends: a `VALUES` list's columns are `column1`… in SQLite and PostgreSQL alike,
/// and `CAST` (not `::`) types the parameters in both.
fn add_counters_sql(rows: usize) -> String {
    use std::fmt::Write;
    let mut sql = String::from(
        "UPDATE projects SET messages_received = messages_received + v.column2, \
         messages_delivered = messages_delivered + v.column3, \
         messages_rejected = messages_rejected + v.column4 FROM (VALUES ",
    );
    for row in 0..rows {
        let n = row * 4;
        if row > 0 {
            sql.push_str(", ");
        }
        let _ = write!(
            sql,
            "(CAST(${} AS TEXT), CAST(${} AS BIGINT), CAST(${} AS BIGINT), CAST(${} AS BIGINT))",
            n + 1,
            n + 2,
            n + 3,
            n + 4
        );
    }
    sql.push_str(") AS v WHERE projects.id = v.column1");
    sql
}

fn origins_json(overrides: &SettingsOverrides) -> Option<String> {
    overrides
        .allowed_origins
        .as_ref()
        .map(|origins| serde_json::Value::from(origins.clone()).to_string())
}

impl Store {
    /// Inserts a project owned by `owner`, with no setting overrides.
    pub async fn insert_project(
        &self,
        owner: &UserId,
        project: &NewProject<'_>,
    ) -> Result<(), StoreError> {
        const SQL: &str =
            "INSERT INTO projects (id, owner_id, name, key_hash, key_prefix, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)";
        on_pool!(self, pool => sqlx::query(SQL)
            .bind(project.id.as_str())
            .bind(owner.as_str())
            .bind(project.name)
            .bind(&project.key_hash[..])
            .bind(project.key_prefix)
            .bind(project.created_at_ms)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// `owner`'s projects, oldest first.
    pub async fn list_projects(&self, owner: &UserId) -> Result<Vec<ProjectRecord>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM projects WHERE owner_id = $1 ORDER BY created_at, id");
        let rows = on_pool!(self, pool => sqlx::query_as::<_, ProjectRow>(&sql)
            .bind(owner.as_str())
            .fetch_all(pool)
            .await?);
        rows.into_iter().map(ProjectRecord::try_from).collect()
    }

    /// One of `owner`'s projects; `None` when it does not exist or is someone else's.
    pub async fn get_project(
        &self,
        owner: &UserId,
        id: &ProjectId,
    ) -> Result<Option<ProjectRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM projects WHERE owner_id = $1 AND id = $2");
        let row = on_pool!(self, pool => sqlx::query_as::<_, ProjectRow>(&sql)
            .bind(owner.as_str())
            .bind(id.as_str())
            .fetch_optional(pool)
            .await?);
        row.map(ProjectRecord::try_from).transpose()
    }

    /// Replaces the name and overrides of one of `owner`'s projects; false if not found.
    pub async fn update_project(
        &self,
        owner: &UserId,
        id: &ProjectId,
        name: &str,
        overrides: &SettingsOverrides,
    ) -> Result<bool, StoreError> {
        const SQL: &str =
            "UPDATE projects SET name = $3, max_message_bytes = $4, messages_per_second = $5, \
             project_messages_per_second = $6, max_connections = $7, allowed_origins = $8 \
             WHERE owner_id = $1 AND id = $2";
        let to_i64 = |value: Option<u32>| value.map(i64::from);
        let updated = on_pool!(self, pool => sqlx::query(SQL)
            .bind(owner.as_str())
            .bind(id.as_str())
            .bind(name)
            .bind(to_i64(overrides.max_message_bytes))
            .bind(to_i64(overrides.messages_per_second))
            .bind(to_i64(overrides.project_messages_per_second))
            .bind(to_i64(overrides.max_connections))
            .bind(origins_json(overrides))
            .execute(pool)
            .await?
            .rows_affected());
        Ok(updated > 0)
    }

    /// Replaces the API key of one of `owner`'s projects; false if not found.
    pub async fn replace_project_key(
        &self,
        owner: &UserId,
        id: &ProjectId,
        key_hash: &[u8; 32],
        key_prefix: &str,
    ) -> Result<bool, StoreError> {
        const SQL: &str =
            "UPDATE projects SET key_hash = $3, key_prefix = $4 WHERE owner_id = $1 AND id = $2";
        let updated = on_pool!(self, pool => sqlx::query(SQL)
            .bind(owner.as_str())
            .bind(id.as_str())
            .bind(&key_hash[..])
            .bind(key_prefix)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(updated > 0)
    }

    /// Deletes one of `owner`'s projects; false if not found.
    pub async fn delete_project(&self, owner: &UserId, id: &ProjectId) -> Result<bool, StoreError> {
        const SQL: &str = "DELETE FROM projects WHERE owner_id = $1 AND id = $2";
        let deleted = on_pool!(self, pool => sqlx::query(SQL)
            .bind(owner.as_str())
            .bind(id.as_str())
            .execute(pool)
            .await?
            .rows_affected());
        Ok(deleted > 0)
    }

    /// The project whose API key has this hash. Not tenant-scoped on purpose: the key
    /// itself is the credential (used by the realtime side and `POST /api/v1/messages`).
    pub async fn find_project_by_key_hash(
        &self,
        key_hash: &[u8; 32],
    ) -> Result<Option<ProjectRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM projects WHERE key_hash = $1");
        let row = on_pool!(self, pool => sqlx::query_as::<_, ProjectRow>(&sql)
            .bind(&key_hash[..])
            .fetch_optional(pool)
            .await?);
        row.map(ProjectRecord::try_from).transpose()
    }

    /// Adds message counter deltas (received, delivered, rejected) to projects, in one
    /// transaction; deleted projects are skipped. One statement per
    /// [`COUNTER_ROWS_PER_STATEMENT`] projects, not one per project: a node with a
    /// thousand busy projects flushes every few seconds, and on SQLite each statement
    /// is a round trip to the connection's thread.
    pub async fn add_message_counters(
        &self,
        deltas: &[(ProjectId, [u64; 3])],
    ) -> Result<(), StoreError> {
        let to_i64 = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        on_pool!(self, pool => {
            let mut transaction = pool.begin().await?;
            for chunk in deltas.chunks(COUNTER_ROWS_PER_STATEMENT) {
                let sql = add_counters_sql(chunk.len());
                let mut query = sqlx::query(&sql);
                for (id, [received, delivered, rejected]) in chunk {
                    query = query
                        .bind(id.as_str())
                        .bind(to_i64(*received))
                        .bind(to_i64(*delivered))
                        .bind(to_i64(*rejected));
                }
                query.execute(&mut *transaction).await?;
            }
            transaction.commit().await?
        });
        Ok(())
    }

    /// A project's stored message counters (received, delivered, rejected); `None` when
    /// the project does not exist.
    pub async fn message_counters(&self, id: &ProjectId) -> Result<Option<[u64; 3]>, StoreError> {
        const SQL: &str = "SELECT messages_received, messages_delivered, messages_rejected \
             FROM projects WHERE id = $1";
        let row = on_pool!(self, pool => sqlx::query_as::<_, (i64, i64, i64)>(SQL)
            .bind(id.as_str())
            .fetch_optional(pool)
            .await?);
        let to_u64 = |value: i64| u64::try_from(value).unwrap_or(0);
        Ok(row.map(|(received, delivered, rejected)| {
            [to_u64(received), to_u64(delivered), to_u64(rejected)]
        }))
    }
}

//! Failed logins of a single node (SPEC §2 throttle), so a restart does not lift a
//! lockout early. The throttle itself counts in memory; this is its journal, written as
//! each attempt starts and read once after a restart. Timestamps are Unix milliseconds.

use super::{on_pool, Store, StoreError};

impl Store {
    /// Records one failure of each of `subjects` at `at_ms` under the attempt's `token`,
    /// and drops every failure older than `expired_before_ms` (none can count any more).
    pub async fn record_login_failure(
        &self,
        token: &str,
        subjects: &[String],
        at_ms: i64,
        expired_before_ms: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut transaction = pool.begin().await?;
            sqlx::query("DELETE FROM login_failures WHERE failed_at < $1")
                .bind(expired_before_ms)
                .execute(&mut *transaction)
                .await?;
            for subject in subjects {
                sqlx::query(
                    "INSERT INTO login_failures (subject, token, failed_at) VALUES ($1, $2, $3)",
                )
                .bind(subject)
                .bind(token)
                .bind(at_ms)
                .execute(&mut *transaction)
                .await?;
            }
            transaction.commit().await?
        });
        Ok(())
    }

    /// Forgets the failures recorded under `token` (the attempt succeeded).
    pub async fn forgive_login_failure(&self, token: &str) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("DELETE FROM login_failures WHERE token = $1")
            .bind(token)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Every failure at or after `since_ms`, oldest first: `(subject, failed_at)`.
    pub async fn recent_login_failures(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        const SQL: &str = "SELECT subject, failed_at FROM login_failures \
             WHERE failed_at >= $1 ORDER BY failed_at";
        let rows = on_pool!(self, pool => sqlx::query_as::<_, (String, i64)>(SQL)
            .bind(since_ms)
            .fetch_all(pool)
            .await?);
        Ok(rows)
    }
}

//! Request drafts: a modal's state between steps. Slack caps
//! `private_metadata` at 3000 characters, so it carries only the draft id.

use rusqlite::OptionalExtension;

use super::{ts, Result, Store};

impl Store {
    /// Creates or replaces the draft `id` of `slack_id`.
    pub async fn save_draft(
        &self,
        id: String,
        slack_id: String,
        state: serde_json::Value,
    ) -> Result<()> {
        self.call(move |conn| {
            let now = ts(chrono::Utc::now());
            conn.prepare_cached(
                "INSERT INTO request_drafts (id, slack_id, state, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at
                 WHERE request_drafts.slack_id = excluded.slack_id",
            )?
            .execute(rusqlite::params![id, slack_id, serde_json::to_string(&state)?, now])?;
            Ok(())
        })
        .await
    }

    /// The draft `id` if it belongs to `slack_id`: a modal's metadata is
    /// never trusted to name someone else's draft.
    pub async fn draft(&self, id: String, slack_id: String) -> Result<Option<serde_json::Value>> {
        self.call(move |conn| {
            let state: Option<String> = conn
                .prepare_cached("SELECT state FROM request_drafts WHERE id = ?1 AND slack_id = ?2")?
                .query_row([id, slack_id], |r| r.get(0))
                .optional()?;
            Ok(state.as_deref().map(serde_json::from_str).transpose()?)
        })
        .await
    }

    pub async fn delete_draft(&self, id: String) -> Result<()> {
        self.call(move |conn| {
            conn.prepare_cached("DELETE FROM request_drafts WHERE id = ?1")?
                .execute([id])?;
            Ok(())
        })
        .await
    }

    /// Forgets drafts abandoned before `before`.
    pub async fn prune_drafts(&self, before: chrono::DateTime<chrono::Utc>) -> Result<usize> {
        self.call(move |conn| {
            Ok(conn
                .prepare_cached("DELETE FROM request_drafts WHERE updated_at < ?1")?
                .execute([ts(before)])?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_support::*;
    use serde_json::json;

    #[tokio::test]
    async fn drafts_belong_to_their_user() {
        let (_dir, store) = temp_store();
        store
            .save_draft("d1".into(), "U1".into(), json!({ "app": "github" }))
            .await
            .unwrap();
        assert_eq!(
            store.draft("d1".into(), "U1".into()).await.unwrap(),
            Some(json!({ "app": "github" }))
        );
        assert_eq!(store.draft("d1".into(), "U2".into()).await.unwrap(), None);
        // Another user cannot overwrite it either.
        store
            .save_draft("d1".into(), "U2".into(), json!({ "app": "evil" }))
            .await
            .unwrap();
        assert_eq!(
            store.draft("d1".into(), "U1".into()).await.unwrap(),
            Some(json!({ "app": "github" }))
        );
        store.delete_draft("d1".into()).await.unwrap();
        assert_eq!(store.draft("d1".into(), "U1".into()).await.unwrap(), None);
    }
}

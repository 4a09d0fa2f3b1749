//! User links: which email a Slack user is, cached from `users.info` /
//! `users.lookupByEmail` or set by hand (`accessd users link`, which wins).

use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;
use serde::Serialize;

use super::audit::append_audit_tx;
use super::{ts, ts_col, write_tx, AuditEvent, Result, Store};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserLink {
    pub slack_id: String,
    pub email: String,
    /// `slack` (looked up) or `manual` (linked by an admin).
    pub source: String,
    pub refreshed_at: DateTime<Utc>,
    pub linked_by: Option<String>,
}

fn link_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserLink> {
    Ok(UserLink {
        slack_id: r.get(0)?,
        email: r.get(1)?,
        source: r.get(2)?,
        refreshed_at: ts_col(r, 3)?,
        linked_by: r.get(4)?,
    })
}

const LINK_COLUMNS: &str = "slack_id, email, source, refreshed_at, linked_by";

impl Store {
    pub async fn link_for_slack(&self, slack_id: String) -> Result<Option<UserLink>> {
        self.call(move |conn| {
            let sql = format!("SELECT {LINK_COLUMNS} FROM user_links WHERE slack_id = ?1");
            Ok(conn
                .prepare_cached(&sql)?
                .query_row([slack_id], link_row)
                .optional()?)
        })
        .await
    }

    /// The Slack user linked to `email`, with when that was last confirmed.
    /// A manual link wins over looked-up ones.
    pub async fn link_for_email(&self, email: String) -> Result<Option<UserLink>> {
        self.call(move |conn| {
            let sql = format!(
                "SELECT {LINK_COLUMNS} FROM user_links WHERE email = ?1
                 ORDER BY source = 'manual' DESC, refreshed_at DESC LIMIT 1"
            );
            Ok(conn
                .prepare_cached(&sql)?
                .query_row([email], link_row)
                .optional()?)
        })
        .await
    }

    /// The links of many emails in one round trip (a manual link wins).
    pub async fn links_for_emails(&self, emails: Vec<String>) -> Result<Vec<UserLink>> {
        self.call(move |conn| {
            let sql = format!(
                "SELECT {LINK_COLUMNS} FROM user_links WHERE email = ?1
                 ORDER BY source = 'manual' DESC, refreshed_at DESC LIMIT 1"
            );
            let mut st = conn.prepare_cached(&sql)?;
            let mut out = Vec::new();
            for email in emails {
                if let Some(link) = st.query_row([email], link_row).optional()? {
                    out.push(link);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Every Slack user linked to `email` (one person may have several).
    pub async fn slack_ids_of(&self, email: String) -> Result<Vec<String>> {
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT slack_id FROM user_links WHERE email = lower(?1) ORDER BY slack_id",
                )?
                .query_map([email], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Caches what Slack said; never overwrites a manual link.
    pub async fn save_slack_link(&self, slack_id: String, email: String) -> Result<()> {
        self.call(move |conn| {
            conn.prepare_cached(
                "INSERT INTO user_links (slack_id, email, source, refreshed_at) VALUES (?1, lower(?2), 'slack', ?3)
                 ON CONFLICT (slack_id) DO UPDATE SET email = excluded.email, refreshed_at = excluded.refreshed_at
                 WHERE user_links.source = 'slack'",
            )?
            .execute(rusqlite::params![slack_id, email, ts(Utc::now())])?;
            Ok(())
        })
        .await
    }

    /// An admin's link; audited in the same transaction. Returns the previous email.
    pub async fn link_manually(
        &self,
        slack_id: String,
        email: String,
        by: String,
    ) -> Result<Option<String>> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let previous: Option<String> = tx
                .prepare_cached("SELECT email FROM user_links WHERE slack_id = ?1")?
                .query_row([&slack_id], |r| r.get(0))
                .optional()?;
            tx.prepare_cached(
                "INSERT INTO user_links (slack_id, email, source, refreshed_at, linked_by)
                 VALUES (?1, lower(?2), 'manual', ?3, ?4)
                 ON CONFLICT (slack_id) DO UPDATE SET email = excluded.email, source = 'manual',
                     refreshed_at = excluded.refreshed_at, linked_by = excluded.linked_by",
            )?
            .execute(rusqlite::params![slack_id, email, ts(Utc::now()), by])?;
            append_audit_tx(
                &tx,
                &AuditEvent::new(
                    by,
                    "user.link",
                    slack_id.clone(),
                    serde_json::json!({ "email": email.to_lowercase(), "previous": previous }),
                ),
            )?;
            tx.commit()?;
            Ok(previous)
        })
        .await
    }

    pub async fn list_links(&self) -> Result<Vec<UserLink>> {
        self.call(|conn| {
            let sql = format!("SELECT {LINK_COLUMNS} FROM user_links ORDER BY email, slack_id");
            Ok(conn
                .prepare_cached(&sql)?
                .query_map([], link_row)?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_support::*;

    #[tokio::test]
    async fn manual_links_win_over_slack_lookups_and_are_audited() {
        let (_dir, store) = temp_store();
        store
            .save_slack_link("U1".into(), "Ann@Example.com".into())
            .await
            .unwrap();
        let link = store.link_for_slack("U1".into()).await.unwrap().unwrap();
        assert_eq!(
            (link.email.as_str(), link.source.as_str()),
            ("ann@example.com", "slack")
        );

        let previous = store
            .link_manually("U1".into(), "ann.lee@example.com".into(), "cli:root".into())
            .await
            .unwrap();
        assert_eq!(previous.as_deref(), Some("ann@example.com"));
        store
            .save_slack_link("U1".into(), "ann@example.com".into())
            .await
            .unwrap();
        let link = store.link_for_slack("U1".into()).await.unwrap().unwrap();
        assert_eq!(
            (link.email.as_str(), link.source.as_str()),
            ("ann.lee@example.com", "manual")
        );
        assert_eq!(
            store
                .link_for_email("ANN.LEE@example.com".into())
                .await
                .unwrap()
                .map(|l| l.slack_id),
            Some("U1".into())
        );
        let audit = store.audit_rows(None).await.unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].action, "user.link");
        assert!(store.verify_audit().await.unwrap().is_intact());
    }
}

//! Ticket queries. For now only what health checks and benchmarks need; the ticket state machine's transactions belong here as they are written.

use super::{Result, Store};

impl Store {
    /// Number of tickets in any status.
    pub async fn count_tickets(&self) -> Result<i64> {
        self.call(|conn| Ok(conn.query_row("SELECT count(*) FROM tickets", [], |r| r.get(0))?))
            .await
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_support::*;
    use crate::store::StoreError;

    #[tokio::test]
    async fn counts_tickets_and_enforces_the_status_set() {
        let (_dir, store) = temp_store();
        assert_eq!(store.count_tickets().await.unwrap(), 0);
        store
            .call(|c| {
                for status in ["pending", "active"] {
                    c.execute(
                        "INSERT INTO tickets (requester_slack_id, requester_email, app_id, roles, reason, duration_secs, status)
                         VALUES ('U1', 'Ann@Example.com', 'github', '[\"maintainer\"]', 'deploy', 3600, ?1)",
                        [status],
                    )?;
                }
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(store.count_tickets().await.unwrap(), 2);
        // Emails match case-insensitively.
        let n: i64 = store
            .call(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM tickets WHERE requester_email = 'ann@example.com'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(n, 2);
        let err = store
            .call(|c| {
                c.execute(
                    "INSERT INTO tickets (requester_slack_id, requester_email, app_id, reason, duration_secs, status)
                     VALUES ('U1', 'a@b', 'github', 'x', 60, 'approvedish')",
                    [],
                )?;
                Ok(())
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Sqlite(_)));
        assert!(err.to_string().contains("CHECK"), "{err}");
        store.close().await;
    }
}

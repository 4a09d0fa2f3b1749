//! Named leases: at most one holder of a name at a time, across every
//! process on this database; a holder that dies lets go when its lease
//! lapses. The `slack_usergroup` provisioner serialises each group's
//! whole-list writes with them.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{ts, write_tx, Result, Store};

impl Store {
    /// Takes `name` for `owner` until `until`, unless someone else holds an
    /// unexpired lease on it; `owner` may take its own lease again.
    pub async fn take_lease(
        &self,
        name: String,
        owner: String,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let taken = tx
                .prepare_cached(
                    "INSERT INTO leases (name, owner, until) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET owner = ?2, until = ?3
                     WHERE leases.owner = ?2 OR leases.until < ?4",
                )?
                .execute(params![name, owner, ts(until), ts(Utc::now())])?;
            tx.commit()?;
            Ok(taken == 1)
        })
        .await
    }

    /// Lets go of `name` if `owner` still holds it.
    pub async fn release_lease(&self, name: String, owner: String) -> Result<()> {
        self.call(move |conn| {
            conn.prepare_cached("DELETE FROM leases WHERE name = ?1 AND owner = ?2")?
                .execute(params![name, owner])?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_until_it_lets_go_or_lapses() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.db")).unwrap();
        let soon = Utc::now() + chrono::Duration::seconds(60);
        assert!(store
            .take_lease("g".into(), "a".into(), soon)
            .await
            .unwrap());
        assert!(!store
            .take_lease("g".into(), "b".into(), soon)
            .await
            .unwrap());
        assert!(store
            .take_lease("g".into(), "a".into(), soon)
            .await
            .unwrap());
        store.release_lease("g".into(), "b".into()).await.unwrap();
        assert!(!store
            .take_lease("g".into(), "b".into(), soon)
            .await
            .unwrap());
        store.release_lease("g".into(), "a".into()).await.unwrap();
        assert!(store
            .take_lease("g".into(), "b".into(), soon)
            .await
            .unwrap());

        let lapsed = Utc::now() - chrono::Duration::seconds(1);
        assert!(store
            .take_lease("h".into(), "a".into(), lapsed)
            .await
            .unwrap());
        assert!(store
            .take_lease("h".into(), "b".into(), soon)
            .await
            .unwrap());
    }
}

//! Tests of the grant lifecycle: grant rows per role, recorded attempts and "already present", expiry timers, failures and retry, and the last grant ending its ticket.

use std::time::Duration;

use super::*;
use crate::domain::policy::Plan;
use crate::domain::ticket::{Kind, Status};
use crate::store::test_support::*;
use crate::store::{ts, Changed, Created, Effects, NewTicket};

const WARN: Duration = Duration::from_secs(60);

async fn approved(store: &Store, roles: &[&str]) -> Ticket {
    let new = NewTicket {
        requester_slack_id: "UREQ".into(),
        requester_email: "req@x.com".into(),
        app_id: "github".into(),
        roles: roles.iter().map(|r| (*r).to_string()).collect(),
        reason: "on call".into(),
        duration_secs: 3600,
        plan: Plan {
            stages: vec![],
            auto_approve: true,
            max_duration_secs: 3600,
        },
        status: Status::Approved,
        kind: Kind::Request,
        parent: None,
        reference: None,
    };
    match store
        .create_ticket(new, |_| Effects::default())
        .await
        .unwrap()
    {
        Created::New(t) => t,
        Created::Duplicate(t) => panic!("duplicate {}", t.reference()),
    }
}

fn specs(roles: &[&str]) -> Vec<GrantSpec> {
    roles
        .iter()
        .map(|r| GrantSpec {
            role_id: (*r).into(),
            entitlement: format!("gh-{r}"),
        })
        .collect()
}

async fn start(store: &Store, t: &Ticket, roles: &[&str]) -> Vec<Grant> {
    match store
        .start_provisioning(t.id, specs(roles), false, |_, _| Effects::default())
        .await
        .unwrap()
    {
        ProvisionStart::Proceed { grants, .. } => grants,
        ProvisionStart::NotApplicable(t) => panic!("not applicable: {}", t.status),
    }
}

async fn pending_jobs(store: &Store, kind: &str) -> Vec<(String, String)> {
    let kind = kind.to_string();
    store
        .call(move |c| {
            Ok(c.prepare("SELECT subject, run_at FROM jobs WHERE status = 'pending' AND kind = ?1 ORDER BY id")?
                .query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn provisioning_creates_one_grant_per_role_and_restarts_with_the_same_rows() {
    let (_dir, store) = temp_store();
    let t = approved(&store, &["read", "write"]).await;
    let first = start(&store, &t, &["read", "write"]).await;
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|g| g.status == GrantStatus::Pending));
    assert_eq!(
        first[0].idempotency_key,
        format!("accessd/{}/read", t.reference())
    );
    // A re-run after a crash finds the same rows and keys, not new ones.
    let again = start(&store, &t, &["read", "write"]).await;
    assert_eq!(again, first);
}

#[tokio::test]
async fn already_present_is_preexisting_only_on_the_first_attempt() {
    let (_dir, store) = temp_store();
    let t = approved(&store, &["read", "write"]).await;
    let grants = start(&store, &t, &["read", "write"]).await;
    // read: the app had it before the ticket.
    assert_eq!(store.grant_attempt(grants[0].id).await.unwrap(), 1);
    let read = store
        .record_grant(grants[0].id, GrantResult::AlreadyPresent)
        .await
        .unwrap();
    assert!(read.preexisting);
    // write: our first call applied, then the daemon died before recording;
    // the retry hears "already present" and must not call it preexisting.
    assert_eq!(store.grant_attempt(grants[1].id).await.unwrap(), 1);
    assert_eq!(store.grant_attempt(grants[1].id).await.unwrap(), 2);
    let write = store
        .record_grant(grants[1].id, GrantResult::AlreadyPresent)
        .await
        .unwrap();
    assert!(!write.preexisting);
    assert_eq!(write.status, GrantStatus::Active);
}

#[tokio::test]
async fn finishing_sets_expiry_from_now_and_schedules_each_revoke() {
    let (_dir, store) = temp_store();
    let t = approved(&store, &["read"]).await;
    let grants = start(&store, &t, &["read"]).await;
    store.grant_attempt(grants[0].id).await.unwrap();
    store
        .record_grant(grants[0].id, GrantResult::Applied)
        .await
        .unwrap();
    let before = Utc::now();
    let active = store
        .finish_provisioning(t.id, None, WARN, |_, _| Effects::default())
        .await
        .unwrap();
    assert_eq!(active.status, Status::Active);
    let expires = active.expires_at.expect("expiry set");
    // Stored with millisecond precision: allow the truncated millisecond.
    assert!(
        (expires - before).num_milliseconds() >= 3_600_000 - 1,
        "the clock starts at the grant"
    );
    assert!((expires - Utc::now()).num_seconds() <= 3600);
    let revokes = pending_jobs(&store, job::REVOKE).await;
    assert_eq!(revokes, vec![(grants[0].reference(), ts(expires))]);
    assert_eq!(pending_jobs(&store, job::EXPIRY_WARNING).await.len(), 1);
}

#[tokio::test]
async fn a_failed_grant_fails_the_ticket_but_applied_ones_still_expire() {
    let (_dir, store) = temp_store();
    let t = approved(&store, &["read", "write"]).await;
    let grants = start(&store, &t, &["read", "write"]).await;
    store
        .record_grant(grants[0].id, GrantResult::Applied)
        .await
        .unwrap();
    store
        .record_grant(grants[1].id, GrantResult::Failed("no such team".into()))
        .await
        .unwrap();
    let failed = store
        .finish_provisioning(t.id, None, WARN, |_, _| Effects::default())
        .await
        .unwrap();
    assert_eq!(failed.status, Status::Failed);
    assert!(failed
        .failure
        .as_deref()
        .unwrap_or_default()
        .contains("no such team"));
    assert_eq!(
        pending_jobs(&store, job::REVOKE).await.len(),
        1,
        "the applied grant still has its timer"
    );
    // Retry: back to approved, the failed grant pending again, same key.
    assert!(matches!(
        store.retry_ticket(t.id, "admin".into()).await.unwrap(),
        Changed::Done(_)
    ));
    let again = start(&store, &t, &["read", "write"]).await;
    assert_eq!(again[1].status, GrantStatus::Pending);
    assert_eq!(again[1].idempotency_key, grants[1].idempotency_key);
    assert_eq!(again[0].status, GrantStatus::Active);
}

#[tokio::test]
async fn the_last_grant_ending_ends_the_ticket() {
    let (_dir, store) = temp_store();
    let t = approved(&store, &["read", "write"]).await;
    let grants = start(&store, &t, &["read", "write"]).await;
    for g in &grants {
        store
            .record_grant(g.id, GrantResult::Applied)
            .await
            .unwrap();
    }
    store
        .finish_provisioning(t.id, None, WARN, |_, _| Effects::default())
        .await
        .unwrap();
    let (after, _) = store
        .end_grant(
            grants[0].id,
            None,
            GrantStatus::Expired,
            "expired".into(),
            |_, _| Effects::default(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.status, Status::Active);
    let (after, g) = store
        .end_grant(
            grants[1].id,
            None,
            GrantStatus::Expired,
            "expired".into(),
            |_, _| Effects::default(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.status, Status::Expired);
    assert_eq!(g.status, GrantStatus::Expired);
    // Ending twice changes nothing.
    assert!(store
        .end_grant(
            grants[1].id,
            None,
            GrantStatus::Revoked,
            "again".into(),
            |_, _| Effects::default()
        )
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_restart_after_a_recorded_grant_does_not_call_again() {
    let (_dir, store) = temp_store();
    let t = approved(&store, &["read"]).await;
    let grants = start(&store, &t, &["read"]).await;
    store.grant_attempt(grants[0].id).await.unwrap();
    store
        .record_grant(grants[0].id, GrantResult::Applied)
        .await
        .unwrap();
    // Killed here: the ticket is still provisioning and its job re-runs.
    let again = start(&store, &t, &["read"]).await;
    assert_eq!(again[0].status, GrantStatus::Active, "nothing left to call");
    assert_eq!(again[0].attempts, 1);
    let active = store
        .finish_provisioning(t.id, None, WARN, |_, _| Effects::default())
        .await
        .unwrap();
    assert_eq!(active.status, Status::Active);
}

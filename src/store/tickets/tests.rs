//! Tests of the ticket store: creation and duplicates, staged and racing decisions, cancel, nudges, and the effects each transition writes.

use std::time::Duration;

use super::*;
use crate::store::test_support::*;
use crate::store::{AuditEvent, NewMessage};

fn request(app: &str, roles: &[&str], required: &[usize]) -> NewTicket {
    NewTicket {
        requester_slack_id: "UREQ".into(),
        requester_email: "req@x.com".into(),
        app_id: app.into(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        reason: "because".into(),
        duration_secs: 3600,
        plan: plan(required),
        status: Status::Pending,
        kind: Kind::Request,
        parent: None,
        reference: None,
    }
}

fn actor(n: &str) -> Actor {
    Actor {
        slack_id: format!("U{}", n.to_uppercase()),
        email: format!("{n}@x.com"),
    }
}

fn vote(who: &str, verdict: Verdict) -> DecisionInput {
    DecisionInput {
        actor: actor(who),
        verdict,
        comment: None,
        duration_secs: None,
    }
}

/// One DM and one audit row per transition, like the handlers write.
fn announce(t: &Ticket) -> Effects {
    Effects {
        messages: vec![NewMessage::post(
            &t.requester_slack_id,
            &format!("{} is {}", t.reference(), t.status),
            serde_json::json!([]),
        )],
        audit: vec![AuditEvent::new(
            "system",
            "ticket.announce",
            t.reference(),
            serde_json::json!({ "status": t.status.as_str() }),
        )],
        restate_dms: vec![],
        jobs: vec![],
    }
}

async fn new_ticket(store: &Store, new: NewTicket) -> Ticket {
    match store
        .create_ticket(new, |_| Effects::default())
        .await
        .unwrap()
    {
        Created::New(t) => t,
        Created::Duplicate(t) => panic!("unexpected duplicate {}", t.reference()),
    }
}

async fn decide(store: &Store, id: i64, input: DecisionInput) -> Decided {
    store
        .decide(id, input, |_| Ok(()), |t, _| announce(t))
        .await
        .unwrap()
}

fn applied(decided: Decided) -> (Ticket, Transition) {
    match decided {
        Decided::Applied { ticket, transition } => (ticket, transition),
        other => panic!("expected Applied, got {other:?}"),
    }
}

/// (audit rows, pending outbox messages, approvals rows).
async fn written(store: &Store) -> (usize, i64, i64) {
    let audit = store.audit_rows(None).await.unwrap().len();
    let outbox = store.outbox_stats().await.unwrap().pending;
    let approvals = store
        .call(|c| Ok(c.query_row("SELECT count(*) FROM approvals", [], |r| r.get(0))?))
        .await
        .unwrap();
    (audit, outbox, approvals)
}

async fn actions(store: &Store) -> Vec<String> {
    store
        .audit_rows(None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect()
}

#[tokio::test]
async fn create_makes_a_pending_ticket_and_refuses_overlapping_duplicates() {
    let (_dir, store) = temp_store();
    let created = store
        .create_ticket(request("gh", &["admin", "write"], &[1]), announce)
        .await
        .unwrap();
    let Created::New(first) = created else {
        panic!("expected New: {created:?}");
    };
    assert_eq!(first.status, Status::Pending);
    assert_eq!((first.stage, first.decided_at), (0, None));
    assert_eq!(first.plan, plan(&[1]));
    assert_eq!(written(&store).await, (1, 1, 0));

    let again = store
        .create_ticket(request("gh", &["write", "read"], &[1]), announce)
        .await
        .unwrap();
    match again {
        Created::Duplicate(t) => assert_eq!(t.id, first.id),
        other => panic!("expected Duplicate: {other:?}"),
    }
    assert_eq!(
        written(&store).await,
        (1, 1, 0),
        "a duplicate writes nothing"
    );

    let other_role = new_ticket(&store, request("gh", &["read"], &[1])).await;
    assert_ne!(other_role.id, first.id);
    let other_app = new_ticket(&store, request("aws", &["admin"], &[1])).await;
    assert_ne!(other_app.id, first.id);
    assert_eq!(store.count_tickets().await.unwrap(), 3);
}

#[tokio::test]
async fn approve_with_one_required_approves_and_writes_its_effects_once() {
    let (_dir, store) = temp_store();
    let t = new_ticket(&store, request("gh", &["admin"], &[1])).await;
    let (after, transition) = applied(decide(&store, t.id, vote("a", Verdict::Approve)).await);
    assert_eq!(transition, Transition::Approved);
    assert_eq!(after.status, Status::Approved);
    assert!(after.decided_at.is_some());
    assert_eq!(after.approvals.len(), 1);
    assert_eq!(after.final_decision().unwrap().approver_slack_id, "UA");
    assert_eq!(actions(&store).await, ["ticket.approve", "ticket.announce"]);
    assert_eq!(written(&store).await, (2, 1, 1));

    let before = written(&store).await;
    match decide(&store, t.id, vote("b", Verdict::Approve)).await {
        Decided::AlreadyDecided(t) => assert_eq!(t.status, Status::Approved),
        other => panic!("expected AlreadyDecided: {other:?}"),
    }
    assert_eq!(written(&store).await, before, "nothing new written");
    assert!(store.verify_audit().await.unwrap().is_intact());
}

#[tokio::test]
async fn two_stages_move_to_the_next_stage_then_approve() {
    let (_dir, store) = temp_store();
    let t = new_ticket(&store, request("gh", &["admin"], &[1, 1])).await;
    let (after, transition) = applied(decide(&store, t.id, vote("a", Verdict::Approve)).await);
    assert_eq!(transition, Transition::NextStage { stage: 1 });
    assert_eq!((after.status, after.stage), (Status::Pending, 1));
    assert_eq!(after.decided_at, None);
    // The stage-0 approver may act again in stage 1: it is another stage.
    let (after, transition) = applied(decide(&store, t.id, vote("a", Verdict::Approve)).await);
    assert_eq!(transition, Transition::Approved);
    assert_eq!((after.status, after.stage), (Status::Approved, 1));
    assert_eq!(after.approvals.len(), 2);
}

#[tokio::test]
async fn two_required_counts_then_approves_and_one_actor_votes_once() {
    let (_dir, store) = temp_store();
    let t = new_ticket(&store, request("gh", &["admin"], &[2])).await;
    let (after, transition) = applied(decide(&store, t.id, vote("a", Verdict::Approve)).await);
    assert_eq!(
        transition,
        Transition::Counted {
            approvals: 1,
            required: 2
        }
    );
    assert_eq!(after.status, Status::Pending);

    let before = written(&store).await;
    match decide(&store, t.id, vote("a", Verdict::Approve)).await {
        Decided::AlreadyVoted(t) => assert_eq!(t.approvals.len(), 1),
        other => panic!("expected AlreadyVoted: {other:?}"),
    }
    // Not even a reject counts twice from the same person in a stage.
    assert!(matches!(
        decide(&store, t.id, vote("a", Verdict::Reject)).await,
        Decided::AlreadyVoted(_)
    ));
    assert_eq!(written(&store).await, before);

    let (after, transition) = applied(decide(&store, t.id, vote("b", Verdict::Approve)).await);
    assert_eq!(transition, Transition::Approved);
    assert_eq!(after.status, Status::Approved);
}

#[tokio::test]
async fn a_refused_actor_is_audited_and_records_no_approval() {
    let (_dir, store) = temp_store();
    let t = new_ticket(&store, request("gh", &["admin"], &[1])).await;
    let decided = store
        .decide(
            t.id,
            vote("mallory", Verdict::Approve),
            |_| Err("not an approver".into()),
            |t, _| announce(t),
        )
        .await
        .unwrap();
    match decided {
        Decided::Refused { ticket, reason } => {
            assert_eq!(reason, "not an approver");
            assert_eq!(ticket.status, Status::Pending);
        }
        other => panic!("expected Refused: {other:?}"),
    }
    assert_eq!(actions(&store).await, ["ticket.decision_refused"]);
    let row = &store.audit_rows(None).await.unwrap()[0];
    assert_eq!(
        (row.actor.as_str(), row.subject.as_str()),
        ("mallory@x.com", "T-1")
    );
    assert_eq!(row.detail["reason"], "not an approver");
    assert_eq!(written(&store).await, (1, 0, 0), "no approval, no message");
    let t = store.ticket(t.id).await.unwrap().unwrap();
    assert_eq!(t.status, Status::Pending);
}

#[tokio::test]
async fn one_reject_ends_the_ticket() {
    let (_dir, store) = temp_store();
    let t = new_ticket(&store, request("gh", &["admin"], &[2, 1])).await;
    let mut input = vote("a", Verdict::Reject);
    input.comment = Some("no".into());
    let (after, transition) = applied(decide(&store, t.id, input).await);
    assert_eq!(transition, Transition::Rejected);
    assert_eq!(after.status, Status::Rejected);
    assert!(after.decided_at.is_some());
    assert_eq!(
        after.final_decision().unwrap().comment.as_deref(),
        Some("no")
    );
    assert_eq!(actions(&store).await, ["ticket.reject", "ticket.announce"]);
}

#[tokio::test]
async fn an_approvers_duration_replaces_the_requested_one() {
    let (_dir, store) = temp_store();
    let t = new_ticket(&store, request("gh", &["admin"], &[1])).await;
    let mut input = vote("a", Verdict::Approve);
    input.duration_secs = Some(600);
    let (after, _) = applied(decide(&store, t.id, input).await);
    assert_eq!(after.duration_secs, 600);
    assert_eq!(after.approvals[0].duration_secs, Some(600));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_approvals_apply_exactly_once() {
    let (_dir, store) = temp_store();
    let t = new_ticket(&store, request("gh", &["admin"], &[1])).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .decide(
                        t.id,
                        vote(&format!("a{i}"), Verdict::Approve),
                        |_| Ok(()),
                        |t, _| announce(t),
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let (mut applied, mut already) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Decided::Applied { transition, .. } => {
                assert_eq!(transition, Transition::Approved);
                applied += 1;
            }
            Decided::AlreadyDecided(t) => {
                assert_eq!(t.status, Status::Approved);
                already += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((applied, already), (1, 19));
    let t = store.ticket(t.id).await.unwrap().unwrap();
    assert_eq!(t.status, Status::Approved);
    assert_eq!(t.approvals.len(), 1);
    assert_eq!(t.approvals_in_stage(0).count(), 1);
    assert_eq!(written(&store).await, (2, 1, 1));
    assert!(store.verify_audit().await.unwrap().is_intact());
}

#[tokio::test]
async fn only_the_requester_cancels_and_only_while_pending() {
    let (_dir, store) = temp_store();
    let t = new_ticket(&store, request("gh", &["admin"], &[1])).await;
    let requester = Actor {
        slack_id: "UREQ".into(),
        email: "req@x.com".into(),
    };

    match store
        .cancel_ticket(t.id, actor("a"), announce)
        .await
        .unwrap()
    {
        Changed::Refused { ticket, .. } => assert_eq!(ticket.status, Status::Pending),
        other => panic!("expected Refused: {other:?}"),
    }
    // The refusal is audited; nothing else is written.
    assert_eq!(actions(&store).await, ["ticket.cancel_refused"]);
    assert_eq!(written(&store).await, (1, 0, 0));

    match store
        .cancel_ticket(t.id, requester.clone(), announce)
        .await
        .unwrap()
    {
        Changed::Done(ticket) => {
            assert_eq!(ticket.status, Status::Cancelled);
            assert!(ticket.decided_at.is_some());
        }
        other => panic!("expected Done: {other:?}"),
    }
    assert_eq!(
        actions(&store).await,
        ["ticket.cancel_refused", "ticket.cancel", "ticket.announce"]
    );
    assert_eq!(written(&store).await, (3, 1, 0));

    match store
        .cancel_ticket(t.id, requester.clone(), announce)
        .await
        .unwrap()
    {
        Changed::NotApplicable(ticket) => assert_eq!(ticket.status, Status::Cancelled),
        other => panic!("expected NotApplicable: {other:?}"),
    }
    let approved = new_ticket(&store, request("aws", &["admin"], &[1])).await;
    applied(decide(&store, approved.id, vote("a", Verdict::Approve)).await);
    assert!(matches!(
        store
            .cancel_ticket(approved.id, requester, announce)
            .await
            .unwrap(),
        Changed::NotApplicable(_)
    ));
    assert!(matches!(
        decide(&store, t.id, vote("a", Verdict::Approve)).await,
        Decided::AlreadyDecided(_)
    ));
}

#[tokio::test]
async fn nudges_are_requester_only_and_respect_the_cooldown() {
    let (_dir, store) = temp_store();
    let t = new_ticket(&store, request("gh", &["admin"], &[1])).await;
    let requester = Actor {
        slack_id: "UREQ".into(),
        email: "req@x.com".into(),
    };
    let hour = Duration::from_secs(3600);

    assert!(matches!(
        store
            .nudge_ticket(t.id, actor("a"), hour, announce)
            .await
            .unwrap(),
        Changed::Refused { .. }
    ));
    let first = match store
        .nudge_ticket(t.id, requester.clone(), hour, announce)
        .await
        .unwrap()
    {
        Changed::Done(t) => t.last_nudge_at.expect("nudge time recorded"),
        other => panic!("expected Done: {other:?}"),
    };
    let before = written(&store).await;
    // The refused nudge's audit row, then the nudge and its effect.
    assert_eq!(before, (3, 1, 0));
    match store
        .nudge_ticket(t.id, requester.clone(), hour, announce)
        .await
        .unwrap()
    {
        Changed::TooSoon { next_at, ticket } => {
            assert_eq!(next_at, first + chrono::Duration::hours(1));
            assert_eq!(ticket.last_nudge_at, Some(first));
        }
        other => panic!("expected TooSoon: {other:?}"),
    }
    assert_eq!(
        written(&store).await,
        before,
        "a refused nudge writes nothing"
    );

    // Once the cooldown has passed, the requester may nudge again.
    tokio::time::sleep(Duration::from_millis(20)).await;
    match store
        .nudge_ticket(t.id, requester.clone(), Duration::from_millis(10), announce)
        .await
        .unwrap()
    {
        Changed::Done(t) => assert!(t.last_nudge_at.unwrap() > first),
        other => panic!("expected Done: {other:?}"),
    }

    applied(decide(&store, t.id, vote("a", Verdict::Approve)).await);
    assert!(matches!(
        store
            .nudge_ticket(t.id, requester, Duration::ZERO, announce)
            .await
            .unwrap(),
        Changed::NotApplicable(_)
    ));
}

#[tokio::test]
async fn effects_audit_rows_keep_the_chain_intact() {
    let (_dir, store) = temp_store();
    let many = |t: &Ticket| Effects {
        messages: vec![
            NewMessage::post("UA", "one", serde_json::json!([])),
            NewMessage::post("UB", "two", serde_json::json!([])),
        ],
        audit: (0..3)
            .map(|i| {
                AuditEvent::new(
                    "system",
                    format!("test.effect{i}"),
                    t.reference(),
                    serde_json::json!({ "i": i, "text": "multi\nline" }),
                )
            })
            .collect(),
        restate_dms: vec![],
        jobs: vec![],
    };
    let created = store
        .create_ticket(request("gh", &["admin"], &[2]), many)
        .await
        .unwrap();
    let Created::New(t) = created else {
        panic!("expected New")
    };
    store
        .decide(
            t.id,
            vote("a", Verdict::Approve),
            |_| Ok(()),
            move |t, _| many(t),
        )
        .await
        .unwrap();
    store
        .decide(
            t.id,
            vote("b", Verdict::Approve),
            |_| Ok(()),
            move |t, _| many(t),
        )
        .await
        .unwrap();
    let verification = store.verify_audit().await.unwrap();
    assert!(verification.is_intact(), "{verification:?}");
    assert_eq!(verification.rows, 3 + 4 + 4);
    assert_eq!(store.outbox_stats().await.unwrap().pending, 6);
    let seqs: Vec<i64> = store
        .audit_rows(None)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, (1..=11).collect::<Vec<_>>());
}

#[tokio::test]
async fn list_filters_by_status_and_requester_newest_first() {
    let (_dir, store) = temp_store();
    let a = new_ticket(&store, request("gh", &["admin"], &[1])).await;
    let b = new_ticket(&store, request("aws", &["admin"], &[1])).await;
    applied(decide(&store, a.id, vote("x", Verdict::Approve)).await);
    let ids = |ts: Vec<Ticket>| ts.into_iter().map(|t| t.id).collect::<Vec<_>>();
    let all = store.list_tickets(TicketFilter::default()).await.unwrap();
    assert_eq!(ids(all), [b.id, a.id]);
    let pending = store
        .list_tickets(TicketFilter {
            status: Some(Status::Pending),
            ..TicketFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(pending), [b.id]);
    let limited = store
        .list_tickets(TicketFilter {
            limit: Some(1),
            ..TicketFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(limited), [b.id]);
    let nobody = store
        .list_tickets(TicketFilter {
            requester_slack_id: Some("UOTHER".into()),
            ..TicketFilter::default()
        })
        .await
        .unwrap();
    assert!(nobody.is_empty());
}

/// Known bug, see the report: `json_each('[]')` yields no rows, so the
/// overlap test never matches for an app without roles (requested with
/// no role ids) and such requests are never duplicates.
#[tokio::test]
async fn a_second_request_for_an_app_without_roles_is_a_duplicate() {
    let (_dir, store) = temp_store();
    new_ticket(&store, request("wiki", &[], &[1])).await;
    let again = store
        .create_ticket(request("wiki", &[], &[1]), |_| Effects::default())
        .await
        .unwrap();
    assert!(matches!(again, Created::Duplicate(_)), "{again:?}");
}

/// Known bug, see the report: the email is stored with Unicode
/// `to_lowercase` but looked up as given under SQLite's ASCII-only NOCASE.
#[tokio::test]
async fn duplicates_are_found_for_non_ascii_emails_in_any_case() {
    let (_dir, store) = temp_store();
    let mut r = request("gh", &["admin"], &[1]);
    r.requester_email = "Ärne@x.com".into();
    new_ticket(&store, r.clone()).await;
    let again = store
        .create_ticket(r, |_| Effects::default())
        .await
        .unwrap();
    assert!(matches!(again, Created::Duplicate(_)), "{again:?}");
}

//! Tests of the review store: campaign references, and one campaign through its pages, decisions, reassignment and closing.

use super::*;
use crate::store::test_support::temp_store;

fn new_campaign(items: usize, reviewers: &[&str]) -> NewCampaign {
    NewCampaign {
        name: "Q4 GitHub".into(),
        apps: vec!["github".into()],
        reviewer_rule: "owners".into(),
        owner_email: "secops@example.com".into(),
        schedule: None,
        due_at: Utc::now() + chrono::Duration::days(14),
        created_by: "cli:test".into(),
        remind_every: Some(std::time::Duration::from_secs(7200)),
        closing_soon: None,
        reminders: true,
        items: (0..items)
            .map(|i| NewReviewItem {
                app_id: "github".into(),
                source_id: "gh".into(),
                account_id: format!("u{i}"),
                email: Some(format!("u{i}@example.com")),
                name: None,
                entitlement: Some("gh-readers".into()),
                reviewer_email: reviewers[i % reviewers.len()].into(),
            })
            .collect(),
    }
}

#[test]
fn references_round_trip() {
    assert_eq!(campaign_ref(3), "R-3");
    assert_eq!(parse_campaign_ref("R-3"), Some(3));
    assert_eq!(parse_campaign_ref("3"), Some(3));
    assert_eq!(parse_campaign_ref("T-3"), None);
    assert_eq!(parse_campaign_ref("R-0"), None);
}

#[tokio::test]
async fn pages_decisions_reassignment_and_closing() {
    let (_dir, store) = temp_store();
    let c = store
        .create_campaign(
            new_campaign(45, &["dana@example.com", "bob@example.com"]),
            |_| Effects::default(),
        )
        .await
        .unwrap();
    let pages = store
        .paginate(
            c.id,
            "dana@example.com".into(),
            "UDANA".into(),
            10,
            |_, _| Effects::default(),
        )
        .await
        .unwrap();
    let sizes: Vec<usize> = pages.iter().map(|(_, items)| items.len()).collect();
    assert_eq!(sizes, [10, 10, 3]);
    // Paginating again finds nothing new.
    let again = store
        .paginate(
            c.id,
            "dana@example.com".into(),
            "UDANA".into(),
            10,
            |_, _| Effects::default(),
        )
        .await
        .unwrap();
    assert!(again.is_empty());

    let first = pages[0].1[0].id;
    let decided = store
        .decide_review_items(
            vec![first],
            "dana@example.com".into(),
            "revoke".into(),
            Some("left".into()),
            |_, _| Ok(()),
            |_, d, mates| {
                assert_eq!(d.len(), 1);
                assert_eq!(mates.len(), 10, "the whole page is re-rendered");
                Effects::default()
            },
        )
        .await
        .unwrap();
    assert!(
        matches!(decided, ReviewChange::Done(ref d) if d[0].decision.as_deref() == Some("revoke"))
    );
    let twice = store
        .decide_review_items(
            vec![first],
            "dana@example.com".into(),
            "keep".into(),
            None,
            |_, _| Ok(()),
            |_, _, _| Effects::default(),
        )
        .await
        .unwrap();
    assert!(
        matches!(twice, ReviewChange::Already(ref i) if i.decision.as_deref() == Some("revoke"))
    );
    let refused = store
        .decide_review_items(
            vec![first],
            "eve@example.com".into(),
            "keep".into(),
            None,
            |_, _| Err("no".into()),
            |_, _, _| Effects::default(),
        )
        .await
        .unwrap();
    assert_eq!(refused, ReviewChange::Refused("no".into()));

    // Reassign two of Dana's to Carol: off Dana's pages, Carol's to page.
    let move_ids = vec![pages[0].1[1].id, pages[0].1[2].id];
    let moved = store
        .reassign_review_items(
            move_ids,
            "carol@example.com".into(),
            "on leave".into(),
            |_, _| Ok(()),
            |_, _, _| Effects::default(),
        )
        .await
        .unwrap();
    let ReviewChange::Done(moved) = moved else {
        panic!("{moved:?}")
    };
    assert!(moved
        .iter()
        .all(|i| i.reviewer_email == "carol@example.com" && i.page.is_none()));
    assert_eq!(
        moved[0].reassigned_from.as_deref(),
        Some("dana@example.com")
    );

    // Keep all remaining of Dana's: 23 − 1 decided − 2 moved = 20.
    let dana: Vec<i64> = store
        .reviewer_items(c.id, "dana@example.com".into())
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    let ReviewChange::Done(kept) = store
        .decide_review_items(
            dana,
            "dana@example.com".into(),
            "keep".into(),
            None,
            |_, _| Ok(()),
            |_, _, _| Effects::default(),
        )
        .await
        .unwrap()
    else {
        panic!("keep all")
    };
    assert_eq!(kept.len(), 20);

    let progress = store.review_progress(None).await.unwrap();
    let of = |who: &str| {
        progress
            .iter()
            .find(|p| p.reviewer_email == who)
            .map(|p| (p.total, p.decided))
    };
    assert_eq!(of("dana@example.com"), Some((21, 21)));
    assert_eq!(of("bob@example.com"), Some((22, 0)));
    assert_eq!(of("carol@example.com"), Some((2, 0)));

    let closed = store
        .close_campaign(c.id, |_, items| {
            assert_eq!(items.len(), 45);
            Effects::default()
        })
        .await
        .unwrap();
    assert!(closed.is_some());
    assert!(store
        .close_campaign(c.id, |_, _| Effects::default())
        .await
        .unwrap()
        .is_none());
    let late = store
        .decide_review_items(
            vec![pages[1].1[0].id],
            "bob@example.com".into(),
            "keep".into(),
            None,
            |_, _| Ok(()),
            |_, _, _| Effects::default(),
        )
        .await
        .unwrap();
    assert!(matches!(late, ReviewChange::Closed(_)));
    assert!(store.review_progress(None).await.unwrap().is_empty());
}

//! Access requests and approvals, acted out as Slack users against the fake
//! Slack: type `/access`, fill each step of the modal, open the approver's DM,
//! click Approve by its text, fill the modal, submit — then check what every
//! person sees and what the database holds.

mod support;

use std::sync::Arc;

use accessd::domain::ticket::Status;
use serde_json::{json, Value};
use support::daemon::config_listening;
use support::payloads;
use support::world::*;
use tokio::sync::Notify;

const CATALOG: &str = r#"
[requests]
default_duration = "8h"
max_duration = "30d"
fallback_approvers = ["group:it"]
admins = ["secops@example.com"]
nudge_cooldown = "1h"

[groups]
it = ["ivan@example.com"]
eng-leads = ["bob@example.com", "carol@example.com"]
contractors = ["zed@contractor.example"]

[[apps]]
id = "github"
name = "GitHub"
aliases = ["gh"]
owners = ["dana@example.com"]
max_duration = "7d"
stages = [{ approvers = ["group:eng-leads"], required = 1 }]
deny_requesters = ["group:contractors"]

  [[apps.roles]]
  id = "maintainer"
  name = "Maintainer"
  max_duration = "1d"
  stages = [{ approvers = ["owners"], required = 1 }, { approvers = ["group:eng-leads"], required = "all" }]

  [[apps.roles]]
  id = "write"
  name = "Write"

  [[apps.roles]]
  id = "read"
  name = "Read only"
  auto_approve = true

[[apps]]
id = "aws"
name = "AWS"
stages = [{ approvers = ["bob@example.com"], required = 1 }]

  [[apps.roles]]
  id = "console"
  name = "Console"
"#;

/// [`CATALOG`] with one more `[requests]` line.
fn with_requests(line: &str) -> String {
    CATALOG.replace(
        "nudge_cooldown = \"1h\"",
        &format!("nudge_cooldown = \"1h\"\n{line}"),
    )
}

impl World {
    async fn start() -> World {
        World::start_with(CATALOG).await
    }
}

#[tokio::test]
async fn one_stage_request_is_approved_from_the_dm_and_everyone_is_told() {
    let world = World::start().await;
    let t = world
        .request(ANN, "gh", &["write"], "Fix the release pipeline", "4h")
        .await;

    // Both eng-leads are asked; the requester is told who.
    let bob_dm = world.dm_about(BOB, &t).await;
    let carol_dm = world.dm_about(CAROL, &t).await;
    for dm in [&bob_dm, &carol_dm] {
        assert_eq!(buttons_of(dm), ["Approve", "Reject"]);
        let text = text_of(dm);
        assert!(
            text.contains("<@UANN>")
                && text.contains("GitHub")
                && text.contains("Write")
                && text.contains("4h"),
            "{text}"
        );
        assert!(
            text.contains("Fix the release pipeline") && text.contains("0 of 1 approvals"),
            "{text}"
        );
    }
    let created = world.dm_about(ANN, &t).await;
    assert!(text_of(&created).contains("<@UBOB>") && text_of(&created).contains("<@UCAROL>"));

    let ack = world.decide(BOB, &t, "Approve", "ship it", None).await;
    assert_eq!(
        ack.map(|a| a["response_action"].clone()),
        Some("clear".into()),
        "decision committed, modal closed"
    );
    let status = world.ticket_status(&t).await;
    assert!(
        matches!(status, Status::Approved | Status::Provisioning),
        "{status}"
    );

    let told = world
        .fake
        .wait_until(WAIT, |f| {
            f.messages_to(ANN)
                .into_iter()
                .find(|m| text_of(m).contains("Approved"))
        })
        .await
        .expect("requester told");
    assert!(text_of(&told).contains("<@UBOB>") && text_of(&told).contains("ship it"));
    // Every approver's copy now says who decided, without buttons.
    for user in [BOB, CAROL] {
        let copy = world
            .fake
            .wait_until(WAIT, |f| {
                f.messages_to(user)
                    .into_iter()
                    .find(|m| text_of(m).contains(&t) && buttons_of(m).is_empty())
            })
            .await
            .unwrap_or_else(|| panic!("{user}'s copy not updated"));
        assert!(text_of(&copy).contains("Approved") && text_of(&copy).contains("<@UBOB>"));
    }
    // Provisioning follows the approval (tests/grants.rs covers it).
    assert_eq!(
        world.audit_actions(&t).await[..2],
        ["ticket.create", "ticket.approve"]
    );
    world.stop().await;
}

#[tokio::test]
async fn two_stages_ask_the_next_stage_only_when_the_first_is_met_and_all_means_all() {
    let world = World::start().await;
    let t = world
        .request(
            ANN,
            "github",
            &["maintainer"],
            "Rotate the deploy keys",
            "6h",
        )
        .await;
    world.dm_about(DANA, &t).await;
    assert!(
        world.fake.messages_to(BOB).is_empty(),
        "stage 2 is not asked before stage 1 is met"
    );

    world.decide(DANA, &t, "Approve", "", None).await;
    world.dm_about(BOB, &t).await;
    world.dm_about(CAROL, &t).await;
    assert_eq!(world.ticket_status(&t).await, Status::Pending);

    world.decide(BOB, &t, "Approve", "ok", None).await;
    assert_eq!(
        world.ticket_status(&t).await,
        Status::Pending,
        "required = all: one of two is not enough"
    );
    world
        .decide(CAROL, &t, "Approve", "ok too", Some("2h"))
        .await;
    let status = world.ticket_status(&t).await;
    assert!(
        matches!(status, Status::Approved | Status::Provisioning),
        "{status}"
    );
    let told = world
        .fake
        .wait_until(WAIT, |f| {
            f.messages_to(ANN)
                .into_iter()
                .find(|m| text_of(m).contains("Approved"))
        })
        .await
        .expect("requester told");
    assert!(
        text_of(&told).contains("2h"),
        "the changed duration is reported: {told}"
    );
    world.stop().await;
}

#[tokio::test]
async fn reject_with_a_comment_ends_the_request() {
    let world = World::start().await;
    let t = world
        .request(ANN, "gh", &["write"], "Need to push hotfixes", "2h")
        .await;
    // Bob's copy as it was before anyone decided, buttons and all.
    let stale_copy = world.dm_about(BOB, &t).await;
    world
        .decide(CAROL, &t, "Reject", "use a PR instead", None)
        .await;
    assert_eq!(world.ticket_status(&t).await, Status::Rejected);
    let told = world
        .fake
        .wait_until(WAIT, |f| {
            f.messages_to(ANN)
                .into_iter()
                .find(|m| text_of(m).contains("Rejected"))
        })
        .await
        .expect("requester told");
    assert!(text_of(&told).contains("use a PR instead") && text_of(&told).contains("<@UCAROL>"));
    // A later click on the other copy changes nothing and says why.
    let click = world.fake.click(BOB, &stale_copy, "Approve");
    world.ack(&click).await;
    let answer = world
        .fake
        .wait_until(WAIT, |f| {
            f.ephemerals_to(BOB)
                .into_iter()
                .find(|m| text_of(m).contains(&t))
        })
        .await
        .expect("ephemeral answer");
    assert!(
        text_of(&answer).contains("already rejected by <@UCAROL>"),
        "{answer}"
    );
    assert_eq!(world.ticket_status(&t).await, Status::Rejected);
    world.stop().await;
}

#[tokio::test]
async fn invalid_input_is_answered_inline_on_the_field() {
    let world = World::start().await;
    world.open_request(ANN, "github").await;
    let ack = world.submit(ANN, roles_values(&[], "")).await.unwrap();
    assert_eq!(ack["response_action"], "errors");
    assert!(
        ack["errors"]["roles"].is_string() && ack["errors"]["reason"].is_string(),
        "{ack}"
    );
    let ack = world
        .submit(ANN, roles_values(&["superuser"], "A perfectly fine reason"))
        .await
        .unwrap();
    assert!(
        ack["errors"]["roles"]
            .as_str()
            .unwrap_or_default()
            .contains("superuser"),
        "{ack}"
    );

    let ack = world
        .submit(
            ANN,
            roles_values(&["maintainer"], "A perfectly fine reason"),
        )
        .await
        .unwrap();
    assert_eq!(ack["response_action"], "update");
    let duration_view = &ack["view"];
    assert!(
        text_of(duration_view).contains("At most 1d"),
        "the cap is shown: {duration_view}"
    );
    for (typed, expect) in [
        ("3d", "At most 1d"),
        ("banana", "not a duration"),
        ("0h", "more than zero"),
    ] {
        let ack = world
            .submit(
                ANN,
                json!({ "duration": { "duration_input": payloads::plain_text_value(typed) } }),
            )
            .await
            .unwrap();
        assert_eq!(ack["response_action"], "errors");
        assert!(
            ack["errors"]["duration"]
                .as_str()
                .unwrap_or_default()
                .contains(expect),
            "{typed}: {ack}"
        );
    }
    world.stop().await;
}

#[tokio::test]
async fn a_duplicate_open_request_is_refused_on_the_roles_field() {
    let world = World::start().await;
    let t = world
        .request(ANN, "gh", &["write"], "Fix the release pipeline", "4h")
        .await;
    world.open_request(ANN, "gh").await;
    let ack = world
        .submit(ANN, roles_values(&["write"], "Again, for the same thing"))
        .await
        .unwrap();
    assert!(
        ack["errors"]["roles"]
            .as_str()
            .unwrap_or_default()
            .contains(&t),
        "{ack}"
    );
    world.stop().await;
}

#[tokio::test]
async fn access_text_preselects_the_app_or_says_nothing_matched() {
    let world = World::start().await;
    let modal = world.open_request(ANN, "githb").await;
    assert!(
        has_block(&modal, "roles") && text_of(&modal).contains("GitHub"),
        "typo matched: {modal}"
    );
    world.fake.submit(ANN, &modal, json!({}));

    let modal = world.open_request(ANN, "salesforce").await;
    assert!(has_block(&modal, "app"), "{modal}");
    assert!(text_of(&modal).contains("No app matches") && text_of(&modal).contains("salesforce"));
    let ack = world
        .submit(
            ANN,
            json!({ "app": { "app_select": payloads::static_select_value("aws", "AWS") } }),
        )
        .await
        .unwrap();
    assert_eq!(ack["response_action"], "update");
    assert!(text_of(&ack["view"]).contains("Console"));

    let id = world.fake.run_command(ANN, "/access", "help");
    let help = world.ack(&id).await.expect("help in the ack");
    assert_eq!(help["response_type"], "ephemeral");
    world.stop().await;
}

#[tokio::test]
async fn deny_requesters_are_refused_up_front() {
    let world = World::start().await;
    world.open_request(ZED, "gh").await;
    let ack = world
        .submit(ZED, roles_values(&["write"], "Contractor work on CI"))
        .await
        .unwrap();
    assert!(
        ack["errors"]["roles"]
            .as_str()
            .unwrap_or_default()
            .contains("group:contractors"),
        "{ack}"
    );
    world.stop().await;
}

#[tokio::test]
async fn forged_and_self_approvals_are_refused_and_audited() {
    let world = World::start().await;
    // Carol asks: she is an eng-lead, but never an approver of her own request.
    let t = world
        .request(CAROL, "gh", &["write"], "Debug the flaky runner", "2h")
        .await;
    let bob_dm = world.dm_about(BOB, &t).await;
    assert!(world
        .fake
        .messages_to(CAROL)
        .iter()
        .all(|m| !buttons_of(m).contains(&"Approve".to_string())));

    // Eve clicks Approve on a forwarded copy of Bob's DM: she is not in that
    // DM, and is told there, through the click's response_url, which Slack
    // shows to her alone; she has no part in the ticket and learns nothing.
    let click = world.fake.click(EVE, &bob_dm, "Approve");
    world.ack(&click).await;
    let told = world
        .fake
        .wait_until(WAIT, |f| {
            f.ephemerals_to(EVE)
                .into_iter()
                .find(|m| text_of(m).contains("not yours to decide"))
        })
        .await
        .expect("eve is told where she clicked");
    assert_eq!(told["channel"], bob_dm["channel"], "{told}");
    assert_eq!(told["via"], "response_url", "{told}");
    // Carol clicks Approve on her own ticket (a forged payload).
    let click = world.fake.click(CAROL, &bob_dm, "Approve");
    world.ack(&click).await;
    world
        .fake
        .wait_until(WAIT, |f| {
            f.notices_to(CAROL)
                .into_iter()
                .find(|m| text_of(m).contains("your own request"))
        })
        .await
        .expect("carol is told");
    // Bob opens the approve modal; Eve submits a copy of it as herself: the
    // transaction's own check refuses her.
    let click = world.fake.click(BOB, &bob_dm, "Approve");
    world.ack(&click).await;
    let bobs_modal = world
        .fake
        .wait_until(WAIT, |f| f.last_modal(BOB))
        .await
        .expect("modal");
    let id = world.fake.submit(EVE, &bobs_modal, json!({}));
    let ack = world.ack(&id).await.expect("answered");
    assert!(text_of(&ack).contains("not an approver"), "{ack}");

    assert_eq!(world.ticket_status(&t).await, Status::Pending);
    let audit = world.audit_actions(&t).await;
    assert_eq!(
        audit
            .iter()
            .filter(|a| *a == "ticket.decision_refused")
            .count(),
        3,
        "{audit:?}"
    );
    world.stop().await;
}

#[tokio::test]
async fn a_refusal_slack_will_not_show_where_they_clicked_reaches_them_by_dm() {
    let world = World::start().await;
    let t = world
        .request(CAROL, "gh", &["write"], "Debug the flaky runner", "2h")
        .await;
    let bob_dm = world.dm_about(BOB, &t).await;
    // The answer waited out an outage: Slack no longer takes the click's
    // response_url, and nobody but Bob could see an ephemeral in his DM.
    world.fake.expire_response_urls();
    let click = world.fake.click(EVE, &bob_dm, "Approve");
    world.ack(&click).await;
    world
        .fake
        .wait_until(WAIT, |f| {
            f.messages_to(EVE)
                .into_iter()
                .find(|m| text_of(m).contains("not yours to decide"))
        })
        .await
        .expect("eve is told by DM");
    assert!(world.fake.ephemerals_to(EVE).is_empty());
    assert_eq!(world.ticket_status(&t).await, Status::Pending);
}

#[tokio::test]
async fn a_crafted_click_on_a_ticket_tells_an_outsider_nothing_about_it() {
    let world = World::start().await;
    let t = world
        .request(CAROL, "gh", &["write"], "Debug the flaky runner", "2h")
        .await;
    let bob_dm = world.dm_about(BOB, &t).await;
    world.decide(BOB, &t, "Approve", "ok", None).await;
    assert!(!world.ticket_status(&t).await.is_pending());
    // Eve, who has no part in it, replays Approve from a copy of Bob's DM.
    let click = world.fake.click(EVE, &bob_dm, "Approve");
    world.ack(&click).await;
    let told = world
        .fake
        .wait_until(WAIT, |f| {
            f.ephemerals_to(EVE)
                .into_iter()
                .find(|m| text_of(m).contains("no longer exists"))
        })
        .await
        .expect("eve is told");
    assert!(!text_of(&told).contains("approved"), "{told}");
    assert!(!text_of(&told).contains(BOB), "{told}");
    // Bob, who decided it, is told what happened to it.
    let click = world.fake.click(BOB, &bob_dm, "Approve");
    world.ack(&click).await;
    world
        .fake
        .wait_until(WAIT, |f| {
            f.ephemerals_to(BOB)
                .into_iter()
                .find(|m| text_of(m).contains("already"))
        })
        .await
        .expect("bob is told it is already decided");
    world.stop().await;
}

#[tokio::test]
async fn two_approvers_racing_make_exactly_one_approval() {
    let world = World::start().await;
    let t = world
        .request(ANN, "gh", &["write"], "Release the hotfix now", "1h")
        .await;
    // Both open the modal, then submit at the same moment.
    let mut modals = Vec::new();
    for user in [BOB, CAROL] {
        let dm = world.dm_about(user, &t).await;
        let click = world.fake.click(user, &dm, "Approve");
        world.ack(&click).await;
        modals.push((
            user,
            world
                .fake
                .wait_until(WAIT, |f| f.last_modal(user))
                .await
                .expect("modal"),
        ));
    }
    let ids: Vec<String> = modals
        .iter()
        .map(|(user, modal)| {
            world.fake.submit(
                user,
                modal,
                json!({ "comment": { "comment_input": payloads::plain_text_value("") } }),
            )
        })
        .collect();
    let mut cleared = 0;
    let mut already = 0;
    for id in &ids {
        let ack = world.ack(id).await.expect("answered");
        if ack["response_action"] == "clear" {
            cleared += 1;
        } else if text_of(&ack).contains("already approved") {
            already += 1;
        }
    }
    assert_eq!((cleared, already), (1, 1));
    assert_eq!(
        world
            .audit_actions(&t)
            .await
            .iter()
            .filter(|a| *a == "ticket.approve")
            .count(),
        1
    );
    world.stop().await;
}

#[tokio::test]
async fn a_requester_who_is_the_only_approver_falls_back_to_the_fallback_approvers() {
    let world = World::start().await;
    let t = world
        .request(BOB, "aws", &["console"], "Check the billing alarms", "1h")
        .await;
    world.dm_about(IVAN, &t).await;
    assert!(world
        .fake
        .messages_to(BOB)
        .iter()
        .all(|m| !buttons_of(m).contains(&"Approve".to_string())));
    world.decide(IVAN, &t, "Approve", "", None).await;
    let status = world.ticket_status(&t).await;
    assert!(
        matches!(status, Status::Approved | Status::Provisioning),
        "{status}"
    );
    world.stop().await;
}

#[tokio::test]
async fn auto_approved_roles_need_no_approver() {
    let world = World::start().await;
    let modal = world.open_request(ANN, "gh").await;
    assert!(has_block(&modal, "roles"));
    world
        .submit(ANN, roles_values(&["read"], "Browse the source code"))
        .await;
    world
        .submit(
            ANN,
            json!({ "duration": { "duration_input": payloads::plain_text_value("8h") } }),
        )
        .await;
    let ack = world.submit(ANN, json!({})).await.unwrap();
    assert!(text_of(&ack).contains("approved automatically"), "{ack}");
    let t = text_of(&ack)
        .split('*')
        .find(|s| s.starts_with("T-"))
        .unwrap()
        .to_string();
    let status = world.ticket_status(&t).await;
    assert!(
        matches!(status, Status::Approved | Status::Provisioning),
        "{status}"
    );
    assert!(world.fake.messages_to(BOB).is_empty() && world.fake.messages_to(CAROL).is_empty());
    assert!(world
        .audit_actions(&t)
        .await
        .contains(&"ticket.auto_approve".to_string()));
    world.stop().await;
}

#[tokio::test]
async fn a_user_without_an_email_is_told_why_they_cannot_request() {
    let world = World::start().await;
    world.fake.add_user("UNOMAIL", "", "No Mail");
    let modal = world.open_request("UNOMAIL", "gh").await;
    assert!(text_of(&modal).contains("no email"), "{modal}");
    assert!(!has_block(&modal, "roles"));
    world.stop().await;
}

#[tokio::test]
async fn nudge_respects_the_cooldown_and_cancel_updates_every_copy() {
    let world = World::start().await;
    let t = world
        .request(ANN, "gh", &["write"], "Fix the release pipeline", "4h")
        .await;
    world.dm_about(BOB, &t).await;
    let open = world.fake.open_home(ANN);
    world.ack(&open).await;
    let home = world
        .fake
        .wait_until(WAIT, |f| {
            f.home_view(ANN).filter(|h| text_of(h).contains(&t))
        })
        .await
        .expect("home shows the request");
    let bob_before = world.fake.messages_to(BOB).len();
    let nudge = world.fake.click(ANN, &home, "Nudge");
    world.ack(&nudge).await;
    world
        .fake
        .wait_until(WAIT, |f| {
            (f.messages_to(BOB).len() > bob_before).then_some(())
        })
        .await
        .expect("a new reminder DM, so Slack notifies");
    let again = world.fake.click(ANN, &home, "Nudge");
    world.ack(&again).await;
    world
        .fake
        .wait_until(WAIT, |f| {
            f.messages_to(ANN)
                .into_iter()
                .find(|m| text_of(m).contains("nudge again"))
        })
        .await
        .expect("second nudge refused with when");

    let cancel = world.fake.click(ANN, &home, "Cancel");
    world.ack(&cancel).await;
    world
        .fake
        .wait_until(WAIT, |f| {
            f.messages_to(ANN)
                .into_iter()
                .find(|m| text_of(m).contains("cancelled"))
        })
        .await
        .expect("requester told");
    assert_eq!(world.ticket_status(&t).await, Status::Cancelled);
    for user in [BOB, CAROL] {
        world
            .fake
            .wait_until(WAIT, |f| {
                let copies: Vec<Value> = f
                    .messages_to(user)
                    .into_iter()
                    .filter(|m| text_of(m).contains(&t))
                    .collect();
                (!copies.is_empty() && copies.iter().all(|m| buttons_of(m).is_empty()))
                    .then_some(())
            })
            .await
            .unwrap_or_else(|| panic!("{user}'s copies still have buttons"));
    }
    world.stop().await;
}

#[tokio::test]
async fn app_home_shows_what_waits_for_an_approver_and_a_requesters_requests() {
    let world = World::start().await;
    let t = world
        .request(ANN, "gh", &["write"], "Fix the release pipeline", "4h")
        .await;
    let open = world.fake.open_home(BOB);
    world.ack(&open).await;
    let home = world
        .fake
        .wait_until(WAIT, |f| {
            f.home_view(BOB).filter(|h| text_of(h).contains(&t))
        })
        .await
        .expect("approver's Home lists the ticket");
    // Ann looks at her Home tab too, so changes are pushed to it.
    let open = world.fake.open_home(ANN);
    world.ack(&open).await;
    world
        .fake
        .wait_until(WAIT, |f| {
            f.home_view(ANN)
                .filter(|h| buttons_of(h).contains(&"Nudge".to_string()))
        })
        .await
        .expect("requester's Home shows the open request");
    assert!(text_of(&home).contains("Waiting for your approval"));
    assert!(buttons_of(&home).contains(&"Approve".to_string()));

    // Approving from the Home tab works like from the DM.
    let click = world.fake.click(BOB, &home, "Approve");
    world.ack(&click).await;
    let modal = world
        .fake
        .wait_until(WAIT, |f| f.last_modal(BOB))
        .await
        .expect("modal");
    let id = world.fake.submit(BOB, &modal, json!({}));
    assert_eq!(
        world.ack(&id).await.map(|a| a["response_action"].clone()),
        Some("clear".into())
    );

    let home = world
        .fake
        .wait_until(WAIT, |f| {
            f.home_view(ANN)
                .filter(|h| !buttons_of(h).contains(&"Nudge".to_string()))
        })
        .await
        .expect("requester's Home refreshed after the decision: no longer an open request");
    assert!(text_of(&home).contains("Your active access") && text_of(&home).contains(&t));
    world.stop().await;
}

/// A Home tab nobody opened is not rendered on every change: Slack renders
/// it afresh through `app_home_opened` when its owner looks.
#[tokio::test]
async fn changes_publish_no_home_tab_its_owner_has_not_opened() {
    let world = World::start().await;
    let t = world
        .request(ANN, "gh", &["write"], "Fix the release pipeline", "4h")
        .await;
    world.decide(BOB, &t, "Approve", "ok", None).await;
    world
        .fake
        .wait_until(WAIT, |f| {
            f.messages_to(ANN)
                .into_iter()
                .find(|m| text_of(m).contains("approved"))
        })
        .await
        .expect("Ann is told by DM");
    assert!(
        world.fake.calls_to("views.publish").is_empty(),
        "published a Home tab nobody opened"
    );
    world.stop().await;
}

#[tokio::test]
async fn a_restart_mid_flow_keeps_the_ticket_and_the_dm_still_works() {
    let mut world = World::start().await;
    let t = world
        .request(
            ANN,
            "github",
            &["maintainer"],
            "Rotate the deploy keys",
            "6h",
        )
        .await;
    world
        .decide(DANA, &t, "Approve", "stage one ok", None)
        .await;
    world.dm_about(BOB, &t).await;
    world.restart().await;
    assert_eq!(world.ticket_status(&t).await, Status::Pending);
    world.decide(BOB, &t, "Approve", "", None).await;
    world.decide(CAROL, &t, "Approve", "", None).await;
    let status = world.ticket_status(&t).await;
    assert!(
        matches!(status, Status::Approved | Status::Provisioning),
        "{status}"
    );
    let audit = world.audit_actions(&t).await;
    assert_eq!(
        audit.iter().filter(|a| *a == "ticket.approve").count(),
        3,
        "{audit:?}"
    );
    world.stop().await;
}

#[tokio::test]
async fn the_requester_may_choose_whom_to_ask_when_a_stage_needs_fewer_than_it_lists() {
    let world = World::start().await;
    world.open_request(ANN, "gh").await;
    world
        .submit(ANN, roles_values(&["write"], "Fix the release pipeline"))
        .await;
    let ack = world
        .submit(
            ANN,
            json!({ "duration": { "duration_input": payloads::plain_text_value("4h") } }),
        )
        .await
        .unwrap();
    let step = &ack["view"];
    assert!(
        has_block(step, "approvers_0"),
        "1 of 2 eng-leads: a choice is offered: {step}"
    );
    assert!(text_of(step).contains("<@UBOB>") && text_of(step).contains("<@UCAROL>"));

    let none = json!({ "approvers_0": { "approvers_select": { "type": "multi_static_select", "selected_options": [] } } });
    let ack = world.submit(ANN, none).await.unwrap();
    assert_eq!(ack["response_action"], "errors", "{ack}");

    let carol = json!({ "approvers_0": { "approvers_select": { "type": "multi_static_select", "selected_options": [
        { "text": { "type": "plain_text", "text": "Carol" }, "value": "carol@example.com" } ] } } });
    let ack = world.submit(ANN, carol).await.unwrap();
    let t = text_of(&ack)
        .split('*')
        .find(|s| s.starts_with("T-"))
        .unwrap()
        .to_string();
    world.dm_about(CAROL, &t).await;
    assert!(
        world.fake.messages_to(BOB).is_empty(),
        "only the chosen approver is asked"
    );
    world.stop().await;
}

/// A world whose config the test rewrites and reloads.
async fn reloadable_world() -> (World, Arc<Notify>) {
    let trigger = Arc::new(Notify::new());
    let hook = trigger.clone();
    let options: Option<AdjustOptions> = Some(Box::new(move |o: &mut accessd::RunOptions| {
        o.reload = Some(hook.clone());
    }));
    (World::start_adjusted(CATALOG, options).await, trigger)
}

fn reloads_applied() -> u64 {
    let text = accessd::metrics::global().render(0, None, chrono::Utc::now());
    text.lines()
        .find_map(|l| l.strip_prefix("accessd_config_reloads_total{result=\"applied\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Writes `catalog` as the world's config and waits until a reload applied.
async fn reload_with(world: &World, trigger: &Notify, catalog: &str) {
    let before = reloads_applied();
    config_listening(&world.fake, world.dir.path(), 2, "", catalog);
    trigger.notify_one();
    let deadline = std::time::Instant::now() + WAIT;
    while reloads_applied() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "the reload was not applied"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Bob clicks Approve on his DM about `t`: refused and told `why`; the ticket
/// is closed as cancelled, Ann is told, nothing is provisioned.
async fn approval_is_refused_and_the_ticket_closed(world: &World, t: &str, why: &str) {
    let bob_dm = world.dm_about(BOB, t).await;
    let click = world.fake.click(BOB, &bob_dm, "Approve");
    world.ack(&click).await;
    world
        .fake
        .wait_until(WAIT, |f| {
            f.ephemerals_to(BOB)
                .into_iter()
                .find(|m| text_of(m).contains(why))
        })
        .await
        .unwrap_or_else(|| panic!("bob is told {why:?}: {:?}", world.fake.ephemerals_to(BOB)));
    assert_eq!(world.ticket_status(t).await, Status::Cancelled);
    world
        .fake
        .wait_until(WAIT, |f| {
            f.messages_to(ANN)
                .into_iter()
                .find(|m| text_of(m).contains(t) && text_of(m).contains("Nothing was granted"))
        })
        .await
        .expect("ann is told her request was closed");
    let audit = world.audit_actions(t).await;
    assert!(
        audit.contains(&"ticket.decision_refused".to_string())
            && audit.contains(&"ticket.cancelled_by_policy".to_string())
            && !audit.contains(&"ticket.approve".to_string()),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_cap_lowered_mid_form_sends_the_requester_back_to_the_duration_step() {
    let (world, trigger) = reloadable_world().await;
    let modal = world.open_request(ANN, "gh").await;
    assert!(has_block(&modal, "roles"));
    world
        .submit(ANN, roles_values(&["write"], "Fix the release pipeline"))
        .await
        .expect("roles step answered");
    let ack = world
        .submit(
            ANN,
            json!({ "duration": { "duration_input": payloads::plain_text_value("3d") } }),
        )
        .await
        .expect("duration step answered");
    assert_eq!(ack["response_action"], "update", "{ack}");
    // While Ann looks at the approvers step, GitHub's cap drops to 1 day.
    let lowered = CATALOG.replace("max_duration = \"7d\"", "max_duration = \"1d\"");
    assert_ne!(lowered, CATALOG);
    reload_with(&world, &trigger, &lowered).await;
    let ack = world.submit(ANN, json!({})).await.expect("answered");
    assert_eq!(ack["response_action"], "update", "{ack}");
    assert!(has_block(&ack["view"], "duration"), "{ack}");
    assert!(text_of(&ack["view"]).contains("now 1d"), "{ack}");
    assert!(
        !text_of(&ack).contains("T-"),
        "no ticket longer than the cap: {ack}"
    );
    // She chooses again and files within the new cap.
    let ack = world
        .submit(
            ANN,
            json!({ "duration": { "duration_input": payloads::plain_text_value("1d") } }),
        )
        .await
        .expect("duration step answered");
    assert_eq!(ack["response_action"], "update", "{ack}");
    let ack = world.submit(ANN, json!({})).await.expect("submitted");
    assert!(text_of(&ack["view"]).contains("T-"), "{ack}");
    world.stop().await;
}

#[tokio::test]
async fn a_pending_ticket_is_refused_once_its_requester_is_denied() {
    let (world, trigger) = reloadable_world().await;
    let t = world
        .request(ANN, "gh", &["write"], "Fix the release pipeline", "4h")
        .await;
    let denied = CATALOG.replace(
        "contractors = [\"zed@contractor.example\"]",
        "contractors = [\"zed@contractor.example\", \"ann@example.com\"]",
    );
    assert_ne!(denied, CATALOG);
    reload_with(&world, &trigger, &denied).await;
    approval_is_refused_and_the_ticket_closed(&world, &t, "may no longer request GitHub").await;
    world.stop().await;
}

#[tokio::test]
async fn a_pending_ticket_is_refused_once_its_role_is_gone() {
    let (world, trigger) = reloadable_world().await;
    let t = world
        .request(ANN, "gh", &["write"], "Fix the release pipeline", "4h")
        .await;
    let without_write = CATALOG.replace(
        "  [[apps.roles]]\n  id = \"write\"\n  name = \"Write\"\n",
        "",
    );
    assert_ne!(without_write, CATALOG);
    reload_with(&world, &trigger, &without_write).await;
    approval_is_refused_and_the_ticket_closed(&world, &t, "role write of GitHub is no longer")
        .await;
    world.stop().await;
}

/// Bob may approve either stage of `db`, but only one of them.
const TWO_STAGES: &str = r#"
[requests]
max_duration = "30d"
fallback_approvers = ["group:it"]
admins = ["secops@example.com"]

[groups]
it = ["ivan@example.com"]

[[apps]]
id = "db"
name = "Database"
stages = [
  { approvers = ["bob@example.com", "dana@example.com"], required = 1 },
  { approvers = ["bob@example.com", "carol@example.com"], required = 1 },
]

  [[apps.roles]]
  id = "read"
  name = "Read"
"#;

async fn duration_of(world: &World, t: &str) -> i64 {
    let id = accessd::domain::ticket::parse_ticket_ref(t).expect("a ticket ref");
    let store = accessd::store::Store::open(&world.dir.path().join("accessd.db")).unwrap();
    let ticket = store.ticket(id).await.unwrap().expect("ticket");
    store.close().await;
    ticket.duration_secs
}

#[tokio::test]
async fn one_person_decides_one_stage_and_the_shortest_duration_stands() {
    let world = World::start_with(TWO_STAGES).await;
    let t = world
        .request(ANN, "db", &["read"], "Investigate the slow queries", "4h")
        .await;
    // Bob approves stage 1 and shortens it to 1h.
    let ack = world
        .decide(BOB, &t, "Approve", "stage one", Some("1h"))
        .await;
    assert_eq!(
        ack.map(|a| a["response_action"].clone()),
        Some("clear".into())
    );
    assert_eq!(duration_of(&world, &t).await, 3600);
    // Stage 2 asks Bob again; his click is refused: someone else must decide.
    let stage_two = world
        .fake
        .wait_until(WAIT, |f| {
            f.messages_to(BOB).into_iter().find(|m| {
                m.to_string().contains(&t) && buttons_of(m).contains(&"Approve".to_string())
            })
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "bob is asked for stage 2: {:?}",
                world.fake.messages_to(BOB)
            )
        });
    let click = world.fake.click(BOB, &stage_two, "Approve");
    world.ack(&click).await;
    world
        .fake
        .wait_until(WAIT, |f| {
            f.ephemerals_to(BOB)
                .into_iter()
                .find(|m| text_of(m).contains("someone else must decide stage 2"))
        })
        .await
        .expect("bob is told");
    assert_eq!(world.ticket_status(&t).await, Status::Pending);
    // Carol approves stage 2 asking for 3h: the shorter 1h stands.
    world
        .decide(CAROL, &t, "Approve", "stage two", Some("3h"))
        .await;
    let status = world.ticket_status(&t).await;
    assert!(
        matches!(
            status,
            Status::Approved | Status::Provisioning | Status::Active
        ),
        "{status}"
    );
    assert_eq!(duration_of(&world, &t).await, 3600);
    world.stop().await;
}

/// What a hostile person types: a disguised link and a ping for everyone.
const HOSTILE: &str = "<https://evil.example|Click to verify> <!channel> & co";

/// No live link or broadcast survives in `surface`; the text is still shown.
fn assert_inert(surface: &Value, what: &str) {
    let text = surface.to_string();
    assert!(
        !text.contains("<https://evil") && !text.contains("<!channel>"),
        "{what} renders live markup: {text}"
    );
    assert!(
        text.contains("&lt;https://evil.example"),
        "{what} lost the text: {text}"
    );
}

#[tokio::test]
async fn typed_text_is_inert_on_every_surface_it_reaches() {
    let world = World::start().await;
    let reason = format!("Need it: {HOSTILE}");
    let t = world.request(ANN, "gh", &["write"], &reason, "4h").await;
    assert_inert(&world.dm_about(BOB, &t).await, "the approver's DM");
    let open = world.fake.open_home(BOB);
    world.ack(&open).await;
    let home = world
        .fake
        .wait_until(WAIT, |f| {
            f.home_view(BOB).filter(|h| text_of(h).contains(&t))
        })
        .await
        .expect("approver's Home lists the ticket");
    assert_inert(&home, "the approver's Home tab");
    // Bob rejects with a hostile comment: Ann's DM and every copy stay inert.
    world.decide(BOB, &t, "Reject", HOSTILE, None).await;
    let told = world
        .fake
        .wait_until(WAIT, |f| {
            f.messages_to(ANN)
                .into_iter()
                .find(|m| text_of(m).contains("Rejected"))
        })
        .await
        .expect("ann is told");
    assert_inert(&told, "the requester's DM");
    let copy = world
        .fake
        .wait_until(WAIT, |f| {
            f.messages_to(CAROL)
                .into_iter()
                .find(|m| text_of(m).contains(&t) && text_of(m).contains("Rejected"))
        })
        .await
        .expect("carol's copy updated");
    assert_inert(&copy, "another approver's copy");
    // `/access <typed text>` that matches no app is echoed inert too.
    let modal = world.open_request(ANN, HOSTILE).await;
    assert!(!modal.to_string().contains("<!channel>"), "{modal}");
    world.stop().await;
}

#[tokio::test]
async fn guests_bots_and_other_teams_cannot_request_unless_allowed() {
    let world = World::start_with(CATALOG).await;
    world
        .fake
        .update_user(EVE, |u| u["is_restricted"] = true.into());
    world
        .fake
        .update_user(CAROL, |u| u["team_id"] = "T0SOMEONEELSE".into());
    world
        .fake
        .add_user("U0HELPERBOT", "helper@example.com", "Helper");
    world
        .fake
        .update_user("U0HELPERBOT", |u| u["is_bot"] = true.into());
    for (user, says) in [
        (EVE, "a guest account"),
        (CAROL, "another Slack team"),
        ("U0HELPERBOT", "a bot"),
    ] {
        let modal = world.open_request(user, "github").await;
        let text = modal.to_string();
        assert!(
            text.contains(says) && !has_block(&modal, "roles"),
            "{user}: {text}"
        );
    }
    // A full member is still offered the form.
    let modal = world.open_request(ANN, "github").await;
    assert!(has_block(&modal, "roles"), "{modal}");
    let store = accessd::store::Store::open(&world.dir.path().join("accessd.db")).unwrap();
    let refused: Vec<String> = store
        .audit_rows(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == "request.refused_standing")
        .map(|r| {
            r.detail["standing"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    store.close().await;
    assert_eq!(refused, ["guest", "external", "bot"]);
    world.stop().await;

    // `allow_guests = true` lets the guest in.
    let allowing = with_requests("allow_guests = true");
    let world = World::start_with(&allowing).await;
    world
        .fake
        .update_user(EVE, |u| u["is_restricted"] = true.into());
    let modal = world.open_request(EVE, "github").await;
    assert!(has_block(&modal, "roles"), "{modal}");
    world.stop().await;
}

/// The audit actions of every row, in order.
async fn all_audit_actions(world: &World) -> Vec<String> {
    let store = accessd::store::Store::open(&world.dir.path().join("accessd.db")).unwrap();
    let rows = store.audit_rows(None).await.unwrap();
    store.close().await;
    rows.into_iter().map(|r| r.action).collect()
}

#[tokio::test]
async fn a_person_past_the_hourly_request_limit_is_refused_and_audited_once() {
    let limited = with_requests("requests_per_hour = 2");
    let world = World::start_with(&limited).await;
    world
        .request(ANN, "gh", &["write"], "Fix the build", "2h")
        .await;
    world
        .request(ANN, "aws", &["console"], "Read the logs", "1h")
        .await;
    for _ in 0..2 {
        let modal = world.open_request(ANN, "aws").await;
        let text = modal.to_string();
        assert!(
            text.contains("filed 2 requests within the last hour") && !has_block(&modal, "roles"),
            "{text}"
        );
    }
    // Someone else is not held back.
    let modal = world.open_request(CAROL, "aws").await;
    assert!(has_block(&modal, "roles"), "{modal}");
    let limited: Vec<String> = all_audit_actions(&world)
        .await
        .into_iter()
        .filter(|a| a == "request.limited")
        .collect();
    assert_eq!(limited.len(), 1, "audited once, not per try");
    world.stop().await;
}

#[tokio::test]
async fn refused_clicks_past_the_limit_are_answered_once_then_dropped() {
    let limited = with_requests("refused_clicks_per_minute = 3");
    let world = World::start_with(&limited).await;
    let t = world
        .request(CAROL, "gh", &["write"], "Debug the flaky runner", "2h")
        .await;
    let bob_dm = world.dm_about(BOB, &t).await;
    // Eve scripts Approve on a copy of Bob's DM.
    for _ in 0..8 {
        let click = world.fake.click(EVE, &bob_dm, "Approve");
        world.ack(&click).await;
    }
    let told = world
        .fake
        .wait_until(WAIT, |f| {
            let told = f.ephemerals_to(EVE);
            told.iter()
                .any(|m| text_of(m).contains("more than 3 refused clicks"))
                .then_some(told)
        })
        .await
        .expect("eve is told she hit the limit");
    // Later clicks are still acked but neither answered nor audited.
    let click = world.fake.click(EVE, &bob_dm, "Approve");
    world.ack(&click).await;
    assert_eq!(told.len(), 4, "{told:?}");
    let actions = world.audit_actions(&t).await;
    let refused = actions
        .iter()
        .filter(|a| *a == "ticket.decision_refused")
        .count();
    assert_eq!(refused, 3, "{actions:?}");
    let limited = all_audit_actions(&world)
        .await
        .into_iter()
        .filter(|a| a == "click.limited")
        .count();
    assert_eq!(limited, 1);
    // Bob, the approver, is not held back by Eve's flood.
    world.decide(BOB, &t, "Approve", "ok", None).await;
    assert!(!world.ticket_status(&t).await.is_pending());
    // By now any answer to Eve's last click would have arrived.
    let after = world.fake.ephemerals_to(EVE);
    assert_eq!(after.len(), 4, "{after:?}");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_typed_in_one_line_is_filed_at_once_or_opens_the_form_with_what_it_said() {
    let world = World::start().await;
    // Everything parses: filed, answered ephemerally with its reference, and
    // the approvers are asked as from the form.
    let id = world
        .fake
        .run_command(ANN, "/access", "gh write 4h because the deploy is stuck");
    let answer = world.ack(&id).await.expect("answered in the ack");
    assert_eq!(answer["response_type"], "ephemeral", "{answer}");
    let text = text_of(&answer);
    let t = text
        .split('*')
        .find(|s| s.starts_with("T-"))
        .unwrap_or_else(|| panic!("no ticket in {text}"))
        .to_string();
    let dm = world.dm_about(BOB, &t).await;
    assert!(text_of(&dm).contains("because the deploy is stuck"), "{dm}");
    assert_eq!(world.ticket_status(&t).await, Status::Pending);
    assert!(
        world.fake.last_modal(ANN).is_none(),
        "no form for a whole line"
    );

    // A duration past the role's cap: the form opens at the roles step with
    // the role and the rest of the line as the reason, nothing filed.
    let id = world.fake.run_command(
        CAROL,
        "/access",
        "github maintainer 3d to rotate the deploy keys",
    );
    assert_eq!(world.ack(&id).await, None, "the form opens instead");
    let modal = world
        .fake
        .wait_until(WAIT, |f| f.last_modal(CAROL))
        .await
        .expect("the form");
    assert!(has_block(&modal, "roles"), "{modal}");
    assert!(
        text_of(&modal).contains("3d to rotate the deploy keys"),
        "{modal}"
    );

    // A contractor is refused in the answer, as the form would refuse him.
    let id = world
        .fake
        .run_command(ZED, "/access", "gh write 4h because the deploy is stuck");
    let answer = world.ack(&id).await.expect("answered in the ack");
    assert!(text_of(&answer).contains("may not request"), "{answer}");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_is_checked_inline_and_shown_as_a_link() {
    let world = World::start_with(&with_requests(
        r#"reference = { label = "Ticket", required = true, pattern = "^[A-Z]+-[0-9]+$", link = "https://jira.example.com/browse/{}" }"#,
    ))
    .await;
    let modal = world.open_request(ANN, "gh").await;
    assert!(has_block(&modal, "reference"), "{modal}");
    assert!(text_of(&modal).contains("Ticket"), "{modal}");
    let with = |reference: &str| {
        let mut values = roles_values(&["write"], "Debug the flaky runner");
        values["reference"] = json!({ "reference_input": payloads::plain_text_value(reference) });
        values
    };
    let missing = world
        .submit(ANN, roles_values(&["write"], "Debug the flaky runner"))
        .await
        .unwrap();
    assert_eq!(missing["response_action"], "errors", "{missing}");
    assert!(
        text_of(&missing["errors"]["reference"]).contains("Give the Ticket"),
        "{missing}"
    );
    let wrong = world.submit(ANN, with("ops 12")).await.unwrap();
    assert!(
        text_of(&wrong["errors"]["reference"]).contains("^[A-Z]+-[0-9]+$"),
        "{wrong}"
    );

    let ack = world.submit(ANN, with("OPS-12")).await.unwrap();
    assert_eq!(ack["response_action"], "update", "{ack}");
    world
        .submit(
            ANN,
            json!({ "duration": { "duration_input": payloads::plain_text_value("2h") } }),
        )
        .await
        .unwrap();
    let done = world.submit(ANN, json!({})).await.unwrap();
    let t = text_of(&done)
        .split('*')
        .find(|s| s.starts_with("T-"))
        .unwrap()
        .to_string();
    let dm = world.dm_about(BOB, &t).await;
    let link = "*Ticket* <https://jira.example.com/browse/OPS-12|OPS-12>";
    assert!(text_of(&dm).contains(link), "{dm}");
    // The requester sees it too: in their DM and on their Home tab.
    let mine = world.dm_about(ANN, &t).await;
    assert!(text_of(&mine).contains(link), "{mine}");
    world.ack(&world.fake.open_home(ANN)).await;
    let home = world
        .fake
        .wait_until(WAIT, |f| {
            f.home_view(ANN).filter(|h| text_of(h).contains(&t))
        })
        .await
        .expect("home shows the request");
    assert!(text_of(&home).contains(link), "{home}");
    // A required reference cannot come in one line: the form opens.
    let id = world
        .fake
        .run_command(CAROL, "/access", "gh write 4h because the deploy is stuck");
    assert_eq!(world.ack(&id).await, None);
    world.stop().await;
}

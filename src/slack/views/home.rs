//! The App Home tab: the entry point, what waits for the user's decision, the
//! user's open requests and active access — each list paged to stay within
//! Slack's 100-block limit.

use serde_json::{json, Value};

use super::grant::access_buttons;
use super::text::{
    actions, button, context, divider, escape, fmt_duration, fmt_time, header, mention, section,
    styled_button,
};
use super::ticket::{describe, reference_text};
use crate::config::Config;
use crate::domain::ticket::Status;
use crate::slack::ids;
use crate::store::{ReviewerProgress, Ticket};

/// Items per section and page: 3 sections × (10 × 2 blocks + 3) stays under 100.
pub const PAGE: usize = 10;

/// Which page of each list the user is looking at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pages {
    pub waiting: usize,
    pub requests: usize,
    pub access: usize,
}

pub struct HomeData<'a> {
    pub config: &'a Config,
    pub waiting: &'a [Ticket],
    pub requests: &'a [Ticket],
    pub access: &'a [Ticket],
    /// The user's share of open review campaigns.
    pub reviews: &'a [ReviewerProgress],
    pub pages: Pages,
}

/// Review campaigns listed on the Home tab; more are summed up in one line.
const REVIEWS_SHOWN: usize = 5;

fn page(items: &[Ticket], page: usize) -> (&[Ticket], usize) {
    let pages = items.len().div_ceil(PAGE).max(1);
    let page = page.min(pages - 1);
    let start = page * PAGE;
    (&items[start..items.len().min(start + PAGE)], page)
}

/// "Showing 11–20 of 37" with Previous / Next buttons, when a list has more than a page.
fn pager(section_key: &str, total: usize, page: usize, pages: Pages, blocks: &mut Vec<Value>) {
    if total <= PAGE {
        return;
    }
    let start = page * PAGE + 1;
    let end = total.min((page + 1) * PAGE);
    blocks.push(context(&format!("Showing {start}–{end} of {total}")));
    let with = |p: usize| {
        let mut next = pages;
        match section_key {
            "waiting" => next.waiting = p,
            "requests" => next.requests = p,
            _ => next.access = p,
        }
        format!("{}:{}:{}", next.waiting, next.requests, next.access)
    };
    let mut buttons = Vec::new();
    if page > 0 {
        buttons.push(button("Previous", ids::HOME_PAGE, &with(page - 1)));
    }
    if end < total {
        buttons.push(button("Next", ids::HOME_PAGE, &with(page + 1)));
    }
    blocks.push(actions(&format!("pager_{section_key}"), buttons));
}

pub fn parse_pages(value: &str) -> Pages {
    let mut parts = value.split(':').map(|p| p.parse::<usize>().unwrap_or(0));
    Pages {
        waiting: parts.next().unwrap_or(0),
        requests: parts.next().unwrap_or(0),
        access: parts.next().unwrap_or(0),
    }
}

pub fn home_view(data: &HomeData<'_>) -> Value {
    let config = data.config;
    let mut blocks = vec![
        header("Access"),
        section("Ask for access to an app; approvers decide right here in Slack."),
        actions(
            "home_actions",
            vec![styled_button(
                "Request access",
                ids::REQUEST_ACCESS,
                "home",
                "primary",
            )],
        ),
        divider(),
    ];
    let open_reviews: Vec<&ReviewerProgress> = data
        .reviews
        .iter()
        .filter(|r| r.decided < r.total)
        .collect();
    if !open_reviews.is_empty() {
        blocks.push(header("Reviews waiting for you"));
        for r in open_reviews.iter().take(REVIEWS_SHOWN) {
            blocks.push(section(&format!(
                "*{}* ({}) · {} of {} decided · due {}",
                escape(&r.campaign.name, 200),
                r.campaign.reference(),
                r.decided,
                r.total,
                fmt_time(r.campaign.due_at)
            )));
        }
        let more = open_reviews.len().saturating_sub(REVIEWS_SHOWN);
        let hint = if more > 0 {
            format!("…and {more} more. Your items are in your DMs with accessd.")
        } else {
            "Your items are in your DMs with accessd.".to_string()
        };
        blocks.push(context(&hint));
        blocks.push(divider());
    }
    blocks.push(header("Waiting for your approval"));
    let (items, current) = page(data.waiting, data.pages.waiting);
    if items.is_empty() {
        blocks.push(context("Nothing is waiting for you."));
    }
    for ticket in items {
        let (app, roles) = describe(config, ticket);
        blocks.push(section(&format!(
            "*{}* · {} wants *{app}* ({roles}) · stage {} of {}\n{}{}",
            ticket.reference(),
            mention(&ticket.requester_slack_id),
            ticket.stage + 1,
            ticket.plan.stages.len().max(1),
            escape(&ticket.reason, 200),
            reference_text(config, ticket)
                .map(|r| format!(" · {r}"))
                .unwrap_or_default()
        )));
        let value = ticket.id.to_string();
        blocks.push(actions(
            &format!("waiting_{}", ticket.id),
            vec![
                styled_button("Approve", ids::APPROVE, &value, "primary"),
                styled_button("Reject", ids::REJECT, &value, "danger"),
            ],
        ));
    }
    pager(
        "waiting",
        data.waiting.len(),
        current,
        data.pages,
        &mut blocks,
    );

    blocks.push(divider());
    blocks.push(header("Your open requests"));
    let (items, current) = page(data.requests, data.pages.requests);
    if items.is_empty() {
        blocks.push(context("You have no open requests."));
    }
    for ticket in items {
        let (app, roles) = describe(config, ticket);
        let stage = ticket.plan.stages.get(ticket.stage);
        let approvers = stage.map(|s| s.approvers.join(", ")).unwrap_or_default();
        let got = ticket.approvals_in_stage(ticket.stage).count();
        let required = stage.map_or(1, |s| s.required);
        blocks.push(section(&format!(
            "*{}* · *{app}* ({roles}) · {} · stage {} of {}, {got} of {required} approvals\nApprovers: {approvers} · requested {}{}",
            ticket.reference(),
            ticket.status,
            ticket.stage + 1,
            ticket.plan.stages.len().max(1),
            fmt_time(ticket.created_at),
            reference_text(config, ticket)
                .map(|r| format!(" · {r}"))
                .unwrap_or_default()
        )));
        let value = ticket.id.to_string();
        blocks.push(actions(
            &format!("request_{}", ticket.id),
            vec![
                button("Nudge", ids::NUDGE, &value),
                styled_button("Cancel", ids::CANCEL, &value, "danger"),
            ],
        ));
    }
    pager(
        "requests",
        data.requests.len(),
        current,
        data.pages,
        &mut blocks,
    );

    blocks.push(divider());
    blocks.push(header("Your active access"));
    let (items, current) = page(data.access, data.pages.access);
    if items.is_empty() {
        blocks.push(context("No active access granted through accessd."));
    }
    for ticket in items {
        let (app, roles) = describe(config, ticket);
        let when = match ticket.expires_at {
            Some(at) if ticket.status == Status::Active => format!("until {}", fmt_time(at)),
            _ => format!(
                "{} for {}",
                ticket.status,
                fmt_duration(std::time::Duration::from_secs(
                    u64::try_from(ticket.duration_secs).unwrap_or(0)
                ))
            ),
        };
        blocks.push(section(&format!(
            "*{app}* ({roles}) · {} · {when}",
            ticket.reference(),
        )));
        if ticket.status == Status::Active {
            blocks.push(access_buttons(ticket));
        }
    }
    pager(
        "access",
        data.access.len(),
        current,
        data.pages,
        &mut blocks,
    );
    json!({ "type": "home", "blocks": blocks })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::domain::policy::{Plan, StagePlan};
    use crate::domain::ticket::{Kind, Status};

    fn ticket(id: i64) -> Ticket {
        Ticket {
            id,
            requester_slack_id: "UANN".into(),
            requester_email: "ann@example.com".into(),
            app_id: "github".into(),
            roles: vec![],
            reason: "x".repeat(500),
            duration_secs: 3600,
            status: Status::Pending,
            stage: 0,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            decided_at: None,
            last_nudge_at: None,
            kind: Kind::Request,
            parent: None,
            expires_at: None,
            failure: None,
            extends_until: None,
            reference: None,
            plan: Plan {
                stages: vec![StagePlan {
                    approvers: vec!["bob@example.com".into()],
                    required: 1,
                    fallback: false,
                    source: "bob".into(),
                }],
                auto_approve: false,
                max_duration_secs: 3600,
            },
            approvals: vec![],
            approver_messages: vec![],
            task_messages: vec![],
        }
    }

    #[test]
    fn long_lists_are_paged_within_slacks_block_limit() {
        let config = config::parse("[slack]\n", std::path::Path::new("/tmp/accessd.toml")).unwrap();
        let many: Vec<Ticket> = (1..=37).map(ticket).collect();
        for pages in [
            Pages::default(),
            Pages {
                waiting: 3,
                requests: 1,
                access: 2,
            },
        ] {
            let view = home_view(&HomeData {
                reviews: &[],
                config: &config,
                waiting: &many,
                requests: &many,
                access: &many,
                pages,
            });
            let blocks = view["blocks"].as_array().unwrap();
            assert!(blocks.len() <= 100, "{} blocks", blocks.len());
            for block in blocks.iter().filter(|b| b["type"] == "section") {
                assert!(
                    block["text"]["text"]
                        .as_str()
                        .unwrap_or_default()
                        .chars()
                        .count()
                        <= 3000
                );
            }
        }
        let first = home_view(&HomeData {
            reviews: &[],
            config: &config,
            waiting: &many,
            requests: &[],
            access: &[],
            pages: Pages::default(),
        });
        let text = first.to_string();
        assert!(
            text.contains("Showing 1–10 of 37")
                && text.contains("*T-10*")
                && !text.contains("*T-11*")
        );
        let last = home_view(&HomeData {
            reviews: &[],
            config: &config,
            waiting: &many,
            requests: &[],
            access: &[],
            pages: Pages {
                waiting: 3,
                ..Pages::default()
            },
        });
        assert!(last.to_string().contains("Showing 31–37 of 37"));
        assert_eq!(
            parse_pages("3:1:2"),
            Pages {
                waiting: 3,
                requests: 1,
                access: 2
            }
        );
    }
}

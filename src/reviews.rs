//! Access review campaigns: what one covers (an item per account ×
//! entitlement, or per account, from the sources' last good snapshots),
//! who reviews each item, and the timers a campaign sets. Shared by
//! `accessd reviews create`, scheduled campaigns and the daemon.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::config::{Config, ReviewNotifications, Reviewer};
use crate::domain::snapshot::Account;
use crate::domain::snapshot::AccountStatus;
use crate::store::reviews::campaign_ref;
use crate::store::{
    AuditEvent, Campaign, Effects, JobChange, NewCampaign, NewReviewItem, ReviewItem, Store,
    StoreError,
};

/// Job kinds of a campaign's timers; the subject is the campaign (`R-3`),
/// or the item (`RI-17`) for a revoke.
pub use crate::domain::jobs::review as job;

pub fn item_ref(id: i64) -> String {
    format!("RI-{id}")
}

pub fn parse_item_ref(text: &str) -> Option<i64> {
    text.trim().strip_prefix("RI-")?.parse().ok()
}

/// A person as review items see them: their email and every Slack user
/// linked to it, so an account named by one of their Slack ids (as a Slack
/// workspace source names them) is recognised as theirs.
#[derive(Debug, Clone)]
pub struct Person {
    pub email: String,
    pub slack_ids: Vec<String>,
}

impl Person {
    /// `slack_id` is the one they act from, counted even before it is linked.
    pub async fn of(
        store: &Store,
        email: &str,
        slack_id: Option<&str>,
    ) -> Result<Person, StoreError> {
        let mut slack_ids = store.slack_ids_of(email.to_string()).await?;
        if let Some(id) = slack_id.filter(|id| !slack_ids.iter().any(|s| s == id)) {
            slack_ids.push(id.to_string());
        }
        Ok(Person {
            email: email.to_string(),
            slack_ids,
        })
    }

    /// Whether `item` may be this person's own access: its holder's email,
    /// or an account named by one of their Slack ids.
    pub fn may_hold(&self, item: &ReviewItem) -> bool {
        item.email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(&self.email))
            || self.slack_ids.contains(&item.account_id)
    }
}

/// Whose access an item is when nobody can tell: the source gave no email
/// and no Slack user is linked to the account. Only the reviewer it was
/// given to (the campaign owner, or whom they handed it to) decides it.
pub fn holder_unknown(item: &ReviewItem) -> bool {
    item.email.is_none()
}

/// Whose access `account` is: the email its source gives, else the person
/// linked to the Slack id the account is named by; `None` when unknown.
async fn holder_of(store: &Store, account: &Account) -> Result<Option<String>, StoreError> {
    if let Some(email) = account.email.clone().filter(|e| !e.trim().is_empty()) {
        return Ok(Some(email));
    }
    Ok(store
        .link_for_slack(account.id.clone())
        .await?
        .map(|link| link.email))
}

/// What to review, as asked on the command line or by a schedule.
#[derive(Debug, Clone)]
pub struct CampaignAsk {
    pub name: Option<String>,
    pub apps: Vec<String>,
    pub reviewer: Reviewer,
    pub due: Duration,
    /// Told the outcome at the close; default the first admin.
    pub owner: Option<String>,
    pub schedule: Option<String>,
    pub created_by: String,
    /// This campaign's own reminder settings.
    pub notifications: ReviewNotifications,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("no app {0:?} in the catalog")]
    UnknownApp(String),
    #[error("no accounts to review: no identity source has synced an account of {0}")]
    Empty(String),
    #[error("no campaign owner: pass --owner EMAIL or set requests.admins")]
    NoOwner,
    #[error("nobody but {0} could review {0}'s own access in {1}: add another owner or admin")]
    NoReviewer(String, String),
    #[error("the due date is too far away")]
    DueTooFar,
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Creates the campaign and sets its timers; the daemon launches it (the
/// reviewer DMs) within seconds, also when the CLI created it.
pub async fn create(
    store: &Store,
    config: &Config,
    ask: CampaignAsk,
    now: DateTime<Utc>,
) -> Result<Campaign, CreateError> {
    let mut apps = Vec::new();
    for id in &ask.apps {
        let app = config
            .find_app(id)
            .ok_or_else(|| CreateError::UnknownApp(id.clone()))?;
        if !apps.contains(&app.id) {
            apps.push(app.id.clone());
        }
    }
    let admins: Vec<String> = config.expand(&config.requests.admins).into_iter().collect();
    let owner = ask
        .owner
        .clone()
        .map(|o| o.trim().to_lowercase())
        .or_else(|| admins.first().cloned())
        .ok_or(CreateError::NoOwner)?;
    let prefer: Vec<String> = config
        .sources
        .iter()
        .filter(|s| s.authoritative)
        .map(|s| s.id.clone())
        .collect();
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    for app_id in &apps {
        let owners = config
            .app(app_id)
            .map(|a| config.owners_of(a))
            .unwrap_or_default();
        for (source_id, account) in store.accounts_of_app(app_id.clone()).await? {
            if account.status == AccountStatus::Deprovisioned {
                continue;
            }
            let holder = holder_of(store, &account).await?;
            let reviewer = match &holder {
                // Anyone could be its holder, so it goes to the one person
                // the campaign answers to, never to a chain that may reach them.
                None => owner.clone(),
                Some(person) => {
                    let wanted = match &ask.reviewer {
                        Reviewer::Owners => None,
                        Reviewer::Email(e) => Some(e.clone()),
                        Reviewer::Manager => {
                            store.manager_of(person.clone(), prefer.clone()).await?
                        }
                    };
                    // Nobody reviews their own access: the next owner, then an admin.
                    wanted
                        .into_iter()
                        .chain(owners.iter().cloned())
                        .chain(admins.iter().cloned())
                        .chain(std::iter::once(owner.clone()))
                        .find(|r| !r.eq_ignore_ascii_case(person))
                        .ok_or_else(|| CreateError::NoReviewer(person.clone(), app_id.clone()))?
                }
            };
            let entitlements: Vec<Option<String>> = if account.entitlements.is_empty() {
                vec![None]
            } else {
                account.entitlements.iter().cloned().map(Some).collect()
            };
            for entitlement in entitlements {
                if !seen.insert((app_id.clone(), account.id.clone(), entitlement.clone())) {
                    continue;
                }
                items.push(NewReviewItem {
                    app_id: app_id.clone(),
                    source_id: source_id.clone(),
                    account_id: account.id.clone(),
                    email: holder.clone(),
                    name: account.name.clone(),
                    entitlement,
                    reviewer_email: reviewer.clone(),
                });
            }
        }
    }
    let names: Vec<String> = apps
        .iter()
        .map(|a| config.app(a).map_or(a.clone(), |c| c.name.clone()))
        .collect();
    if items.is_empty() {
        return Err(CreateError::Empty(names.join(", ")));
    }
    let due_at = chrono::Duration::from_std(ask.due)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .ok_or(CreateError::DueTooFar)?;
    let name = ask
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| {
            format!(
                "{} access review {}",
                names.join(", "),
                now.format("%Y-%m-%d")
            )
        });
    let reviewer_rule = match &ask.reviewer {
        Reviewer::Owners => "owners".to_string(),
        Reviewer::Manager => "manager".to_string(),
        Reviewer::Email(e) => e.clone(),
    };
    let count = items.len();
    let timers = timers(config, &ask.notifications, now, due_at);
    let actor = ask.created_by.clone();
    let new = NewCampaign {
        name,
        apps,
        reviewer_rule,
        owner_email: owner,
        schedule: ask.schedule.clone(),
        due_at,
        created_by: ask.created_by.clone(),
        remind_every: ask.notifications.remind_every,
        closing_soon: ask.notifications.closing_soon,
        reminders: ask.notifications.reminders,
        items,
    };
    let campaign = store
        .create_campaign(new, move |c| {
            let subject = c.reference();
            Effects {
                jobs: timers
                    .into_iter()
                    .map(|(kind, at)| JobChange::schedule(kind, &subject, at))
                    .collect(),
                audit: vec![AuditEvent::new(
                    actor,
                    "review.created",
                    &subject,
                    json!({ "name": c.name, "apps": c.apps, "items": count, "due_at": c.due_at, "reviewer": c.reviewer_rule }),
                )],
                ..Effects::default()
            }
        })
        .await?;
    Ok(campaign)
}

/// How often a campaign reminds: its own interval, else `[reviews]
/// reminder_every`; `None` when its reminders are off.
pub fn remind_every(config: &Config, own: &ReviewNotifications) -> Option<Duration> {
    own.reminders
        .then(|| own.remind_every.unwrap_or(config.reviews.reminder_every))
}

/// The settings a stored campaign was created with.
pub fn notifications_of(campaign: &Campaign) -> ReviewNotifications {
    ReviewNotifications {
        remind_every: campaign.remind_every,
        closing_soon: campaign.closing_soon,
        reminders: campaign.reminders,
    }
}

/// Launch now, remind every [`remind_every`], "closing soon" before the
/// due date, close at it. Reminders and the notice are left out when they
/// would fall after the close.
pub fn timers(
    config: &Config,
    own: &ReviewNotifications,
    now: DateTime<Utc>,
    due_at: DateTime<Utc>,
) -> Vec<(&'static str, DateTime<Utc>)> {
    let mut out = vec![(job::LAUNCH, now), (job::CLOSE, due_at)];
    let d = |x: Duration| chrono::Duration::from_std(x).unwrap_or_default();
    if let Some(every) = remind_every(config, own) {
        let remind = now + d(every);
        if remind < due_at {
            out.push((job::REMIND, remind));
        }
    }
    let soon = due_at - d(own.closing_soon.unwrap_or(config.reviews.closing_soon));
    if soon > now {
        out.push((job::CLOSING_SOON, soon));
    }
    out
}

/// The subject of a campaign's timers.
pub fn subject(id: i64) -> String {
    campaign_ref(id)
}

//! Access review campaigns: creating one with its items, the reviewer DM
//! pages, decisions (one item, or all that remain), reassignment, closing,
//! revocation outcomes, and the reads behind the CLI, Home tab and report.
//! Every change commits with its audit rows, messages and timers.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;

use super::effects::{write_effects, Effects};
use super::{opt_ts_col, ts, ts_col, write_tx, Result, Store, StoreError};

pub fn campaign_ref(id: i64) -> String {
    format!("R-{id}")
}

/// `R-3` or `3`.
pub fn parse_campaign_ref(text: &str) -> Option<i64> {
    let t = text.trim();
    let digits = t
        .strip_prefix("R-")
        .or_else(|| t.strip_prefix("r-"))
        .unwrap_or(t);
    digits.parse().ok().filter(|n| *n > 0)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Campaign {
    pub id: i64,
    pub name: String,
    pub apps: Vec<String>,
    pub reviewer_rule: String,
    pub owner_email: String,
    pub schedule: Option<String>,
    /// `open` or `closed`.
    pub status: String,
    pub due_at: DateTime<Utc>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub launched_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    /// Its own reminder interval; `None` follows `[reviews] reminder_every`.
    pub remind_every: Option<std::time::Duration>,
    /// Its own closing-soon lead; `None` follows `[reviews] closing_soon`.
    pub closing_soon: Option<std::time::Duration>,
    /// `false`: no reminders for this campaign.
    pub reminders: bool,
}

impl Campaign {
    pub fn reference(&self) -> String {
        campaign_ref(self.id)
    }

    pub fn is_open(&self) -> bool {
        self.status == "open"
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewItem {
    pub id: i64,
    pub campaign_id: i64,
    pub app_id: String,
    pub source_id: String,
    pub account_id: String,
    /// The holder's email: the account's, or the person linked to the Slack
    /// id the account is named by; `None` when nobody can tell whose it is.
    pub email: Option<String>,
    pub name: Option<String>,
    pub entitlement: Option<String>,
    pub reviewer_email: String,
    pub page: Option<i64>,
    /// `keep` or `revoke`; `None` while undecided.
    pub decision: Option<String>,
    pub comment: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub reassigned_from: Option<String>,
    pub reassign_reason: Option<String>,
    pub revoke_outcome: Option<String>,
}

/// A campaign to create; items come from the sources' last good snapshots.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub name: String,
    pub apps: Vec<String>,
    pub reviewer_rule: String,
    pub owner_email: String,
    pub schedule: Option<String>,
    pub due_at: DateTime<Utc>,
    pub created_by: String,
    pub remind_every: Option<std::time::Duration>,
    pub closing_soon: Option<std::time::Duration>,
    pub reminders: bool,
    pub items: Vec<NewReviewItem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReviewItem {
    pub app_id: String,
    pub source_id: String,
    pub account_id: String,
    /// The holder's email: the account's, or the person linked to the Slack
    /// id the account is named by; `None` when nobody can tell whose it is.
    pub email: Option<String>,
    pub name: Option<String>,
    pub entitlement: Option<String>,
    pub reviewer_email: String,
}

/// One reviewer's share of an open campaign, for the Home tab and reminders.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewerProgress {
    pub campaign: Campaign,
    pub reviewer_email: String,
    pub total: i64,
    pub decided: i64,
}

/// What a decision or reassignment came to.
#[derive(Debug, Clone, PartialEq)]
pub enum ReviewChange {
    /// Applied to these items (now as stored).
    Done(Vec<ReviewItem>),
    /// Nothing left to apply: the item was already decided (by whom, what).
    Already(ReviewItem),
    Refused(String),
    /// The campaign is closed.
    Closed(Campaign),
}

const CAMPAIGN_COLUMNS: &str = "id, name, apps, reviewer_rule, owner_email, schedule, status, \
     due_at, created_by, created_at, launched_at, closed_at, remind_every_secs, closing_soon_secs, \
     reminders";

fn campaign_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Campaign> {
    let apps: String = r.get(2)?;
    Ok(Campaign {
        id: r.get(0)?,
        name: r.get(1)?,
        apps: serde_json::from_str(&apps).unwrap_or_default(),
        reviewer_rule: r.get(3)?,
        owner_email: r.get(4)?,
        schedule: r.get(5)?,
        status: r.get(6)?,
        due_at: ts_col(r, 7)?,
        created_by: r.get(8)?,
        created_at: ts_col(r, 9)?,
        launched_at: opt_ts_col(r, 10)?,
        closed_at: opt_ts_col(r, 11)?,
        remind_every: secs_col(r, 12)?,
        closing_soon: secs_col(r, 13)?,
        reminders: r.get(14)?,
    })
}

fn secs_col(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<std::time::Duration>> {
    let secs: Option<i64> = r.get(i)?;
    Ok(secs.map(|s| std::time::Duration::from_secs(s.max(0).unsigned_abs())))
}

fn secs_param(d: Option<std::time::Duration>) -> Option<i64> {
    d.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

const ITEM_COLUMNS: &str = "id, campaign_id, app_id, source_id, account_id, email, name, \
     entitlement, reviewer_email, page, decision, comment, decided_by, decided_at, \
     reassigned_from, reassign_reason, revoke_outcome";

fn item_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReviewItem> {
    Ok(ReviewItem {
        id: r.get(0)?,
        campaign_id: r.get(1)?,
        app_id: r.get(2)?,
        source_id: r.get(3)?,
        account_id: r.get(4)?,
        email: r.get(5)?,
        name: r.get(6)?,
        entitlement: r.get(7)?,
        reviewer_email: r.get(8)?,
        page: r.get(9)?,
        decision: r.get(10)?,
        comment: r.get(11)?,
        decided_by: r.get(12)?,
        decided_at: opt_ts_col(r, 13)?,
        reassigned_from: r.get(14)?,
        reassign_reason: r.get(15)?,
        revoke_outcome: r.get(16)?,
    })
}

fn load_campaign(conn: &rusqlite::Connection, id: i64) -> Result<Option<Campaign>> {
    let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM review_campaigns WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], campaign_row)
        .optional()?)
}

fn items_where(
    conn: &rusqlite::Connection,
    clause: &str,
    p: impl rusqlite::Params,
) -> Result<Vec<ReviewItem>> {
    let sql = format!("SELECT {ITEM_COLUMNS} FROM review_items WHERE {clause} ORDER BY id");
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(p, item_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

fn items_by_ids(conn: &rusqlite::Connection, ids: &[i64]) -> Result<Vec<ReviewItem>> {
    items_where(
        conn,
        "id IN (SELECT value FROM json_each(?1))",
        [serde_json::to_string(ids)?],
    )
}

/// Every item on the pages that show `items` (to re-render those pages).
fn page_mates(conn: &rusqlite::Connection, items: &[ReviewItem]) -> Result<Vec<ReviewItem>> {
    let mut out: Vec<ReviewItem> = Vec::new();
    let mut pages: Vec<(i64, String, i64)> = items
        .iter()
        .filter_map(|i| {
            i.page
                .map(|p| (i.campaign_id, i.reviewer_email.to_lowercase(), p))
        })
        .collect();
    pages.sort();
    pages.dedup();
    for (campaign, reviewer, page) in pages {
        out.extend(items_where(
            conn,
            "campaign_id = ?1 AND reviewer_email = ?2 AND page = ?3",
            params![campaign, reviewer, page],
        )?);
    }
    Ok(out)
}

/// The campaign and the undecided ones of `ids`, once the campaign is open
/// and `check` agrees; otherwise the answer to give (gone, closed, refused,
/// or already decided).
fn undecided(
    tx: &Transaction<'_>,
    ids: &[i64],
    check: impl FnOnce(&Campaign, &[ReviewItem]) -> std::result::Result<(), String>,
) -> Result<std::result::Result<(Campaign, Vec<ReviewItem>), ReviewChange>> {
    let items = items_by_ids(tx, ids)?;
    let Some(first) = items.first() else {
        return Ok(Err(ReviewChange::Refused(
            "Those review items no longer exist.".into(),
        )));
    };
    let campaign = load_campaign(tx, first.campaign_id)?.ok_or(StoreError::NotFound {
        what: "campaign",
        id: first.campaign_id,
    })?;
    if !campaign.is_open() {
        return Ok(Err(ReviewChange::Closed(campaign)));
    }
    if let Err(why) = check(&campaign, &items) {
        return Ok(Err(ReviewChange::Refused(why)));
    }
    let open: Vec<ReviewItem> = items
        .iter()
        .filter(|i| i.decision.is_none())
        .cloned()
        .collect();
    if open.is_empty() {
        return Ok(Err(ReviewChange::Already(first.clone())));
    }
    Ok(Ok((campaign, open)))
}

/// Where a reviewer's page was posted, recorded from Slack's answer.
pub(crate) fn record_page_tx(
    tx: &Transaction<'_>,
    campaign_id: i64,
    reviewer_email: &str,
    page: i64,
    channel: &str,
    message_ts: &str,
) -> Result<()> {
    tx.prepare_cached(
        "UPDATE review_pages SET channel = ?4, ts = ?5
         WHERE campaign_id = ?1 AND reviewer_email = ?2 AND page = ?3",
    )?
    .execute(params![
        campaign_id,
        reviewer_email,
        page,
        channel,
        message_ts
    ])?;
    Ok(())
}

/// A reviewer's page as posted: (slack id, channel, ts) once Slack answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageLocation {
    pub slack_id: String,
    pub channel: Option<String>,
    pub ts: Option<String>,
}

impl Store {
    /// Creates the campaign and its items; `effects` (launch timer, due
    /// timers, audit) commit with it.
    pub async fn create_campaign(
        &self,
        new: NewCampaign,
        effects: impl FnOnce(&Campaign) -> Effects + Send + 'static,
    ) -> Result<Campaign> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let now = ts(Utc::now());
            let id: i64 = tx
                .prepare_cached(
                    "INSERT INTO review_campaigns (name, apps, reviewer_rule, owner_email, schedule, due_at, created_by, created_at,
                                                   remind_every_secs, closing_soon_secs, reminders)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) RETURNING id",
                )?
                .query_row(
                    params![
                        new.name,
                        serde_json::to_string(&new.apps)?,
                        new.reviewer_rule,
                        new.owner_email.to_lowercase(),
                        new.schedule,
                        ts(new.due_at),
                        new.created_by,
                        now,
                        secs_param(new.remind_every),
                        secs_param(new.closing_soon),
                        new.reminders
                    ],
                    |r| r.get(0),
                )?;
            for item in &new.items {
                tx.prepare_cached(
                    "INSERT INTO review_items (campaign_id, app_id, source_id, account_id, email, name, entitlement, reviewer_email)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    id,
                    item.app_id,
                    item.source_id,
                    item.account_id,
                    item.email,
                    item.name,
                    item.entitlement,
                    item.reviewer_email.to_lowercase()
                ])?;
            }
            let campaign = load_campaign(&tx, id)?.ok_or(StoreError::NotFound { what: "campaign", id })?;
            write_effects(&tx, &effects(&campaign))?;
            tx.commit()?;
            Ok(campaign)
        })
        .await
    }

    pub async fn campaign(&self, id: i64) -> Result<Option<Campaign>> {
        self.call(move |conn| load_campaign(conn, id)).await
    }

    /// Campaigns, newest first; only those with `status` when given.
    pub async fn campaigns(&self, status: Option<String>) -> Result<Vec<Campaign>> {
        self.call(move |conn| {
            let sql = format!(
                "SELECT {CAMPAIGN_COLUMNS} FROM review_campaigns
                 WHERE (?1 IS NULL OR status = ?1) ORDER BY id DESC"
            );
            let rows = conn
                .prepare_cached(&sql)?
                .query_map([status], campaign_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    pub async fn review_items(&self, campaign_id: i64) -> Result<Vec<ReviewItem>> {
        self.call(move |conn| items_where(conn, "campaign_id = ?1", [campaign_id]))
            .await
    }

    pub async fn review_item(&self, id: i64) -> Result<Option<ReviewItem>> {
        self.call(move |conn| Ok(items_by_ids(conn, &[id])?.pop()))
            .await
    }

    /// Items of one reviewer in one campaign.
    pub async fn reviewer_items(
        &self,
        campaign_id: i64,
        reviewer_email: String,
    ) -> Result<Vec<ReviewItem>> {
        self.call(move |conn| {
            items_where(
                conn,
                "campaign_id = ?1 AND reviewer_email = ?2",
                params![campaign_id, reviewer_email],
            )
        })
        .await
    }

    /// Puts the reviewer's items that no page shows yet on new pages of at
    /// most `page_size`, recording each page for `slack_id`; returns the new
    /// pages with their items. `effects` (the page DMs) commit with them.
    pub async fn paginate(
        &self,
        campaign_id: i64,
        reviewer_email: String,
        slack_id: String,
        page_size: usize,
        effects: impl FnOnce(&Campaign, &[(i64, Vec<ReviewItem>)]) -> Effects + Send + 'static,
    ) -> Result<Vec<(i64, Vec<ReviewItem>)>> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let campaign = load_campaign(&tx, campaign_id)?
                .ok_or(StoreError::NotFound { what: "campaign", id: campaign_id })?;
            let unpaged = items_where(
                &tx,
                "campaign_id = ?1 AND reviewer_email = ?2 AND page IS NULL",
                params![campaign_id, reviewer_email],
            )?;
            let last: i64 = tx.query_row(
                "SELECT COALESCE(MAX(page), 0) FROM review_pages WHERE campaign_id = ?1 AND reviewer_email = ?2",
                params![campaign_id, reviewer_email],
                |r| r.get(0),
            )?;
            let mut pages = Vec::new();
            for (n, chunk) in unpaged.chunks(page_size.max(1)).enumerate() {
                let page = last + 1 + n as i64;
                tx.prepare_cached(
                    "INSERT INTO review_pages (campaign_id, reviewer_email, page, slack_id) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![campaign_id, reviewer_email, page, slack_id])?;
                let mut items = chunk.to_vec();
                for item in &mut items {
                    tx.prepare_cached("UPDATE review_items SET page = ?2 WHERE id = ?1")?
                        .execute(params![item.id, page])?;
                    item.page = Some(page);
                }
                pages.push((page, items));
            }
            write_effects(&tx, &effects(&campaign, &pages))?;
            tx.commit()?;
            Ok(pages)
        })
        .await
    }

    pub async fn page_location(
        &self,
        campaign_id: i64,
        reviewer_email: String,
        page: i64,
    ) -> Result<Option<PageLocation>> {
        self.call(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT slack_id, channel, ts FROM review_pages
                     WHERE campaign_id = ?1 AND reviewer_email = ?2 AND page = ?3",
                )?
                .query_row(params![campaign_id, reviewer_email, page], |r| {
                    Ok(PageLocation {
                        slack_id: r.get(0)?,
                        channel: r.get(1)?,
                        ts: r.get(2)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    /// Decides the undecided ones of `item_ids` (one item, or every item
    /// that remains). `check` re-authorises inside the transaction; `effects`
    /// get the decided items and every item of the pages that show them.
    pub async fn decide_review_items(
        &self,
        item_ids: Vec<i64>,
        actor: String,
        decision: String,
        comment: Option<String>,
        check: impl FnOnce(&Campaign, &[ReviewItem]) -> std::result::Result<(), String> + Send + 'static,
        effects: impl FnOnce(&Campaign, &[ReviewItem], &[ReviewItem]) -> Effects + Send + 'static,
    ) -> Result<ReviewChange> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let (campaign, open) = match undecided(&tx, &item_ids, check)? {
                Ok(found) => found,
                Err(answer) => return Ok(answer),
            };
            let open: Vec<i64> = open.iter().map(|i| i.id).collect();
            let now = ts(Utc::now());
            for id in &open {
                tx.prepare_cached(
                    "UPDATE review_items SET decision = ?2, comment = ?3, decided_by = ?4, decided_at = ?5
                     WHERE id = ?1 AND decision IS NULL",
                )?
                .execute(params![id, decision, comment, actor, now])?;
            }
            let decided = items_by_ids(&tx, &open)?;
            let pages = page_mates(&tx, &decided)?;
            write_effects(&tx, &effects(&campaign, &decided, &pages))?;
            tx.commit()?;
            Ok(ReviewChange::Done(decided))
        })
        .await
    }

    /// Moves the undecided ones of `item_ids` to `to` (off their pages: the
    /// new reviewer gets pages of their own). `effects` get the moved items
    /// (as now stored) and every item of the pages that showed them.
    pub async fn reassign_review_items(
        &self,
        item_ids: Vec<i64>,
        to: String,
        reason: String,
        check: impl FnOnce(&Campaign, &[ReviewItem]) -> std::result::Result<(), String> + Send + 'static,
        effects: impl FnOnce(&Campaign, &[ReviewItem], &[ReviewItem]) -> Effects + Send + 'static,
    ) -> Result<ReviewChange> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let (campaign, open) = match undecided(&tx, &item_ids, check)? {
                Ok(found) => found,
                Err(answer) => return Ok(answer),
            };
            for item in &open {
                tx.prepare_cached(
                    "UPDATE review_items SET reviewer_email = ?2, reassigned_from = ?3, reassign_reason = ?4, page = NULL
                     WHERE id = ?1 AND decision IS NULL",
                )?
                .execute(params![item.id, to.to_lowercase(), item.reviewer_email, reason])?;
            }
            let ids: Vec<i64> = open.iter().map(|i| i.id).collect();
            let moved = items_by_ids(&tx, &ids)?;
            // `open` still holds the old pages, so the old reviewer's copies show the move.
            let pages = page_mates(&tx, &open)?;
            write_effects(&tx, &effects(&campaign, &moved, &pages))?;
            tx.commit()?;
            Ok(ReviewChange::Done(moved))
        })
        .await
    }

    pub async fn record_revoke_outcome(
        &self,
        item_id: i64,
        outcome: String,
        effects: Effects,
    ) -> Result<()> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            tx.prepare_cached("UPDATE review_items SET revoke_outcome = ?2 WHERE id = ?1")?
                .execute(params![item_id, outcome])?;
            write_effects(&tx, &effects)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn mark_campaign_launched(&self, id: i64) -> Result<()> {
        self.call(move |conn| {
            conn.prepare_cached(
                "UPDATE review_campaigns SET launched_at = ?2 WHERE id = ?1 AND launched_at IS NULL",
            )?
            .execute(params![id, ts(Utc::now())])?;
            Ok(())
        })
        .await
    }

    /// Closes an open campaign; `effects` (summary DMs, audit, dropped
    /// timers) commit with it. `None` when it was not open.
    pub async fn close_campaign(
        &self,
        id: i64,
        effects: impl FnOnce(&Campaign, &[ReviewItem]) -> Effects + Send + 'static,
    ) -> Result<Option<Campaign>> {
        self.call(move |conn| {
            let tx = write_tx(conn)?;
            let n = tx
                .prepare_cached(
                    "UPDATE review_campaigns SET status = 'closed', closed_at = ?2 WHERE id = ?1 AND status = 'open'",
                )?
                .execute(params![id, ts(Utc::now())])?;
            if n == 0 {
                return Ok(None);
            }
            let campaign = load_campaign(&tx, id)?.ok_or(StoreError::NotFound { what: "campaign", id })?;
            let items = items_where(&tx, "campaign_id = ?1", [id])?;
            write_effects(&tx, &effects(&campaign, &items))?;
            tx.commit()?;
            Ok(Some(campaign))
        })
        .await
    }

    /// Every reviewer's share of every open campaign (`reviewer` narrows it).
    pub async fn review_progress(&self, reviewer: Option<String>) -> Result<Vec<ReviewerProgress>> {
        self.call(move |conn| {
            let sql = format!(
                "SELECT {cols}, i.reviewer_email, COUNT(*), COUNT(i.decision)
                 FROM review_campaigns c JOIN review_items i ON i.campaign_id = c.id
                 WHERE c.status = 'open' AND (?1 IS NULL OR i.reviewer_email = ?1)
                 GROUP BY c.id, i.reviewer_email ORDER BY c.due_at, c.id, i.reviewer_email",
                cols = CAMPAIGN_COLUMNS
                    .split(", ")
                    .map(|c| format!("c.{}", c.trim()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            // The progress columns follow the campaign's.
            let width = CAMPAIGN_COLUMNS.split(',').count();
            let rows = conn
                .prepare(&sql)?
                .query_map([reviewer], |r| {
                    Ok(ReviewerProgress {
                        campaign: campaign_row(r)?,
                        reviewer_email: r.get(width)?,
                        total: r.get(width + 1)?,
                        decided: r.get(width + 2)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests;

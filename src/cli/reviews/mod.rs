//! `accessd reviews create|list|show|close|report`: starting an access
//! review campaign from the command line, following its progress, asking
//! the daemon to close it, and the auditor's report (CSV or JSON) of every
//! item and its decision. The daemon does all the Slack work (launch DMs,
//! reminders, the owner's summary at the close); these commands only read
//! and write the store.

mod report;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use clap::{Subcommand, ValueEnum};
use serde_json::json;

use self::report::{to_csv, CampaignDetail, CampaignView, ReportDoc, ReportRow, Summary};
use super::output::{
    clean, emit, or_dash, print_out, rfc3339_short, with_store, Failure, Outcome, Table,
};
use crate::cli::actor::cli_actor;
use crate::config::{self, Config, ReviewNotifications, Reviewer};
use crate::reviews::{self, job, CampaignAsk, CreateError};
use crate::store::reviews::{campaign_ref, parse_campaign_ref};
use crate::store::{AuditEvent, Campaign, ReviewItem, Store};

/// A due date further out than this is a typo (`14y` for `14d`), and far
/// enough out it would overflow the date arithmetic.
const MAX_DUE: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

#[derive(Debug, Subcommand)]
pub enum ReviewsCommand {
    /// Start a review campaign of every account (× entitlement) of the apps;
    /// the running daemon sends the reviewer DMs within seconds (audited).
    Create {
        /// App id, alias or name from `[[apps]]`; repeat for several apps.
        #[arg(long = "app", value_name = "ID", required = true)]
        apps: Vec<String>,
        /// Who reviews each item: `owners` (the app's owners), `manager` (the
        /// person's manager from the identity sources) or an email. Nobody
        /// reviews their own access: such items go to another owner or an admin;
        /// an account nobody can tell the holder of goes to the campaign owner.
        #[arg(long, value_name = "owners|manager|EMAIL", value_parser = parse_reviewer)]
        reviewer: Reviewer,
        /// How long reviewers have, humantime (`14d`, `36h`); the campaign
        /// closes then.
        #[arg(long, value_name = "DURATION", value_parser = parse_due)]
        due: Duration,
        /// Campaign name [default: "<apps> access review <date>"].
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Who gets the summary at the close [default: the first admin].
        #[arg(long, value_name = "EMAIL", value_parser = parse_email)]
        owner: Option<String>,
        /// Remind reviewers with items left this often [default: `[reviews]
        /// reminder_every`].
        #[arg(long, value_name = "DURATION", value_parser = parse_due, conflicts_with = "no_reminders")]
        remind_every: Option<Duration>,
        /// Send "closing soon" this long before the due date [default:
        /// `[reviews] closing_soon`].
        #[arg(long, value_name = "DURATION", value_parser = parse_due)]
        closing_soon: Option<Duration>,
        /// No reminders for this campaign ("closing soon" still goes).
        #[arg(long)]
        no_reminders: bool,
        /// Print a JSON object instead of one line.
        #[arg(long)]
        json: bool,
    },
    /// List campaigns, newest first, with their progress.
    List {
        /// Only campaigns in this status.
        #[arg(long, value_name = "STATUS", value_parser = ["open", "closed"])]
        status: Option<String>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one campaign: progress per reviewer and every item.
    Show {
        /// Campaign id: `R-3` or `3`.
        #[arg(value_name = "ID", value_parser = parse_id)]
        id: i64,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Close an open campaign now: the running daemon closes it within
    /// seconds and sends the owner the summary (audited).
    Close {
        /// Campaign id: `R-3` or `3`.
        #[arg(value_name = "ID", value_parser = parse_id)]
        id: i64,
    },
    /// Every item with its decision, for an auditor (columns in the README).
    Report {
        /// Campaign id: `R-3` or `3`.
        #[arg(value_name = "ID", value_parser = parse_id)]
        id: i64,
        #[arg(long, value_enum)]
        format: ReportFormat,
        /// Write the report to PATH instead of stdout.
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    Csv,
    Json,
}

fn parse_id(text: &str) -> Result<i64, String> {
    parse_campaign_ref(text).ok_or_else(|| format!("`{text}` is not a campaign id (R-3 or 3)"))
}

fn parse_reviewer(text: &str) -> Result<Reviewer, String> {
    match text.trim() {
        "owners" => Ok(Reviewer::Owners),
        "manager" => Ok(Reviewer::Manager),
        t => parse_email(t)
            .map(Reviewer::Email)
            .map_err(|_| format!("expected `owners`, `manager` or an email, found `{t}`")),
    }
}

fn parse_due(text: &str) -> Result<Duration, String> {
    let due = humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. 14d or 36h"))?;
    if due.is_zero() {
        return Err("must be greater than zero".into());
    }
    if due > MAX_DUE {
        return Err("must be at most 10 years".into());
    }
    Ok(due)
}

/// One `@` with something on both sides and no whitespace or control
/// characters (as `users link` checks; the sources are the authority on
/// addresses). Lowercased, as the store keeps emails.
fn parse_email(text: &str) -> Result<String, String> {
    let t = text.trim();
    let valid = matches!(t.split_once('@'), Some((local, domain))
        if !local.is_empty() && !domain.is_empty() && !domain.contains('@'))
        && !t.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(t.to_lowercase())
    } else {
        Err(format!("`{text}` is not an email address"))
    }
}

pub(crate) fn execute(config_path: &Path, command: ReviewsCommand) -> Outcome {
    match command {
        ReviewsCommand::Create {
            apps,
            reviewer,
            due,
            name,
            owner,
            remind_every,
            closing_soon,
            no_reminders,
            json,
        } => {
            // Unknown apps are a usage error found before the database is touched.
            let config =
                config::load(config_path).map_err(|err| Failure::usage(err.to_string()))?;
            for app in &apps {
                if config.find_app(app).is_none() {
                    return Err(unknown_app(&config, app));
                }
            }
            let ask = CampaignAsk {
                name,
                apps,
                reviewer,
                due,
                owner,
                schedule: None,
                created_by: cli_actor(),
                notifications: ReviewNotifications {
                    remind_every,
                    closing_soon,
                    reminders: !no_reminders,
                },
            };
            with_store(config_path, |store| create(store, config, ask, json))
        }
        ReviewsCommand::List { status, json } => {
            with_store(config_path, |store| list(store, status, json))
        }
        ReviewsCommand::Show { id, json } => with_store(config_path, |store| show(store, id, json)),
        ReviewsCommand::Close { id } => with_store(config_path, |store| close(store, id)),
        ReviewsCommand::Report { id, format, output } => {
            with_store(config_path, |store| report(store, id, format, output))
        }
    }
}

fn unknown_app(config: &Config, app: &str) -> Failure {
    let known: Vec<&str> = config.apps.iter().map(|a| a.id.as_str()).collect();
    let known = if known.is_empty() {
        "none are configured".to_owned()
    } else {
        format!("known: {}", known.join(", "))
    };
    Failure::usage(format!(
        "accessd: --app: no app `{}` in the catalog ({known})",
        clean(app)
    ))
}

async fn create(store: Store, config: Config, ask: CampaignAsk, json: bool) -> Outcome {
    let campaign = match reviews::create(&store, &config, ask, Utc::now()).await {
        Ok(campaign) => campaign,
        Err(CreateError::UnknownApp(app)) => return Err(unknown_app(&config, &app)),
        Err(err @ CreateError::Empty(_)) => {
            return Err(Failure::usage(format!(
                "accessd: --app: {err}; run `accessd sources sync` first"
            )))
        }
        Err(err @ CreateError::NoOwner) => {
            return Err(Failure::usage(format!("accessd: --owner: {err}")))
        }
        Err(err @ CreateError::NoReviewer(..)) => {
            return Err(Failure::usage(format!("accessd: --reviewer: {err}")))
        }
        Err(err @ CreateError::DueTooFar) => {
            return Err(Failure::usage(format!("accessd: --due: {err}")))
        }
        Err(CreateError::Store(err)) => return Err(err.into()),
    };
    let items = store.review_items(campaign.id).await?;
    let view = CampaignView::new(&campaign, &items);
    emit(json, &view, || {
        clean(&format!(
            "{}: \"{}\", {} across {}, due {}; the running daemon sends the reviewer DMs within seconds",
            view.id,
            view.name,
            plural(view.items, "item"),
            plural(view.reviewers, "reviewer"),
            rfc3339_short(view.due_at)
        ))
    })
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

async fn list(store: Store, status: Option<String>, json: bool) -> Outcome {
    let campaigns = store.campaigns(status).await?;
    let mut views = Vec::with_capacity(campaigns.len());
    for campaign in &campaigns {
        let items = store.review_items(campaign.id).await?;
        views.push(CampaignView::new(campaign, &items));
    }
    emit(json, &views, || {
        if views.is_empty() {
            return "no review campaigns".into();
        }
        let mut table = Table::new(&[
            "ID",
            "NAME",
            "APPS",
            "STATUS",
            "DUE",
            "PROGRESS",
            "REVIEWERS",
            "CREATED",
        ]);
        for v in &views {
            table.row(vec![
                v.id.clone(),
                v.name.clone(),
                v.apps.join(","),
                v.status.clone(),
                rfc3339_short(v.due_at),
                format!("{}/{}", v.decided, v.items),
                v.reviewers.to_string(),
                rfc3339_short(v.created_at),
            ]);
        }
        table.render()
    })
}

async fn load(store: &Store, id: i64) -> Result<(Campaign, Vec<ReviewItem>), Failure> {
    let Some(campaign) = store.campaign(id).await? else {
        return Err(Failure::runtime(format!(
            "accessd: no review campaign {}",
            campaign_ref(id)
        )));
    };
    let items = store.review_items(id).await?;
    Ok((campaign, items))
}

async fn show(store: Store, id: i64, json: bool) -> Outcome {
    let (campaign, items) = load(&store, id).await?;
    let detail = CampaignDetail::new(&campaign, &items);
    emit(json, &detail, || show_text(&detail))
}

fn show_text(d: &CampaignDetail) -> String {
    let c = &d.campaign;
    let mut out = format!(
        "{} \"{}\" ({})\napps: {}\nreviewer rule: {}; owner: {}\ndue: {}\ncreated: {} by {}\n",
        c.id,
        c.name,
        c.status,
        c.apps.join(", "),
        c.reviewer,
        c.owner,
        rfc3339_short(c.due_at),
        rfc3339_short(c.created_at),
        c.created_by,
    );
    if let Some(at) = c.closed_at {
        out.push_str(&format!("closed: {}\n", rfc3339_short(at)));
    }
    let secs = |s: Option<u64>| {
        s.map_or("as [reviews]".to_string(), |s| {
            humantime::format_duration(Duration::from_secs(s)).to_string()
        })
    };
    let reminders = if c.reminders {
        format!("every {}", secs(c.remind_every_secs))
    } else {
        "none".to_string()
    };
    let soon = match c.closing_soon_secs {
        Some(_) => format!("{} before", secs(c.closing_soon_secs)),
        None => secs(None),
    };
    out.push_str(&format!("reminders: {reminders}; closing soon: {soon}\n"));
    out.push_str(&format!(
        "progress: {}/{} decided ({} kept, {} revoked, {} undecided)\n\n",
        c.decided, c.items, d.kept, d.revoked, d.undecided
    ));
    let mut reviewers = Table::new(&["REVIEWER", "DECIDED", "KEPT", "REVOKED", "UNDECIDED"]);
    for r in &d.reviewers {
        reviewers.row(vec![
            r.reviewer.clone(),
            format!("{}/{}", r.decided, r.total),
            r.kept.to_string(),
            r.revoked.to_string(),
            r.undecided.to_string(),
        ]);
    }
    out.push_str(&reviewers.render());
    out.push('\n');
    let mut items = Table::new(&[
        "ITEM",
        "APP",
        "ACCOUNT",
        "ENTITLEMENT",
        "REVIEWER",
        "DECISION",
        "COMMENT",
        "DECIDED AT",
        "REVOKE OUTCOME",
    ]);
    for i in &d.items {
        items.row(vec![
            i.id.clone(),
            i.app.clone(),
            i.email.clone().unwrap_or_else(|| i.account_id.clone()),
            or_dash(i.entitlement.clone()),
            i.reviewer.clone(),
            i.decision.into(),
            or_dash(i.comment.clone()),
            i.decided_at.map_or_else(|| "-".into(), rfc3339_short),
            or_dash(i.revoke_outcome.clone()),
        ]);
    }
    out.push_str(&items.render());
    clean_lines(&out)
}

/// The campaign name and people's text may hold anything; only newlines the
/// rendering put there survive.
fn clean_lines(text: &str) -> String {
    text.lines().map(clean).collect::<Vec<_>>().join("\n")
}

async fn close(store: Store, id: i64) -> Outcome {
    let (campaign, _) = load(&store, id).await?;
    let reference = campaign.reference();
    if !campaign.is_open() {
        return Err(Failure::runtime(format!(
            "accessd: {reference} is already closed{}",
            campaign
                .closed_at
                .map(|at| format!(" (at {})", rfc3339_short(at)))
                .unwrap_or_default()
        )));
    }
    // Closing is the daemon's: it DMs the owner the summary and drops the
    // other timers in the same transaction. Moving the close timer to now
    // hands it over; the daemon's job loop notices within seconds.
    store
        .schedule_job(
            job::CLOSE.into(),
            reviews::subject(id),
            Utc::now(),
            serde_json::Value::Null,
        )
        .await?;
    store
        .append_audit(AuditEvent::new(
            cli_actor(),
            "review.close_requested",
            &reference,
            json!({ "name": campaign.name, "due_at": campaign.due_at }),
        ))
        .await?;
    print_out(&format!(
        "{reference}: closing; the running daemon closes it within seconds"
    ))
}

async fn report(store: Store, id: i64, format: ReportFormat, output: Option<PathBuf>) -> Outcome {
    let (campaign, items) = load(&store, id).await?;
    let rows: Vec<ReportRow> = items.iter().map(|i| ReportRow::new(&campaign, i)).collect();
    let text = match format {
        ReportFormat::Csv => to_csv(&rows),
        ReportFormat::Json => {
            let doc = ReportDoc {
                campaign: CampaignView::new(&campaign, &items),
                summary: Summary::new(&items),
                items: &rows,
            };
            let mut text = serde_json::to_string_pretty(&doc)
                .map_err(|err| Failure::runtime(format!("accessd: {err}")))?;
            text.push('\n');
            text
        }
    };
    match output {
        None => print_out(&text),
        Some(path) => {
            std::fs::write(&path, text).map_err(|err| {
                Failure::runtime(format!("accessd: writing {}: {err}", path.display()))
            })?;
            print_out(&format!(
                "{}: report of {} written to {}",
                campaign.reference(),
                plural(rows.len(), "item"),
                path.display()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_reviewers_parse() {
        assert_eq!(parse_due("14d"), Ok(Duration::from_secs(14 * 86_400)));
        assert!(parse_due("0s").is_err());
        assert!(parse_due("fortnight").is_err());
        assert!(parse_due("100y").is_err());
        assert_eq!(parse_reviewer("owners"), Ok(Reviewer::Owners));
        assert_eq!(parse_reviewer("manager"), Ok(Reviewer::Manager));
        assert_eq!(
            parse_reviewer("Dana@Example.com"),
            Ok(Reviewer::Email("dana@example.com".into()))
        );
        assert!(parse_reviewer("dana").is_err());
        assert!(parse_email("a@b@c").is_err());
    }
}

//! Alerts, reviews and the audit anchor: watchlist, channels, digest time,
//! review schedules, where and how often the audit head is posted.

use std::collections::BTreeMap;

use super::{is_email, secs, Cx, DAY};
use crate::config::raw;
use crate::config::tree::KeyPath;
use crate::config::{
    AlertChannels, AlertsConfig, AppConfig, AuditConfig, ReviewNotifications, ReviewSchedule,
    Reviewer, ReviewsConfig,
};

impl Cx<'_> {
    pub(super) fn alerts(&mut self, path: &KeyPath, raw: &raw::RawAlerts) -> AlertsConfig {
        let mut watchlist = Vec::new();
        for (i, app) in raw.watchlist.iter().enumerate() {
            let id = app.trim().to_lowercase();
            if self.ident(&path.key("watchlist").index(i), &id, "app id")
                && !watchlist.contains(&id)
            {
                watchlist.push(id);
            }
        }
        let default_digest = chrono::NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default();
        let digest_at = match &raw.digest_at {
            None => default_digest,
            Some(t) => parse_hhmm(t).unwrap_or_else(|| {
                self.at(
                    &path.key("digest_at"),
                    format!("invalid time {t:?}: expected HH:MM (24-hour), e.g. \"09:00\""),
                );
                default_digest
            }),
        };
        let mass_change_guard = match raw.mass_change_guard {
            None => 0.2,
            Some(g) if g > 0.0 && g <= 1.0 => g,
            Some(g) => {
                self.at(
                    &path.key("mass_change_guard"),
                    format!("expected a share greater than 0 and at most 1 (e.g. 0.2), found {g}"),
                );
                0.2
            }
        };
        let cp = path.key("channels");
        let c = &raw.channels;
        let channels = AlertChannels {
            watchlist_signup: self.channel(&cp.key("watchlist_signup"), &c.watchlist_signup),
            offboarded_active: self.channel(&cp.key("offboarded_active"), &c.offboarded_active),
            new_app: self.channel(&cp.key("new_app"), &c.new_app),
            findings_digest: self.channel(&cp.key("findings_digest"), &c.findings_digest),
            provisioning_failed: self
                .channel(&cp.key("provisioning_failed"), &c.provisioning_failed),
            source_failed: self.channel(&cp.key("source_failed"), &c.source_failed),
            break_glass: self.channel(&cp.key("break_glass"), &c.break_glass),
            privileged: self.channel(&cp.key("privileged"), &c.privileged),
        };
        AlertsConfig {
            watchlist,
            digest_at,
            mass_change_guard,
            channels,
        }
    }

    /// A schedule's own reminder keys; `no_reminders = true` with
    /// `remind_every` is a contradiction, refused.
    fn notifications(&mut self, sp: &KeyPath, s: &raw::RawReviewSchedule) -> ReviewNotifications {
        let get = |cx: &mut Self, key: &str, text: &Option<String>| {
            text.as_deref()
                .map(|t| cx.duration(&sp.key(key), Some(t), secs(DAY)))
        };
        let remind_every = get(self, "remind_every", &s.remind_every);
        let closing_soon = get(self, "closing_soon", &s.closing_soon);
        let reminders = s.no_reminders != Some(true);
        if !reminders && remind_every.is_some() {
            self.at(
                &sp.key("no_reminders"),
                "contradicts remind_every: keep one of them",
            );
        }
        ReviewNotifications {
            remind_every,
            closing_soon,
            reminders,
        }
    }

    pub(super) fn audit(&mut self, path: &KeyPath, raw: &raw::RawAudit) -> AuditConfig {
        let anchor_channel = self.channel(&path.key("anchor_channel"), &raw.anchor_channel);
        let every_path = path.key("anchor_every");
        let anchor_every = self.duration(&every_path, raw.anchor_every.as_deref(), secs(DAY));
        if raw.anchor_every.is_some() && raw.anchor_channel.is_none() {
            // Accepted but never done would look like an anchor that is not there.
            self.at(
                &every_path,
                "has no effect without audit.anchor_channel: set the channel the head is posted to, or remove this key",
            );
        }
        AuditConfig {
            anchor_channel,
            anchor_every,
        }
    }

    pub(super) fn channel(&mut self, path: &KeyPath, raw: &Option<String>) -> Option<String> {
        let text = raw.as_deref()?.trim();
        if is_channel(text) {
            return Some(text.to_string());
        }
        self.at(
            path,
            format!("invalid channel {text:?}: expected a channel id (C… or G…) or \"#name\" (lowercase, no spaces)"),
        );
        None
    }

    pub(super) fn reviews(
        &mut self,
        path: &KeyPath,
        raw: &raw::RawReviews,
        apps: &[AppConfig],
    ) -> ReviewsConfig {
        let reminder_every = self.duration(
            &path.key("reminder_every"),
            raw.reminder_every.as_deref(),
            secs(2 * DAY),
        );
        let closing_soon = self.duration(
            &path.key("closing_soon"),
            raw.closing_soon.as_deref(),
            secs(2 * DAY),
        );
        let mut names: BTreeMap<String, KeyPath> = BTreeMap::new();
        let mut schedules = Vec::new();
        for (i, s) in raw.schedules.iter().enumerate() {
            let sp = path.key("schedules").index(i);
            let name = self.non_empty(&sp.key("name"), &s.name);
            if let Some(first) = names.get(&name) {
                self.at(
                    &sp.key("name"),
                    format!("duplicate schedule name {name:?} (first at {first})"),
                );
            } else {
                names.insert(name.clone(), sp.key("name"));
            }
            let reviewer = match s.reviewer.trim() {
                "owners" => Reviewer::Owners,
                "manager" => Reviewer::Manager,
                t if is_email(t) => Reviewer::Email(t.to_lowercase()),
                t => {
                    self.at(
                        &sp.key("reviewer"),
                        format!("expected \"owners\", \"manager\" or an email, found {t:?}"),
                    );
                    Reviewer::Manager
                }
            };
            if s.apps.is_empty() {
                self.at(&sp.key("apps"), "expected at least one app id");
            }
            let mut ids = Vec::new();
            for (j, a) in s.apps.iter().enumerate() {
                let ap = sp.key("apps").index(j);
                let id = a.trim().to_lowercase();
                if !self.ident(&ap, &id, "app id") {
                    continue;
                }
                if reviewer == Reviewer::Owners
                    && apps
                        .iter()
                        .all(|c| c.id != id || (c.owners.is_empty() && c.owner_groups.is_empty()))
                {
                    self.at(
                        &ap,
                        format!("reviewer = \"owners\" needs app {id:?} to be defined in [[apps]] with `owners`"),
                    );
                }
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            schedules.push(ReviewSchedule {
                name,
                apps: ids,
                reviewer,
                cron: self.schedule(&sp.key("cron"), &s.cron),
                due: self.duration(&sp.key("due"), Some(&s.due), secs(14 * DAY)),
                notifications: self.notifications(&sp, s),
            });
        }
        ReviewsConfig {
            reminder_every,
            closing_soon,
            schedules,
        }
    }
}

pub(super) fn is_channel(text: &str) -> bool {
    if let Some(name) = text.strip_prefix('#') {
        return !name.is_empty()
            && name.chars().count() <= 80
            && !name
                .chars()
                .any(|c| c.is_whitespace() || c.is_uppercase() || c == '#' || c == ',');
    }
    (text.starts_with('C') || text.starts_with('G'))
        && text.len() >= 3
        && text
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// `HH:MM`; `HH:MM:SS` too, because TOML's bare local time `09:00:00` reaches
/// us as that text.
pub(super) fn parse_hhmm(text: &str) -> Option<chrono::NaiveTime> {
    let parts: Vec<&str> = text.trim().split(':').collect();
    let (h, m, s) = match parts.as_slice() {
        [h, m] => (*h, *m, "00"),
        [h, m, s] => (*h, *m, *s),
        _ => return None,
    };
    if h.is_empty() || h.len() > 2 || m.len() != 2 || s.len() != 2 {
        return None;
    }
    chrono::NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, s.parse().ok()?)
}

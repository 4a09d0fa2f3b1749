//! Groups, requests and the app catalog: principals, approval stages, duration caps.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{is_email, secs, Cx, DAY, HOUR};
use crate::config::raw::{self, RawApp, RawRequired, RawStage};
use crate::config::tree::KeyPath;
use crate::config::{
    AppConfig, Approver, Principal, ReferenceConfig, ReferencePattern, RequestsConfig, Required,
    RoleConfig, Stage,
};

/// Generous for people, low enough that a script cannot flood approvers.
const DEFAULT_REQUESTS_PER_HOUR: u32 = 30;
const DEFAULT_REFUSED_CLICKS_PER_MINUTE: u32 = 10;
/// How a Slack user group is named wherever a person may be.
pub(super) const USERGROUP: &str = "usergroup:";

/// Groups as validated, for resolving references and counting approvers.
pub(super) struct Groups {
    pub(super) members: BTreeMap<String, Vec<String>>,
}

impl Groups {
    pub(super) fn defined(&self, name: &str) -> bool {
        self.members.contains_key(name)
    }

    pub(super) fn size(&self, name: &str) -> usize {
        let mut out = BTreeSet::new();
        let mut seen = BTreeSet::new();
        self.expand(name, &mut seen, &mut out);
        out.len()
    }

    pub(super) fn expand<'g>(
        &'g self,
        name: &'g str,
        seen: &mut BTreeSet<&'g str>,
        out: &mut BTreeSet<&'g str>,
    ) {
        if !seen.insert(name) {
            return;
        }
        for m in self.members.get(name).into_iter().flatten() {
            match m.strip_prefix("group:") {
                Some(g) => self.expand(g, seen, out),
                None => {
                    out.insert(m);
                }
            }
        }
    }
}

impl Cx<'_> {
    pub(super) fn groups(&mut self, path: &KeyPath, raw: &BTreeMap<String, Vec<String>>) -> Groups {
        let names: BTreeSet<&str> = raw.keys().map(String::as_str).collect();
        let mut members = BTreeMap::new();
        for (name, list) in raw {
            let gp = path.key(name);
            self.ident(&gp, name, "group name");
            let mut out: Vec<String> = Vec::new();
            for (i, m) in list.iter().enumerate() {
                let mp = gp.index(i);
                let member = if let Some(g) = m.strip_prefix("group:") {
                    if names.contains(g) {
                        Some(m.clone())
                    } else {
                        let known = names.iter().copied().collect::<Vec<_>>().join(", ");
                        self.at(
                            &mp,
                            format!("group {g:?} is not defined in [groups] (defined: {known})"),
                        );
                        None
                    }
                } else {
                    self.email(&mp, m)
                };
                if let Some(member) = member {
                    if !out.contains(&member) {
                        out.push(member);
                    }
                }
            }
            members.insert(name.clone(), out);
        }
        let groups = Groups { members };
        for name in groups.members.keys() {
            if let Some(cycle) = find_cycle(&groups, name) {
                self.at(
                    &path.key(name),
                    format!(
                        "groups include each other in a cycle: {}",
                        cycle.join(" → ")
                    ),
                );
                break;
            }
        }
        groups
    }

    pub(super) fn requests(
        &mut self,
        path: &KeyPath,
        raw: &raw::RawRequests,
        groups: &Groups,
    ) -> RequestsConfig {
        let max_duration = self.duration(
            &path.key("max_duration"),
            raw.max_duration.as_deref(),
            secs(30 * DAY),
        );
        let default_duration = self.duration(
            &path.key("default_duration"),
            raw.default_duration.as_deref(),
            secs(8 * HOUR),
        );
        if default_duration > max_duration {
            self.at(
                &path.key("default_duration"),
                format!(
                    "{} is longer than requests.max_duration ({})",
                    humantime::format_duration(default_duration),
                    humantime::format_duration(max_duration)
                ),
            );
        }
        RequestsConfig {
            default_duration,
            max_duration,
            reminder_after: self.duration(
                &path.key("reminder_after"),
                raw.reminder_after.as_deref(),
                secs(4 * HOUR),
            ),
            reminder_every: self.duration(
                &path.key("reminder_every"),
                raw.reminder_every.as_deref(),
                secs(DAY),
            ),
            stale_after: self.duration(
                &path.key("stale_after"),
                raw.stale_after.as_deref(),
                secs(7 * DAY),
            ),
            expiry_warning: self.duration(
                &path.key("expiry_warning"),
                raw.expiry_warning.as_deref(),
                secs(HOUR),
            ),
            nudge_cooldown: self.duration(
                &path.key("nudge_cooldown"),
                raw.nudge_cooldown.as_deref(),
                secs(HOUR),
            ),
            fallback_approvers: self.principals(
                &path.key("fallback_approvers"),
                &raw.fallback_approvers,
                groups,
            ),
            admins: self.principals(&path.key("admins"), &raw.admins, groups),
            allow_guests: raw.allow_guests.unwrap_or(false),
            requests_per_hour: self.count(
                &path.key("requests_per_hour"),
                raw.requests_per_hour,
                (DEFAULT_REQUESTS_PER_HOUR, 10_000),
                "requests per person per hour",
            ),
            refused_clicks_per_minute: self.count(
                &path.key("refused_clicks_per_minute"),
                raw.refused_clicks_per_minute,
                (DEFAULT_REFUSED_CLICKS_PER_MINUTE, 1_000),
                "refused clicks per person per minute",
            ),
            reference: raw
                .reference
                .as_ref()
                .map(|r| self.reference(&path.key("reference"), r)),
        }
    }

    /// A `reference` table: a label (default "Reference"), a pattern that
    /// compiles, a link that is https and has `{}` for the value.
    fn reference(&mut self, path: &KeyPath, raw: &raw::RawReference) -> ReferenceConfig {
        let label = raw
            .label
            .as_deref()
            .map_or("Reference", str::trim)
            .to_string();
        if label.is_empty() || label.chars().count() > 30 {
            self.at(&path.key("label"), "expected a label of 1 to 30 characters");
        }
        let pattern = raw.pattern.as_deref().and_then(|p| {
            ReferencePattern::new(p)
                .map_err(|e| self.at(&path.key("pattern"), e))
                .ok()
        });
        let link = raw.link.as_deref().map(str::trim).map(String::from);
        if let Some(l) = &link {
            let https = url::Url::parse(&l.replace("{}", "x")).is_ok_and(|u| u.scheme() == "https");
            if !l.contains("{}") || !https || l.contains(['|', '<', '>']) {
                self.at(
                    &path.key("link"),
                    "expected an https:// URL with {} where the reference goes, e.g. \"https://jira.example.com/browse/{}\"",
                );
            }
        }
        ReferenceConfig {
            label,
            required: raw.required.unwrap_or(false),
            pattern,
            link,
        }
    }

    /// A positive count up to `max`; `default` when absent.
    fn count(
        &mut self,
        key: &KeyPath,
        raw: Option<i64>,
        (default, max): (u32, u32),
        what: &str,
    ) -> u32 {
        match raw {
            None => default,
            Some(n) if n >= 1 && n <= i64::from(max) => n as u32,
            Some(n) => {
                self.at(key, format!("expected 1 to {max} {what}, found {n}"));
                default
            }
        }
    }

    pub(super) fn apps(
        &mut self,
        path: &KeyPath,
        raw: &[RawApp],
        groups: &Groups,
        requests: &RequestsConfig,
        provisioners: &BTreeSet<&str>,
    ) -> Vec<AppConfig> {
        let mut seen = BTreeMap::new();
        for (i, app) in raw.iter().enumerate() {
            self.unique_id(&path.index(i).key("id"), &app.id, &mut seen, "app");
        }
        // alias (lowercased) → where it was first defined
        let mut aliases: BTreeMap<String, KeyPath> = BTreeMap::new();
        let mut out = Vec::new();
        for (i, app) in raw.iter().enumerate() {
            let ap = path.index(i);
            let mut app_aliases = Vec::new();
            for (j, alias) in app.aliases.iter().enumerate() {
                let alp = ap.key("aliases").index(j);
                let lower = alias.trim().to_lowercase();
                if lower.is_empty() || lower.contains(char::is_whitespace) {
                    self.at(
                        &alp,
                        format!(
                            "invalid alias {alias:?}: expected a non-empty word without spaces"
                        ),
                    );
                } else if let Some(first) = aliases.get(&lower) {
                    self.at(&alp, format!("alias {alias:?} is already used at {first} (aliases are case-insensitive)"));
                } else if seen.contains_key(&lower) && lower != app.id {
                    self.at(&alp, format!("alias {alias:?} is the id of another app"));
                } else {
                    aliases.insert(lower.clone(), alp);
                    app_aliases.push(lower);
                }
            }
            // Emails and `usergroup:HANDLE` entries, split when the app is built.
            let mut owners = Vec::new();
            for (j, o) in app.owners.iter().enumerate() {
                let op = ap.key("owners").index(j);
                let owner = match o.trim().strip_prefix(USERGROUP) {
                    Some(h) => self.usergroup(&op, h).map(|h| format!("{USERGROUP}{h}")),
                    None => self.email(&op, o),
                };
                if let Some(e) = owner {
                    if !owners.contains(&e) {
                        owners.push(e);
                    }
                }
            }
            let max_duration = match &app.max_duration {
                None => requests.max_duration,
                Some(t) => {
                    let d = self.duration(&ap.key("max_duration"), Some(t), requests.max_duration);
                    self.not_longer(
                        &ap.key("max_duration"),
                        d,
                        requests.max_duration,
                        "requests.max_duration",
                    );
                    d
                }
            };
            if let Some(p) = &app.provisioner {
                if !provisioners.contains(p.as_str()) {
                    let known = if provisioners.is_empty() {
                        "none are defined".to_string()
                    } else {
                        format!(
                            "defined: {}",
                            provisioners.iter().copied().collect::<Vec<_>>().join(", ")
                        )
                    };
                    self.at(
                        &ap.key("provisioner"),
                        format!("provisioner {p:?} is not defined in [[provisioners]] ({known})"),
                    );
                }
            }
            let stages = match &app.stages {
                Some(s) => self.stages(&ap.key("stages"), s, &owners, groups),
                None if !owners.is_empty() => vec![Stage {
                    approvers: vec![Approver::Owners],
                    required: Required::Count(1),
                }],
                None if !requests.fallback_approvers.is_empty() => vec![Stage {
                    approvers: requests
                        .fallback_approvers
                        .iter()
                        .map(|p| match p {
                            Principal::Email(e) => Approver::Email(e.clone()),
                            Principal::Group(g) => Approver::Group(g.clone()),
                            Principal::UserGroup(h) => Approver::UserGroup(h.clone()),
                        })
                        .collect(),
                    required: Required::Count(1),
                }],
                None => Vec::new(),
            };
            let deny_requesters =
                self.principals(&ap.key("deny_requesters"), &app.deny_requesters, groups);
            let roles = self.roles(
                &ap.key("roles"),
                app,
                &owners,
                groups,
                max_duration,
                &stages,
            );
            let everything_auto = !roles.is_empty() && roles.iter().all(|r| r.auto_approve);
            if stages.is_empty() && !everything_auto {
                self.at(
                    &ap,
                    "nobody can approve requests for this app: set `stages` or `owners`, or set requests.fallback_approvers",
                );
            }
            let (owner_groups, owners): (Vec<String>, Vec<String>) =
                owners.into_iter().partition(|o| o.starts_with(USERGROUP));
            out.push(AppConfig {
                id: app.id.clone(),
                name: display_name(app.name.as_deref(), &app.id),
                description: app.description.clone(),
                aliases: app_aliases,
                owners,
                owner_groups: owner_groups
                    .iter()
                    .map(|o| o.trim_start_matches(USERGROUP).to_string())
                    .collect(),
                max_duration,
                provisioner: app.provisioner.clone(),
                stages,
                deny_requesters,
                roles,
                reference: match &app.reference {
                    Some(r) => Some(self.reference(&ap.key("reference"), r)),
                    None => requests.reference.clone(),
                },
            });
        }
        out
    }

    pub(super) fn not_longer(
        &mut self,
        path: &KeyPath,
        d: Duration,
        cap: Duration,
        cap_name: &str,
    ) {
        if d > cap {
            self.at(
                path,
                format!(
                    "{} is longer than {cap_name} ({})",
                    humantime::format_duration(d),
                    humantime::format_duration(cap)
                ),
            );
        }
    }

    pub(super) fn roles(
        &mut self,
        path: &KeyPath,
        app: &RawApp,
        owners: &[String],
        groups: &Groups,
        app_max: Duration,
        app_stages: &[Stage],
    ) -> Vec<RoleConfig> {
        let mut seen = BTreeMap::new();
        let mut out = Vec::new();
        for (i, role) in app.roles.iter().enumerate() {
            let rp = path.index(i);
            self.unique_id(&rp.key("id"), &role.id, &mut seen, "role");
            let max_duration = match &role.max_duration {
                None => app_max,
                Some(t) => {
                    let d = self.duration(&rp.key("max_duration"), Some(t), app_max);
                    self.not_longer(
                        &rp.key("max_duration"),
                        d,
                        app_max,
                        "the app's max_duration",
                    );
                    d
                }
            };
            let stages = match &role.stages {
                Some(s) => self.stages(&rp.key("stages"), s, owners, groups),
                None => app_stages.to_vec(),
            };
            let break_glass_by =
                self.principals(&rp.key("break_glass_by"), &role.break_glass_by, groups);
            if !role.break_glass && !role.break_glass_by.is_empty() {
                self.at(
                    &rp.key("break_glass_by"),
                    "has no effect unless this role sets break_glass = true",
                );
            }
            let entitlement = match &role.entitlement {
                Some(e) => self.non_empty(&rp.key("entitlement"), e),
                None => role.id.clone(),
            };
            out.push(RoleConfig {
                id: role.id.clone(),
                name: display_name(role.name.as_deref(), &role.id),
                description: role.description.clone(),
                entitlement,
                max_duration,
                stages,
                auto_approve: role.auto_approve,
                break_glass: role.break_glass,
                break_glass_by,
            });
        }
        out
    }

    pub(super) fn stages(
        &mut self,
        path: &KeyPath,
        raw: &[RawStage],
        owners: &[String],
        groups: &Groups,
    ) -> Vec<Stage> {
        if raw.is_empty() {
            self.at(
                path,
                "expected at least one stage, e.g. [{ approvers = [\"owners\"], required = 1 }]",
            );
        }
        let mut out = Vec::new();
        for (i, stage) in raw.iter().enumerate() {
            let sp = path.index(i);
            let mut approvers = Vec::new();
            let mut count = 0usize;
            let mut breakdown = Vec::new();
            if stage.approvers.is_empty() {
                self.at(&sp.key("approvers"), "expected at least one approver");
            }
            for (j, text) in stage.approvers.iter().enumerate() {
                let ap = sp.key("approvers").index(j);
                let approver = match text.trim() {
                    "owners" => {
                        if owners.is_empty() {
                            self.at(&ap, "`owners` is used but this app has no `owners`");
                            None
                        } else {
                            Some(Approver::Owners)
                        }
                    }
                    "manager" => Some(Approver::Manager),
                    t if t.starts_with(USERGROUP) => self
                        .usergroup(&ap, &t[USERGROUP.len()..])
                        .map(Approver::UserGroup),
                    t => match t.strip_prefix("group:") {
                        Some(g) if groups.defined(g) => Some(Approver::Group(g.to_string())),
                        Some(g) => {
                            self.at(&ap, undefined_group(g, groups));
                            None
                        }
                        None if is_email(t) => Some(Approver::Email(t.to_lowercase())),
                        None => {
                            self.at(
                                &ap,
                                format!("expected an email, \"group:NAME\", \"usergroup:HANDLE\", \"owners\" or \"manager\", found {text:?}"),
                            );
                            None
                        }
                    },
                };
                let Some(approver) = approver else { continue };
                if approvers.contains(&approver) {
                    continue;
                }
                // A Slack user group's size is known only at run time: a stage
                // naming one is checked then (too few members refuse the request).
                let n = match &approver {
                    Approver::Owners if owners.iter().any(|o| o.starts_with(USERGROUP)) => {
                        usize::MAX / 4
                    }
                    Approver::Owners => owners.len(),
                    Approver::Group(g) => groups.size(g),
                    Approver::UserGroup(_) => usize::MAX / 4,
                    Approver::Email(_) | Approver::Manager => 1,
                };
                breakdown.push(format!("{approver}: {n}"));
                count = count.saturating_add(n);
                approvers.push(approver);
            }
            let rp = sp.key("required");
            let required = match stage.required {
                RawRequired::All => Required::All,
                RawRequired::Count(n) if n < 1 => {
                    self.at(&rp, format!("expected at least 1 approval, found {n}"));
                    Required::Count(1)
                }
                RawRequired::Count(n) => {
                    let n = usize::try_from(n).unwrap_or(usize::MAX);
                    Required::Count(n)
                }
            };
            let needed = match required {
                Required::All => 1,
                Required::Count(n) => n,
            };
            if !approvers.is_empty() && needed > count {
                let what = match required {
                    Required::All => "\"all\"".to_string(),
                    Required::Count(n) => n.to_string(),
                };
                self.at(
                    &rp,
                    format!(
                        "required = {what} but the stage has only {count} approver(s) ({})",
                        breakdown.join(", ")
                    ),
                );
            }
            out.push(Stage {
                approvers,
                required,
            });
        }
        out
    }
}

pub(super) fn undefined_group(name: &str, groups: &Groups) -> String {
    let known: Vec<&str> = groups.members.keys().map(String::as_str).collect();
    if known.is_empty() {
        format!("group {name:?} is not defined: [groups] is empty")
    } else {
        format!(
            "group {name:?} is not defined in [groups] (defined: {})",
            known.join(", ")
        )
    }
}

fn display_name(name: Option<&str>, id: &str) -> String {
    name.map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(id)
        .to_string()
}

/// A cycle through group references starting at `start`, as names.
fn find_cycle(groups: &Groups, start: &str) -> Option<Vec<String>> {
    fn dfs(groups: &Groups, name: &str, stack: &mut Vec<String>) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|n| n == name) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(name.to_string());
            return Some(cycle);
        }
        stack.push(name.to_string());
        for m in groups.members.get(name).into_iter().flatten() {
            if let Some(g) = m.strip_prefix("group:") {
                if let Some(c) = dfs(groups, g, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        None
    }
    dfs(groups, start, &mut Vec::new())
}

//! Integration tests for `accessd::config`: the example file, defaults, and one test per error case.

use std::path::{Path, PathBuf};
use std::time::Duration;

use accessd::config::{
    self, Approver, Config, ConfigError, Principal, ProvisionerKind, Required, Reviewer, Schedule,
    Secret, SlackTokens, SourceKind,
};

const EXAMPLE: &str = include_str!("../config.example.toml");
const FILE: &str = "/etc/accessd/accessd.toml";

fn parse(text: &str) -> Result<Config, ConfigError> {
    config::parse(text, Path::new(FILE))
}

fn ok(text: &str) -> Config {
    parse(text).unwrap_or_else(|e| panic!("expected a valid config, got:\n{e}"))
}

fn err(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts the error names `key` and contains every fragment.
fn assert_err(text: &str, key: &str, fragments: &[&str]) -> String {
    let e = err(text);
    assert!(
        e.contains(&format!(": {key}: ")),
        "error should name `{key}`:\n{e}"
    );
    for f in fragments {
        assert!(e.contains(f), "error should contain {f:?}:\n{e}");
    }
    e
}

fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

const SLACK: &str = "[slack]\n";

// ---- the example and defaults ------------------------------------------------

#[test]
fn example_parses() {
    let c = ok(EXAMPLE);
    assert_eq!(c.slack.api_url, "https://slack.com/api");
    assert_eq!(c.slack.connections, 2);
    assert_eq!(c.database.path, PathBuf::from("/etc/accessd/accessd.db"));
    assert_eq!(
        c.server.listen,
        Some("127.0.0.1:9464".parse().expect("addr"))
    );
    assert_eq!(c.requests.max_duration, hours(30 * 24));
    assert_eq!(
        c.requests.fallback_approvers,
        vec![Principal::Group("it".into())]
    );

    let gh = c.app("github").expect("github app");
    assert_eq!(gh.aliases, vec!["gh"]);
    assert_eq!(gh.max_duration, hours(7 * 24));
    // No secret needed to run the example: the owners get a manual task.
    assert_eq!(gh.provisioner, None);
    let maintainer = gh.role("maintainer").expect("role");
    assert_eq!(maintainer.max_duration, hours(24));
    assert_eq!(maintainer.stages.len(), 2);
    assert_eq!(maintainer.stages[0].approvers, vec![Approver::Owners]);
    assert_eq!(maintainer.stages[1].required, Required::All);
    let read = gh.role("read").expect("role");
    assert!(read.auto_approve);
    assert_eq!(read.max_duration, hours(7 * 24), "inherits the app's cap");
    assert_eq!(read.stages, gh.stages, "inherits the app's stages");
    assert!(gh.role("admin").expect("role").break_glass);
    assert_eq!(c.find_app("GH").map(|a| a.id.as_str()), Some("github"));

    // An app with neither stages nor owners falls back to requests.fallback_approvers.
    let demo = c.app("demo").expect("demo app");
    assert_eq!(demo.stages[0].approvers, vec![Approver::Group("it".into())]);
    assert_eq!(demo.provisioner.as_deref(), Some("example-log"));

    // Only what runs without a secret is on; the rest is commented out.
    assert_eq!(c.sources.len(), 1);
    assert!(c.secret_files().is_empty(), "{:?}", c.secret_files());
    let hr = c.source("hr").expect("hr source");
    assert!(hr.authoritative);
    assert_eq!(hr.schedule, Schedule::Every(Duration::from_secs(900)));
    assert_eq!(
        hr.kind,
        SourceKind::File {
            path: "/etc/accessd/examples/people.json".into()
        }
    );
    assert_eq!(c.provisioners.len(), 1);
    let script = c.provisioner("example-log").expect("example-log");
    assert_eq!(script.timeout, Duration::from_secs(60));
    assert!(matches!(&script.kind, ProvisionerKind::Command { command, .. } if command.len() == 1));

    assert_eq!(c.alerts.watchlist, vec!["dropbox", "notion"]);
    assert_eq!(c.alerts.channels, Default::default());
    assert_eq!(c.audit.anchor_channel, None);
    assert!((c.alerts.mass_change_guard - 0.2).abs() < f64::EPSILON);
    let s = &c.reviews.schedules[0];
    assert_eq!(s.reviewer, Reviewer::Owners);
    assert_eq!(s.cron, Schedule::Cron("0 9 1 */3 *".into()));
    assert_eq!(s.due, hours(14 * 24));

    assert_eq!(c.group_members("eng-leads").map(|m| m.len()), Some(2));
    assert!(c.is_admin("SecOps@Example.com"));
}

#[test]
fn example_loads_from_disk() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let c = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.database.path,
        Path::new(env!("CARGO_MANIFEST_DIR")).join("accessd.db")
    );
}

#[test]
fn example_documents_every_key() {
    // Each `key =` line (commented out or not) must be preceded by a comment
    // line or carry one, so the example stays the schema's documentation.
    let lines: Vec<&str> = EXAMPLE.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if t.starts_with('#') || t.starts_with('[') || !t.contains(" = ") {
            continue;
        }
        let prev = lines[..i]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map_or("", |l| l.trim_start());
        let documented = prev.starts_with('#')
            || prev.contains(" = ")
            || prev.starts_with('[')
            || t.contains(" # ");
        assert!(documented, "line {} is not documented: {line}", i + 1);
    }
}

#[test]
fn minimal_config_has_defaults() {
    let c = ok(SLACK);
    assert_eq!(c.path, PathBuf::from(FILE));
    assert_eq!(c.slack.api_url, "https://slack.com/api");
    assert_eq!(c.slack.connections, 2);
    assert_eq!(c.slack.app_token_file, None);
    assert_eq!(c.database.path, PathBuf::from("/etc/accessd/accessd.db"));
    assert_eq!(
        c.server.listen,
        Some("127.0.0.1:9464".parse().expect("addr"))
    );
    assert!(!c.identity.require_known_email);
    assert_eq!(c.identity.link_refresh, hours(24));
    let r = &c.requests;
    assert_eq!(
        (
            r.default_duration,
            r.max_duration,
            r.reminder_after,
            r.reminder_every
        ),
        (hours(8), hours(30 * 24), hours(4), hours(24))
    );
    assert_eq!(
        (r.stale_after, r.expiry_warning, r.nudge_cooldown),
        (hours(7 * 24), hours(1), hours(1))
    );
    assert!(r.admins.is_empty() && r.fallback_approvers.is_empty());
    assert!(
        c.apps.is_empty()
            && c.sources.is_empty()
            && c.provisioners.is_empty()
            && c.groups.is_empty()
    );
    assert_eq!(
        c.alerts.digest_at,
        chrono::NaiveTime::from_hms_opt(9, 0, 0).expect("time")
    );
    assert!((c.alerts.mass_change_guard - 0.2).abs() < f64::EPSILON);
    assert_eq!(c.alerts.channels, Default::default());
    assert_eq!(c.reviews.reminder_every, hours(48));
    assert_eq!(c.reviews.closing_soon, hours(48));
}

#[test]
fn empty_listen_disables_the_server() {
    assert_eq!(ok("[server]\nlisten = \"\"\n").server.listen, None);
    assert_err(
        "[server]\nlisten = \"localhost\"\n",
        "server.listen",
        &["IP:port"],
    );
}

#[test]
fn api_url_is_normalised() {
    let c = ok("[slack]\napi_url = \"http://127.0.0.1:4000/api/\"\n");
    assert_eq!(c.slack.api_url, "http://127.0.0.1:4000/api");
    assert_err(
        "[slack]\napi_url = \"ftp://x/api\"\n",
        "slack.api_url",
        &["http"],
    );
    assert_err(
        "[slack]\napi_url = \"slack.com\"\n",
        "slack.api_url",
        &["invalid URL"],
    );
}

#[test]
fn relative_paths_resolve_against_the_config_folder() {
    let text = "[database]\npath = \"data/accessd.db\"\n[slack]\nbot_token_file = \"./bot\"\n\
                [[sources]]\nid = \"hr\"\nkind = \"file\"\npath = \"people.json\"\n";
    let c = config::parse(text, Path::new("/srv/accessd/conf/accessd.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.database.path,
        PathBuf::from("/srv/accessd/conf/data/accessd.db")
    );
    assert_eq!(
        c.slack.bot_token_file,
        Some(PathBuf::from("/srv/accessd/conf/bot"))
    );
    assert_eq!(
        c.sources[0].kind,
        SourceKind::File {
            path: "/srv/accessd/conf/people.json".into()
        }
    );
    let abs = ok("[database]\npath = \"/var/lib/accessd/a.db\"\n");
    assert_eq!(abs.database.path, PathBuf::from("/var/lib/accessd/a.db"));
    // A relative config path still yields an absolute database path.
    let rel = config::parse("", Path::new("accessd.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(rel.database.path.is_absolute(), "{:?}", rel.database.path);
}

// ---- syntax, types, unknown keys -----------------------------------------------

#[test]
fn unknown_top_level_key_names_key_and_line() {
    let e = err("[slack]\n\n[slak]\nconnections = 2\n");
    assert!(e.starts_with(&format!("{FILE}:3:2: slak: ")), "{e}");
    assert!(e.contains("unknown field `slak`"), "{e}");
}

#[test]
fn unknown_nested_key_names_key_and_line() {
    let e = err("[slack]\napi_url = \"https://slack.com/api\"\nconections = 2\n");
    assert_eq!(
        e.lines()
            .next()
            .map(|l| l.split(", expected").next().unwrap_or(l)),
        Some(format!("{FILE}:3:1: slack.conections: unknown field `conections`").as_str()),
        "{e}"
    );
}

#[test]
fn unknown_key_deep_in_arrays_is_located() {
    let text = format!("{SLACK}[[apps]]\nid = \"a\"\nowners = [\"o@x\"]\n[[apps.roles]]\nid = \"r\"\naprove = true\n");
    let e = assert_err(
        &text,
        "apps[0].roles[0].aprove",
        &["unknown field `aprove`"],
    );
    assert!(e.starts_with(&format!("{FILE}:7:1:")), "{e}");
}

#[test]
fn unknown_key_in_kind_specific_table_is_rejected() {
    let text =
        "[[sources]]\nid = \"hr\"\nkind = \"file\"\npath = \"p.json\"\nurl = \"https://x\"\n";
    let e = assert_err(
        text,
        "sources[0].url",
        &["unknown field `url`", "every kind accepts: id, kind"],
    );
    assert!(e.contains(":5:1:"), "{e}");
    let text =
        "[[provisioners]]\nid = \"p\"\nkind = \"command\"\ncommand = [\"x\"]\ntoken_file = \"t\"\n";
    assert_err(
        text,
        "provisioners[0].token_file",
        &["unknown field `token_file`"],
    );
}

#[test]
fn unknown_kind_lists_valid_kinds() {
    assert_err(
        "[[sources]]\nid = \"x\"\nkind = \"ldap\"\n",
        "sources[0].kind",
        &["\"ldap\"", "file, scim, okta, github, google, c1z"],
    );
    assert_err(
        "[[provisioners]]\nid = \"x\"\nkind = \"ssh\"\n",
        "provisioners[0].kind",
        &["scim, command, webhook, okta, github, baton"],
    );
    assert_err(
        "[[sources]]\nid = \"x\"\npath = \"p\"\n",
        "sources[0]",
        &["missing field `kind`"],
    );
}

#[test]
fn missing_required_field_in_kind_table() {
    assert_err(
        "[[provisioners]]\nid = \"s\"\nkind = \"scim\"\nurl = \"https://s\"\n",
        "provisioners[0]",
        &["missing field `token_file`"],
    );
}

#[test]
fn type_errors_name_the_key() {
    let e = assert_err(
        "[slack]\nconnections = \"two\"\n",
        "slack.connections",
        &["invalid type"],
    );
    assert!(e.contains(":2:15:"), "{e}");
    assert_err(
        "[requests]\nadmins = \"a@x\"\n",
        "requests.admins",
        &["expected a sequence"],
    );
}

#[test]
fn syntax_error_has_line_and_column() {
    let e = err("[slack]\nconnections = = 2\n");
    assert!(e.starts_with(&format!("{FILE}:2:")), "{e}");
}

#[test]
fn several_problems_are_all_reported() {
    let e = parse(
        "[slack]\nconnections = 0\n[requests]\nmax_duration = \"soon\"\nadmins = [\"nobody\"]\n",
    )
    .expect_err("three problems");
    let keys: Vec<_> = e.problems().filter_map(|p| p.key.clone()).collect();
    assert_eq!(
        keys,
        [
            "slack.connections",
            "requests.max_duration",
            "requests.admins[0]"
        ]
    );
    assert_eq!(e.to_string().lines().count(), 3);
}

// ---- tokens and secrets ------------------------------------------------------------

#[test]
fn inline_bot_token_is_refused_without_echo() {
    let e = err("[slack]\nbot_token = \"xoxb-123-secretvalue\"\n");
    assert!(
        e.contains(&format!("{FILE}:2:1: slack.bot_token: tokens are never written in the config file; set SLACK_BOT_TOKEN in the environment or slack.bot_token_file")),
        "{e}"
    );
    assert!(!e.contains("xoxb-123") && !e.contains("secretvalue"), "{e}");
}

#[test]
fn any_inline_token_is_refused_without_echo() {
    for text in [
        "[slack]\napp_token = \"xapp-1-A0-9999-abcdef\"\n",
        "[slack]\ntoken = \"xoxp-777-abcdef\"\n",
        "[slack]\napi_url = \"xoxb-777-abcdef\"\n",
        "[slack]\nconnections = \"xoxb-777-abcdef\"\n",
        "[[sources]]\nid = \"s\"\nkind = \"scim\"\nurl = \"https://s\"\ntoken = \"abcdef\"\n",
        "[requests]\nadmins = [\"xoxb-777-abcdef\"]\n",
    ] {
        let e = err(text);
        assert!(!e.contains("abcdef"), "token echoed:\n{e}");
        assert!(e.contains("never written in the config file"), "{e}");
    }
    assert_err(
        "[slack]\napp_token = \"xapp-x\"\n",
        "slack.app_token",
        &["SLACK_APP_TOKEN", "slack.app_token_file"],
    );
}

#[test]
fn url_credentials_are_refused() {
    assert_err(
        "[[provisioners]]\nid = \"w\"\nkind = \"webhook\"\nurl = \"https://u:pw@h/x\"\nsecret_file = \"k\"\n",
        "provisioners[0].url",
        &["credentials"],
    );
}

#[test]
fn tokens_from_env() {
    let c = ok(SLACK);
    let t = c
        .slack_tokens_with(|name| match name {
            "SLACK_APP_TOKEN" => Some("xapp-1-A1-abc\n".into()),
            "SLACK_BOT_TOKEN" => Some("xoxb-2-def".into()),
            _ => None,
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.app.expose(), "xapp-1-A1-abc");
    assert_eq!(t.bot.expose(), "xoxb-2-def");

    let e = c
        .slack_tokens_with(|_| None)
        .expect_err("missing")
        .to_string();
    assert!(
        e.contains("SLACK_APP_TOKEN") && e.contains("slack.app_token_file"),
        "{e}"
    );
    assert!(
        e.contains("SLACK_BOT_TOKEN") && e.contains("slack.bot_token_file"),
        "{e}"
    );
}

#[test]
fn tokens_with_wrong_prefix_are_not_echoed() {
    let c = ok(SLACK);
    let e = c
        .slack_tokens_with(|name| match name {
            "SLACK_APP_TOKEN" => Some("xoxb-swapped-111".into()),
            _ => Some("xapp-swapped-222".into()),
        })
        .expect_err("swapped")
        .to_string();
    assert!(
        e.contains("SLACK_APP_TOKEN") && e.contains("`xapp-`"),
        "{e}"
    );
    assert!(
        e.contains("SLACK_BOT_TOKEN") && e.contains("`xoxb-`"),
        "{e}"
    );
    assert!(!e.contains("swapped"), "{e}");

    let e = SlackTokens::new("nope-123".into(), "xoxb-1".into())
        .expect_err("bad")
        .to_string();
    assert!(
        e.contains("SLACK_APP_TOKEN") && e.contains("xapp-") && !e.contains("nope"),
        "{e}"
    );
}

#[test]
fn tokens_from_files_win_over_env() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("app"), "  xapp-from-file\n").expect("write");
    std::fs::write(dir.path().join("bot"), "xoxb-from-file\n").expect("write");
    let text = "[slack]\napp_token_file = \"app\"\nbot_token_file = \"bot\"\n";
    let c = config::parse(text, &dir.path().join("accessd.toml")).unwrap_or_else(|e| panic!("{e}"));
    let t = c
        .slack_tokens_with(|_| Some("xoxb-from-env".into()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (t.app.expose(), t.bot.expose()),
        ("xapp-from-file", "xoxb-from-file")
    );

    std::fs::write(dir.path().join("bot"), "\n  \n").expect("write");
    let e = c
        .slack_tokens_with(|_| None)
        .expect_err("empty")
        .to_string();
    assert!(
        e.contains("slack.bot_token_file") && e.contains("is empty"),
        "{e}"
    );

    std::fs::write(dir.path().join("bot"), "xapp-in-the-wrong-file").expect("write");
    let e = c
        .slack_tokens_with(|_| None)
        .expect_err("wrong")
        .to_string();
    assert!(
        e.contains("slack.bot_token_file") && e.contains("`xoxb-`") && !e.contains("wrong-file"),
        "{e}"
    );

    let missing = "[slack]\napp_token_file = \"nope\"\nbot_token_file = \"bot\"\n";
    let c =
        config::parse(missing, &dir.path().join("accessd.toml")).unwrap_or_else(|e| panic!("{e}"));
    let e = c
        .slack_tokens_with(|_| None)
        .expect_err("unreadable")
        .to_string();
    assert!(
        e.contains("slack.app_token_file") && e.contains("nope"),
        "{e}"
    );
}

#[test]
fn secret_debug_is_redacted() {
    let s = Secret::new("xoxb-123-topsecret".into());
    assert_eq!(format!("{s:?}"), "[redacted]");
    assert_eq!(format!("{s}"), "[redacted]");
    let t = SlackTokens::new("xapp-1-topsecret".into(), "xoxb-1-topsecret".into()).expect("valid");
    assert!(!format!("{t:?}").contains("topsecret"));
}

// ---- values ---------------------------------------------------------------------------

#[test]
fn bad_duration_names_key_and_value() {
    assert_err(
        "[requests]\nmax_duration = \"8 hourz\"\n",
        "requests.max_duration",
        &["invalid duration \"8 hourz\": "],
    );
}

#[test]
fn default_duration_may_not_exceed_max() {
    assert_err(
        "[requests]\ndefault_duration = \"2d\"\nmax_duration = \"1d\"\n",
        "requests.default_duration",
        &["longer than requests.max_duration"],
    );
}

#[test]
fn connections_range() {
    assert_err(
        "[slack]\nconnections = 0\n",
        "slack.connections",
        &["1 to 10", "found 0"],
    );
    assert_err(
        "[slack]\nconnections = 11\n",
        "slack.connections",
        &["1 to 10", "found 11"],
    );
    assert_eq!(ok("[slack]\nconnections = 10\n").slack.connections, 10);
}

#[test]
fn schedules_every_and_cron() {
    let c = ok("[[sources]]\nid = \"a\"\nkind = \"file\"\npath = \"a.json\"\nschedule = \"every 15m\"\n\
                [[sources]]\nid = \"b\"\nkind = \"c1z\"\npath = \"b.c1z\"\nschedule = \"0 */2 * * 1-5\"\n\
                [[sources]]\nid = \"c\"\nkind = \"file\"\npath = \"c.json\"\n");
    assert_eq!(
        c.sources[0].schedule,
        Schedule::Every(Duration::from_secs(900))
    );
    assert_eq!(
        c.sources[1].schedule,
        Schedule::Cron("0 */2 * * 1-5".into())
    );
    assert_eq!(
        c.sources[2].schedule,
        Schedule::Every(Duration::from_secs(900)),
        "default"
    );
    let t = chrono::DateTime::parse_from_rfc3339("2026-03-02T10:30:00Z")
        .expect("time")
        .to_utc();
    let next = c.sources[1]
        .schedule
        .next_after_in(t, &chrono::Utc)
        .expect("next");
    assert_eq!(next.to_rfc3339(), "2026-03-02T12:00:00+00:00");
    assert_eq!(
        c.sources[0].schedule.next_after(t).map(|n| n.to_rfc3339()),
        Some("2026-03-02T10:45:00+00:00".into())
    );
}

#[test]
fn bad_cron_names_key() {
    assert_err(
        "[[sources]]\nid = \"a\"\nkind = \"file\"\npath = \"a.json\"\nschedule = \"61 * * * *\"\n",
        "sources[0].schedule",
        &["invalid schedule \"61 * * * *\""],
    );
    assert_err(
        "[[reviews.schedules]]\nname = \"q\"\napps = [\"x\"]\nreviewer = \"manager\"\ncron = \"0 9 * *\"\ndue = \"7d\"\n",
        "reviews.schedules[0].cron",
        &["5-field cron"],
    );
    assert_err(
        "[[sources]]\nid = \"a\"\nkind = \"file\"\npath = \"a.json\"\nschedule = \"every now and then\"\n",
        "sources[0].schedule",
        &["invalid duration"],
    );
}

#[test]
fn undefined_group_is_refused() {
    assert_err(
        "[requests]\nadmins = [\"group:x\"]\n",
        "requests.admins[0]",
        &["group \"x\" is not defined"],
    );
    assert_err(
        "[groups]\nit = [\"a@x\"]\n[[apps]]\nid = \"a\"\nstages = [{ approvers = [\"group:x\"] }]\n",
        "apps[0].stages[0].approvers[0]",
        &["group \"x\" is not defined", "defined: it"],
    );
    assert_err(
        "[groups]\na = [\"group:b\"]\n",
        "groups.a[0]",
        &["\"b\" is not defined"],
    );
}

#[test]
fn group_cycles_are_refused() {
    assert_err(
        "[groups]\na = [\"group:b\"]\nb = [\"group:a\"]\n",
        "groups.a",
        &["cycle", "a → b → a"],
    );
}

#[test]
fn nested_groups_expand() {
    let c = ok("[groups]\na = [\"X@Example.com\", \"group:b\"]\nb = [\"y@example.com\", \"x@example.com\"]\n");
    let members: Vec<_> = c.group_members("a").expect("defined").into_iter().collect();
    assert_eq!(members, ["x@example.com", "y@example.com"]);
}

#[test]
fn undefined_provisioner_is_refused() {
    assert_err(
        "[[apps]]\nid = \"a\"\nowners = [\"o@x\"]\nprovisioner = \"nope\"\n",
        "apps[0].provisioner",
        &["\"nope\" is not defined", "none are defined"],
    );
}

#[test]
fn required_more_than_approvers() {
    let text = "[groups]\nleads = [\"a@x\", \"b@x\"]\n[[apps]]\nid = \"a\"\n\
                stages = [{ approvers = [\"group:leads\", \"manager\"], required = 4 }]\n";
    assert_err(
        text,
        "apps[0].stages[0].required",
        &["required = 4", "only 3 approver(s)"],
    );
    assert_err(
        "[[apps]]\nid = \"a\"\nstages = [{ approvers = [\"a@x\"], required = 0 }]\n",
        "apps[0].stages[0].required",
        &["at least 1"],
    );
    assert_err(
        "[[apps]]\nid = \"a\"\nstages = [{ approvers = [\"a@x\"], required = \"most\" }]\n",
        "apps[0].stages[0].required",
        &["\"all\""],
    );
}

#[test]
fn owners_approver_needs_owners() {
    assert_err(
        "[[apps]]\nid = \"a\"\nstages = [{ approvers = [\"owners\"] }]\n",
        "apps[0].stages[0].approvers[0]",
        &["no `owners`"],
    );
}

#[test]
fn duplicate_role_id_is_refused() {
    let text = "[[apps]]\nid = \"a\"\nowners = [\"o@x\"]\n[[apps.roles]]\nid = \"r\"\n[[apps.roles]]\nid = \"r\"\n";
    assert_err(
        text,
        "apps[0].roles[1].id",
        &["duplicate role id \"r\"", "apps[0].roles[0].id"],
    );
}

#[test]
fn app_ids_and_aliases() {
    assert_err(
        "[[apps]]\nid = \"Git Hub\"\nowners = [\"o@x\"]\n",
        "apps[0].id",
        &["invalid app id"],
    );
    assert_err(
        "[[apps]]\nid = \"a\"\nowners = [\"o@x\"]\n[[apps]]\nid = \"a\"\nowners = [\"o@x\"]\n",
        "apps[1].id",
        &["duplicate app id"],
    );
    assert_err(
        "[[apps]]\nid = \"a\"\naliases = [\"GH\"]\nowners = [\"o@x\"]\n[[apps]]\nid = \"b\"\naliases = [\"gh\"]\nowners = [\"o@x\"]\n",
        "apps[1].aliases[0]",
        &["already used at apps[0].aliases[0]"],
    );
    assert_err(
        "[[apps]]\nid = \"a\"\naliases = [\"b\"]\nowners = [\"o@x\"]\n[[apps]]\nid = \"b\"\nowners = [\"o@x\"]\n",
        "apps[0].aliases[0]",
        &["id of another app"],
    );
}

#[test]
fn duration_caps_nest() {
    assert_err(
        "[[apps]]\nid = \"a\"\nowners = [\"o@x\"]\nmax_duration = \"1d\"\n[[apps.roles]]\nid = \"r\"\nmax_duration = \"2d\"\n",
        "apps[0].roles[0].max_duration",
        &["longer than the app's max_duration"],
    );
    assert_err(
        "[requests]\nmax_duration = \"1d\"\n[[apps]]\nid = \"a\"\nowners = [\"o@x\"]\nmax_duration = \"2d\"\n",
        "apps[0].max_duration",
        &["longer than requests.max_duration"],
    );
}

#[test]
fn app_without_any_approver_is_refused() {
    assert_err(
        &format!("{SLACK}[[apps]]\nid = \"a\"\n"),
        "apps[0]",
        &["nobody can approve"],
    );
}

#[test]
fn emails_are_lowercased_and_checked() {
    let c = ok("[requests]\nadmins = [\"SecOps@Example.COM\"]\n");
    assert_eq!(
        c.requests.admins,
        vec![Principal::Email("secops@example.com".into())]
    );
    assert_err(
        "[requests]\nfallback_approvers = [\"bob\"]\n",
        "requests.fallback_approvers[0]",
        &["\"bob\""],
    );
}

#[test]
fn ids_of_sources_and_provisioners_are_unique() {
    assert_err(
        "[[sources]]\nid = \"s\"\nkind = \"file\"\npath = \"a\"\n[[sources]]\nid = \"s\"\nkind = \"file\"\npath = \"b\"\n",
        "sources[1].id",
        &["duplicate source id"],
    );
    assert_err(
        "[[provisioners]]\nid = \"p\"\nkind = \"command\"\ncommand = [\"a\"]\n[[provisioners]]\nid = \"p\"\nkind = \"command\"\ncommand = [\"b\"]\n",
        "provisioners[1].id",
        &["duplicate provisioner id"],
    );
}

#[test]
fn command_provisioner() {
    assert_err(
        "[[provisioners]]\nid = \"p\"\nkind = \"command\"\ncommand = []\n",
        "provisioners[0].command",
        &["non-empty"],
    );
    let c = ok("[[provisioners]]\nid = \"p\"\nkind = \"command\"\ncommand = [\"./bin/prov\", \"--x\"]\nenv = { MODE = \"live\" }\n");
    match &c.provisioners[0].kind {
        ProvisionerKind::Command { command, env } => {
            assert_eq!(command, &["/etc/accessd/bin/prov", "--x"]);
            assert_eq!(env.get("MODE").map(String::as_str), Some("live"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn alerts_values_are_checked() {
    assert_err(
        "[alerts]\nmass_change_guard = 0\n",
        "alerts.mass_change_guard",
        &["greater than 0"],
    );
    assert_err(
        "[alerts]\nmass_change_guard = 1.5\n",
        "alerts.mass_change_guard",
        &["at most 1"],
    );
    assert!(
        ok("[alerts]\nmass_change_guard = 1\n")
            .alerts
            .mass_change_guard
            > 0.99
    );
    assert_err(
        "[alerts]\ndigest_at = \"9am\"\n",
        "alerts.digest_at",
        &["HH:MM"],
    );
    assert_err(
        "[alerts.channels]\nnew_app = \"it ops\"\n",
        "alerts.channels.new_app",
        &["channel"],
    );
    assert_err(
        "[alerts]\nwatchlist = [\"Drop Box\"]\n",
        "alerts.watchlist[0]",
        &["app id"],
    );
    let c = ok("[alerts.channels]\nnew_app = \"C0123ABCD\"\nbreak_glass = \"#sec\"\n");
    assert_eq!(c.alerts.channels.new_app.as_deref(), Some("C0123ABCD"));
}

#[test]
fn review_schedules() {
    let base = "[[reviews.schedules]]\nname = \"q\"\napps = [\"github\"]\ncron = \"every 90d\"\ndue = \"14d\"\n";
    assert_err(
        &format!("{base}reviewer = \"owners\"\n"),
        "reviews.schedules[0].apps[0]",
        &["with `owners`"],
    );
    assert_err(
        &format!("{base}reviewer = \"someone\"\n"),
        "reviews.schedules[0].reviewer",
        &["\"owners\", \"manager\" or an email"],
    );
    let c = ok(&format!("{base}reviewer = \"Audit@Example.com\"\n"));
    assert_eq!(
        c.reviews.schedules[0].reviewer,
        Reviewer::Email("audit@example.com".into())
    );
}

#[test]
fn errors_render_file_line_column_key_message() {
    let e = parse("[slack]\nconnections = 0\n").expect_err("bad");
    assert_eq!(e.file, PathBuf::from(FILE));
    assert_eq!(e.key.as_deref(), Some("slack.connections"));
    assert_eq!(e.line_col, Some((2, 15)));
    assert_eq!(
        e.to_string(),
        format!(
            "{FILE}:2:15: slack.connections: expected 1 to 10 Socket Mode connections, found 0"
        )
    );
}

#[test]
fn load_reports_unreadable_file() {
    let e = config::load(Path::new("/nonexistent/accessd.toml"))
        .expect_err("missing")
        .to_string();
    assert!(
        e.starts_with("/nonexistent/accessd.toml: cannot read"),
        "{e}"
    );
}

#[test]
fn break_glass_by_needs_break_glass() {
    let text = r#"
[[apps]]
id = "github"
owners = ["dana@example.com"]

  [[apps.roles]]
  id = "admin"
  break_glass_by = ["ann@example.com"]
"#;
    assert_err(
        text,
        "apps[0].roles[0].break_glass_by",
        &["break_glass = true"],
    );
    let listed = ok(&text.replace("  break_glass_by", "  break_glass = true\n  break_glass_by"));
    let role = listed.apps[0].role("admin").expect("role");
    assert!(role.break_glass && !role.break_glass_by.is_empty());
}

#[test]
fn per_person_limits_default_and_must_be_positive() {
    let c = ok("");
    assert_eq!(c.requests.requests_per_hour, 30);
    assert_eq!(c.requests.refused_clicks_per_minute, 10);
    let c = ok("[requests]\nrequests_per_hour = 5\nrefused_clicks_per_minute = 2\n");
    assert_eq!(c.requests.requests_per_hour, 5);
    assert_eq!(c.requests.refused_clicks_per_minute, 2);
    assert_err(
        "[requests]\nrequests_per_hour = 0\n",
        "requests.requests_per_hour",
        &["expected 1 to 10000", "found 0"],
    );
    assert_err(
        "[requests]\nrefused_clicks_per_minute = -1\n",
        "requests.refused_clicks_per_minute",
        &["expected 1 to 1000", "found -1"],
    );
}

#[test]
fn the_audit_anchor_defaults_to_daily_and_needs_its_channel() {
    let c = ok("");
    assert_eq!(c.audit.anchor_channel, None);
    let c = ok("[audit]\nanchor_channel = \"#audit\"\n");
    assert_eq!(c.audit.anchor_channel.as_deref(), Some("#audit"));
    assert_eq!(c.audit.anchor_every, Duration::from_secs(24 * 3600));
    let c = ok("[audit]\nanchor_channel = \"C0AUDIT\"\nanchor_every = \"6h\"\n");
    assert_eq!(c.audit.anchor_every, Duration::from_secs(6 * 3600));
    assert_err(
        "[audit]\nanchor_every = \"6h\"\n",
        "audit.anchor_every",
        &["has no effect without audit.anchor_channel"],
    );
    assert_err(
        "[audit]\nanchor_channel = \"audit log\"\n",
        "audit.anchor_channel",
        &["invalid channel"],
    );
    assert_err(
        "[audit]\nanchor_channel = \"#audit\"\nanchor_every = \"0s\"\n",
        "audit.anchor_every",
        &["greater than zero"],
    );
}

#[test]
fn plain_http_is_refused_unless_loopback_or_allowed_on_that_entry() {
    let scim = |url: &str, extra: &str| {
        format!(
            "[[provisioners]]\nid = \"scim\"\nkind = \"scim\"\nurl = \"{url}\"\ntoken_file = \"t\"\n{extra}"
        )
    };
    assert_err(
        &scim("http://scim.internal.example/v2", ""),
        "provisioners[0].url",
        &[
            "plain http://",
            "scim.internal.example",
            "allow_insecure_http = true",
        ],
    );
    for loopback in [
        "http://127.0.0.1:8645",
        "http://127.9.9.9",
        "http://localhost:9000/scim",
        "http://[::1]:8080",
    ] {
        ok(&scim(loopback, ""));
    }
    let c = ok(&scim(
        "http://scim.internal.example/v2",
        "allow_insecure_http = true\n",
    ));
    assert_eq!(
        c.provisioners[0].kind.urls(),
        ["http://scim.internal.example/v2"]
    );
    // Set where nothing needs it, the key would claim a choice the code never makes.
    assert_err(
        &scim(
            "https://scim.example.com/v2",
            "allow_insecure_http = true\n",
        ),
        "provisioners[0].allow_insecure_http",
        &["has no effect"],
    );
    assert_err(
        "[[provisioners]]\nid = \"hook\"\nkind = \"webhook\"\nurl = \"http://10.0.0.5/hook\"\nsecret_file = \"s\"\n",
        "provisioners[0].url",
        &["plain http://"],
    );
    assert_err(
        "[[sources]]\nid = \"okta\"\nkind = \"okta\"\nurl = \"http://example.okta.com\"\ntoken_file = \"t\"\n",
        "sources[0].url",
        &["plain http://"],
    );
    assert_err(
        "[[sources]]\nid = \"gh\"\nkind = \"github\"\norg = \"acme\"\ntoken_file = \"t\"\napi_url = \"http://ghe.example.com/api/v3\"\n",
        "sources[0].api_url",
        &["plain http://"],
    );
    assert_err(
        "[[sources]]\nid = \"hr\"\nkind = \"file\"\npath = \"hr.json\"\nallow_insecure_http = true\n",
        "sources[0].allow_insecure_http",
        &["has no effect"],
    );
    assert_err(
        "[slack]\napi_url = \"http://slack.example.com/api\"\n",
        "slack.api_url",
        &["plain http://"],
    );
    ok("[slack]\napi_url = \"http://slack.example.com/api\"\nallow_insecure_http = true\n");
}

/// The example as a user turns everything on: each commented-out key line
/// and table header uncommented (`# # note` stays a note).
fn example_all_on() -> String {
    let key = |t: &str| {
        t.starts_with("[[")
            || t.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            })
    };
    EXAMPLE
        .lines()
        .map(|line| match line.trim_start().strip_prefix("# ") {
            Some(rest) if key(rest) => rest.to_string(),
            Some(rest) if rest.starts_with("# ") => format!("# {}", &rest[2..]),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_integration_the_example_comments_out_is_valid_once_uncommented() {
    let c = ok(&example_all_on());
    assert_eq!(c.sources.len(), 7);
    assert_eq!(c.provisioners.len(), 7);
    assert_eq!(
        c.app("github").unwrap().provisioner.as_deref(),
        Some("github-scim")
    );
    assert_eq!(
        c.alerts.channels.break_glass.as_deref(),
        Some("#sec-alerts")
    );
    assert_eq!(c.audit.anchor_channel.as_deref(), Some("#audit"));
    // Each needs its secret file: all are named, none is read by parsing.
    let keys: Vec<String> = c.secret_files().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "slack.app_token_file",
            "slack.bot_token_file",
            "sources[1].token_file",
            "sources[2].token_file",
            "sources[3].token_file",
            "sources[4].credentials_file",
            "provisioners[1].token_file",
            "provisioners[2].token_file",
            "provisioners[3].token_file",
            "provisioners[6].secret_file",
        ]
    );
}

#[test]
fn a_command_provisioners_env_values_never_show_in_debug() {
    let c = ok("[[provisioners]]\nid = \"p\"\nkind = \"command\"\ncommand = [\"/bin/true\"]\nenv = { GH_TOKEN = \"ghp_very_secret\" }\n");
    for shown in [format!("{c:?}"), format!("{:?}", c.provisioners[0].kind)] {
        assert!(shown.contains("GH_TOKEN"), "{shown}");
        assert!(!shown.contains("ghp_very_secret"), "{shown}");
    }
}

#[test]
fn every_provisioner_kind_is_built_and_accepted() {
    let c = ok("[[provisioners]]\nid = \"o\"\nkind = \"okta\"\nurl = \"https://example.okta.com\"\ntoken_file = \"t\"\n");
    assert_eq!(c.provisioners[0].kind.name(), "okta");
    let c = ok("[[provisioners]]\nid = \"g\"\nkind = \"github\"\norg = \"acme\"\ntoken_file = \"t\"\nlogins = { \"Ann@Example.com\" = \"ann-gh\" }\n");
    match &c.provisioners[0].kind {
        ProvisionerKind::Github {
            logins, api_url, ..
        } => {
            assert_eq!(
                logins.get("ann@example.com").map(String::as_str),
                Some("ann-gh")
            );
            assert_eq!(api_url, "https://api.github.com");
        }
        other => panic!("{other:?}"),
    }
    assert_err(
        "[[provisioners]]\nid = \"g\"\nkind = \"github\"\norg = \"acme\"\ntoken_file = \"t\"\nlogins = { \"ann\" = \"ann gh\" }\n",
        "provisioners[0].logins.ann",
        &["expected an email"],
    );
    let c = ok("[[provisioners]]\nid = \"b\"\nkind = \"baton\"\nconnector = [\"baton-x\"]\nc1z_path = \"x.c1z\"\nenv = { BATON_API_KEY = \"k-secret\" }\n");
    assert!(
        matches!(&c.provisioners[0].kind, ProvisionerKind::Baton { env, .. } if env.len() == 1)
    );
    assert!(!format!("{c:?}").contains("k-secret"));
    assert_err(
        "[[provisioners]]\nid = \"x\"\nkind = \"ldap\"\n",
        "provisioners[0].kind",
        &["ldap"],
    );
}

// ---- Slack itself -------------------------------------------------------------

const SLACK_ITSELF: &str = r##"
[requests]
admins = ["usergroup:secops", "ann@example.com"]
fallback_approvers = ["usergroup:it-leads"]

[alerts.channels]
privileged = "#sec-alerts"

[[sources]]
id = "workspace"
kind = "slack"
scim_token_file = "slack-scim"

[[provisioners]]
id = "slack-groups"
kind = "slack_usergroup"

[[apps]]
id = "slack"
owners = ["usergroup:slack-admins", "bob@example.com"]
provisioner = "slack-groups"
stages = [{ approvers = ["usergroup:@SRE-Leads"], required = 1 }]
deny_requesters = ["usergroup:contractors"]

  [[apps.roles]]
  id = "oncall"
  entitlement = "oncall"
  break_glass = true
  break_glass_by = ["usergroup:incident-commanders"]
"##;

#[test]
fn slack_itself_is_a_source_a_provisioner_and_user_groups_wherever_people_are_named() {
    let c = ok(SLACK_ITSELF);
    let source = &c.sources[0];
    assert_eq!(source.app, "slack", "the workspace is the app `slack`");
    match &source.kind {
        SourceKind::Slack {
            api_url,
            token_file,
            scim_token_file,
            scim_url,
        } => {
            assert_eq!(api_url, "https://slack.com/api");
            assert_eq!(token_file, &None, "the bot token by default");
            assert_eq!(
                scim_token_file.as_deref(),
                Some(Path::new("/etc/accessd/slack-scim"))
            );
            assert_eq!(scim_url, "https://api.slack.com/scim/v2");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        c.provisioners[0].kind,
        ProvisionerKind::SlackUsergroup {
            token_file: None,
            ..
        }
    ));
    assert_eq!(c.alerts.channels.privileged.as_deref(), Some("#sec-alerts"));
    let app = c.app("slack").unwrap();
    assert_eq!(app.owners, ["bob@example.com"]);
    assert_eq!(app.owner_groups, ["slack-admins"]);
    assert_eq!(
        app.stages[0].approvers,
        [Approver::UserGroup("sre-leads".into())]
    );
    assert_eq!(
        app.deny_requesters,
        [Principal::UserGroup("contractors".into())]
    );
    assert!(c
        .requests
        .admins
        .contains(&Principal::UserGroup("secops".into())));
    let uses: Vec<(String, String)> = c.usergroup_uses();
    let handles: Vec<&str> = uses.iter().map(|(_, h)| h.as_str()).collect();
    assert_eq!(
        handles,
        [
            "secops",
            "it-leads",
            "slack-admins",
            "contractors",
            "sre-leads",
            "incident-commanders"
        ]
    );
    assert_eq!(uses[4].0, "apps.slack.stages");
    // Nobody is in a group that was never read: no one is an admin through it.
    assert!(c.is_admin("ann@example.com"));
    assert!(c.owners_of(app) == ["bob@example.com"]);
}

#[test]
fn govslack_deactivates_through_its_own_scim_and_bad_handles_name_their_key() {
    let gov = ok("[slack]\napi_url = \"https://slack-gov.com/api\"\n\n[[sources]]\nid = \"ws\"\nkind = \"slack\"\nscim_token_file = \"t\"\n");
    match &gov.sources[0].kind {
        SourceKind::Slack { scim_url, .. } => {
            assert_eq!(scim_url, "https://api.slack-gov.com/scim/v1")
        }
        other => panic!("{other:?}"),
    }
    assert_err(
        "[requests]\nadmins = [\"usergroup:sre leads\"]\n",
        "requests.admins[0]",
        &["invalid Slack user group handle"],
    );
    assert_err(
        "[[apps]]\nid = \"a\"\nstages = [{ approvers = [\"usergroup:\"], required = 1 }]\n",
        "apps[0].stages[0].approvers[0]",
        &["invalid Slack user group handle"],
    );
    assert_err(
        "[[sources]]\nid = \"ws\"\nkind = \"slack\"\nscim_url = \"http://scim.example.com\"\nscim_token_file = \"t\"\n",
        "sources[0].scim_url",
        &["plain http://"],
    );
    assert_err(
        "[[provisioners]]\nid = \"g\"\nkind = \"slack_usergroup\"\nurl = \"https://x\"\n",
        "provisioners[0].url",
        &["unknown field"],
    );
}

#[test]
fn a_review_schedule_may_keep_its_own_reminders() {
    let base = "[[apps]]\nid = \"github\"\nowners = [\"ann@example.com\"]\n\n[[reviews.schedules]]\nname = \"Monthly\"\napps = [\"github\"]\nreviewer = \"owners\"\ncron = \"0 9 1 * *\"\ndue = \"14d\"\n";
    let c = ok(&format!(
        "{base}remind_every = \"2d\"\nclosing_soon = \"6h\"\n"
    ));
    let n = c.reviews.schedules[0].notifications;
    assert_eq!(n.remind_every, Some(hours(48)));
    assert_eq!(n.closing_soon, Some(hours(6)));
    assert!(n.reminders);
    let quiet = ok(&format!("{base}no_reminders = true\n"));
    assert!(!quiet.reviews.schedules[0].notifications.reminders);
    assert_err(
        &format!("{base}no_reminders = true\nremind_every = \"1d\"\n"),
        "reviews.schedules[0].no_reminders",
        &["contradicts remind_every"],
    );
}

#[test]
fn a_reference_needs_a_pattern_that_compiles_and_an_https_link_with_a_slot() {
    let c = ok("[requests]\nreference = { label = \"Ticket\", pattern = \"^[A-Z]+-[0-9]+$\", link = \"https://jira.example.com/browse/{}\" }\n\n[[apps]]\nid = \"wiki\"\nowners = [\"ann@example.com\"]\n\n[[apps]]\nid = \"aws\"\nowners = [\"ann@example.com\"]\nreference = { label = \"Change\", required = true }\n");
    let wiki = c
        .app("wiki")
        .unwrap()
        .reference
        .as_ref()
        .expect("inherited");
    assert_eq!(wiki.label, "Ticket");
    assert!(!wiki.required);
    let aws = c.app("aws").unwrap().reference.as_ref().expect("its own");
    assert_eq!(aws.label, "Change");
    assert!(aws.required && aws.pattern.is_none());
    assert_err(
        "[requests]\nreference = { pattern = \"([\" }\n",
        "requests.reference.pattern",
        &["invalid pattern"],
    );
    assert_err(
        "[requests]\nreference = { link = \"http://jira.example.com/browse/\" }\n",
        "requests.reference.link",
        &["https://", "{}"],
    );
    assert_err(
        "[requests]\nreference = { lable = \"x\" }\n",
        "requests.reference.lable",
        &["unknown field"],
    );
}

//! `slack` source benchmark (`cargo bench --bench slack_source`): a workspace
//! of `SLACK_MEMBERS` members (default 50,000) and `SLACK_GROUPS` user groups
//! (default 2,000, 25 members each) in the fake Slack, read page by page
//! (`users.list`, 200 a page) over loopback HTTP and synced into a real
//! SQLite store: the baseline, then an unchanged sync, then one with 1 % of
//! the members changed (roles and groups).
//!
//! The fake Slack runs in this process; the syncs run in a child process
//! (this binary re-executed with `SLACK_PHASE=sync`), so the peak RSS
//! (`VmHWM`) printed is accessd's alone. Figures are printed, not asserted.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use accessd::config::Secret;
use accessd::sources::AnySource;
use accessd::store::Store;
use accessd::sync::{sync_source, SyncOutcome};
use serde_json::json;
use support::{FakeSlack, BOT_TOKEN};

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn member(i: usize) -> (String, String, String) {
    (
        format!("U{i:07}"),
        format!("person{i}@example.com"),
        format!("Person {i}"),
    )
}

/// Deterministic flags: a few owners and admins, some guests, some bots.
fn flags(u: &mut serde_json::Value, i: usize, changed: bool) {
    let bump = usize::from(changed);
    u["is_admin"] = json!((i + bump) % 500 == 0);
    u["is_owner"] = json!(i % 5000 == 0);
    u["is_restricted"] = json!((i + bump) % 40 == 0);
    u["is_ultra_restricted"] = json!(i % 400 == 0);
    u["is_bot"] = json!(i % 1000 == 7);
    u["deleted"] = json!(i % 300 == 0);
}

fn groups(fake: &FakeSlack, members: usize, count: usize, shift: usize) {
    for g in 0..count {
        let ids: Vec<String> = (0..25)
            .map(|k| member((g * 25 + k + shift) % members).0)
            .collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        fake.add_usergroup(&format!("S{g:06}"), &format!("team-{g}"), &refs);
    }
}

/// In the child: three syncs against the fake at `SLACK_API`, printing one
/// line each; the parent changes the workspace between them on a signal
/// through stdin.
fn phase_sync(dir: &Path) {
    let api = std::env::var("SLACK_API").expect("SLACK_API");
    let text = format!(
        "[slack]\napi_url = \"{api}\"\n\n[database]\npath = \"{}\"\n\n[[sources]]\nid = \"workspace\"\nkind = \"slack\"\n",
        dir.join("bench.db").display()
    );
    let path = dir.join("accessd.toml");
    std::fs::write(&path, text).expect("write config");
    let config = accessd::config::load(&path).expect("config");
    let source = config.sources[0].clone();
    let reader =
        AnySource::from_config(&source, Some(&Secret::new(BOT_TOKEN.into()))).expect("reader");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let store = Store::open(&config.database.path).expect("store");
    for label in ["baseline", "unchanged", "1 % changed"] {
        if label == "1 % changed" {
            // Wait for the parent to change the workspace.
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).expect("signal");
        }
        let started = Instant::now();
        let outcome = runtime
            .block_on(sync_source(
                &store, &config, &source, &reader, "bench", true,
            ))
            .expect("store");
        let secs = started.elapsed().as_secs_f64();
        let what = match &outcome {
            SyncOutcome::Baseline { accounts, .. } => format!("{accounts} accounts"),
            SyncOutcome::Applied { summary, .. } => summary.to_string(),
            other => panic!("sync: {other}"),
        };
        println!(
            "{label:<12} {secs:>6.2} s   peak RSS so far {:>6.1} MB   {what}",
            status_kb("VmHWM:") as f64 / 1024.0
        );
        if label == "unchanged" {
            println!("@ready");
        }
    }
}

fn main() {
    if std::env::var("SLACK_PHASE").as_deref() == Ok("sync") {
        let dir = std::env::var("SLACK_DIR").expect("SLACK_DIR");
        phase_sync(Path::new(&dir));
        return;
    }
    let members = env_n("SLACK_MEMBERS", 50_000);
    let count = env_n("SLACK_GROUPS", 2_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fake = runtime.block_on(FakeSlack::start());
    let people: Vec<(String, String, String)> = (0..members).map(member).collect();
    fake.add_users(&people, |i, u| flags(u, i, false));
    groups(&fake, members, count, 0);
    println!(
        "slack_source: {members} members, {count} user groups of 25; users.list 200 a page over loopback; syncs in a child process"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let _guard = runtime.enter();
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .env("SLACK_PHASE", "sync")
        .env("SLACK_DIR", dir.path())
        .env("SLACK_API", fake.api_url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("child");
    let stdout = child.stdout.take().expect("stdout");
    let mut stdin = child.stdin.take().expect("stdin");
    // The fake serves from the runtime's worker threads while the child
    // syncs; this thread echoes the child's lines and says when it is ready.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let echo = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.expect("line");
            if line == "@ready" {
                let _ = ready_tx.send(());
            } else {
                println!("  {line}");
            }
        }
    });
    ready_rx.recv().expect("the child stopped early");
    // 1 % of the members change role or group.
    fake.update_users(|_, u| {
        // By member number (the directory may hold others, the bot first).
        let n = u["id"]
            .as_str()
            .and_then(|id| id[1..].parse::<usize>().ok());
        if let Some(n) = n.filter(|n| n % 100 == 0) {
            flags(u, n, true)
        }
    });
    groups(&fake, members, count / 100, 1);
    {
        use std::io::Write;
        writeln!(stdin, "go").expect("signal");
    }
    echo.join().expect("echo");
    let status = child.wait().expect("child");
    assert!(status.success(), "the sync child failed");
}

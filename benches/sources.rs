//! Source sync benchmark (`cargo bench --bench sources`): the pure snapshot
//! diff of `SOURCES_N` accounts (default 100,000) with ~1 % changed, and whole
//! syncs of a `file` source through `sync_source` into a real SQLite store —
//! baseline, ~1 % changed, unchanged — each with its wall time and the peak
//! RSS of its own child process (`VmHWM`), then a step-by-step breakdown of
//! the changed sync (where the time and memory go).
//!
//! Every phase runs in a child process (this binary re-executed with
//! `SOURCES_PHASE` set) so each phase's peak RSS is its own; CPU time is
//! printed next to wall time because the machine may be shared.
//! `SOURCES_KEEP=1` keeps the generated files and databases for profiling.
//! Figures are printed, not asserted: DESIGN.md section 8 gives the targets
//! (≤ 1 s, ≤ 200 MB).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use accessd::domain::diff::{diff, MassRemoval, Summary};
use accessd::sources::{file, Account, AccountStatus, AnySource, Snapshot, SourceApp};
use accessd::store::{Store, SyncRecord};
use accessd::sync::{sync_source, SyncOutcome};
use serde_json::{json, Value};

const TARGET_SECS: f64 = 1.0;
const TARGET_MB: f64 = 200.0;
const APPS: [(&str, &str); 5] = [
    ("hr", "Workday"),
    ("github", "GitHub"),
    ("slack", "Slack"),
    ("dropbox", "Dropbox"),
    ("notion", "Notion"),
];
const WATCHED: &str = "dropbox";
const FIRST: [&str; 12] = [
    "Ann", "Bob", "Carol", "Dan", "Eve", "Farid", "Grace", "Hiro", "Ines", "Jon", "Kemi", "Lena",
];
const LAST: [&str; 10] = [
    "Lee", "Ray", "Okafor", "Novak", "Silva", "Tanaka", "Meyer", "Haddad", "Kowalski", "Ng",
];
/// Results travel from a child to the parent as one JSON line with this prefix.
const RESULT: &str = "@result ";

// ---------------------------------------------------------------- data

/// Deterministic per-(stream, index) randomness: the parent and the children
/// generate the same snapshots without sharing them.
fn mix(stream: u64, i: u64) -> u64 {
    let mut z = stream
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(i)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn email(person: u64) -> String {
    let first = FIRST[(person % 12) as usize].to_lowercase();
    let last = LAST[(person / 12 % 10) as usize].to_lowercase();
    // One in ten as an HR export would write it: mixed case, padded.
    if person % 10 == 3 {
        format!(
            " {}.{}{person}@Example.COM",
            FIRST[(person % 12) as usize],
            last
        )
    } else {
        format!("{first}.{last}{person}@example.com")
    }
}

/// Account `i` of a source with `n` accounts: people hold ~2.5 accounts each
/// in distinct apps; ~5 % of people are offboarded (all their accounts
/// suspended or deprovisioned), ~5 % of the other accounts pending or
/// suspended; 0–5 entitlements, unsorted, sometimes repeated.
fn account(n: u64, i: u64) -> Account {
    let people = (n * 2 / 5).max(1);
    let person = i % people;
    let (app, _) = APPS[((i / people + person) % 5) as usize];
    person_account(app, person, i)
}

fn person_account(app: &str, person: u64, seed: u64) -> Account {
    let offboarded = mix(1, person) % 100;
    let own = mix(2, seed) % 100;
    let status = match (offboarded, own) {
        (0..=2, _) => AccountStatus::Suspended,
        (3..=4, _) => AccountStatus::Deprovisioned,
        (_, 0..=2) => AccountStatus::Pending,
        (_, 3..=4) => AccountStatus::Suspended,
        _ => AccountStatus::Active,
    };
    let count = mix(3, seed) % 6;
    let entitlements = (0..count)
        .map(|k| format!("{app}-group-{}", mix(4, seed * 8 + k) % 24))
        .collect();
    Account {
        app: app.to_string(),
        id: format!("{app}-{person:07}{:04x}", mix(5, person) & 0xffff),
        email: Some(email(person)),
        name: Some(format!(
            "{} {}",
            FIRST[(person % 12) as usize],
            LAST[(person / 12 % 10) as usize]
        )),
        status,
        manager: (person >= 8).then(|| email(person / 8)),
        entitlements,
        url: (app != "hr").then(|| format!("https://{app}.example.com/admin/users/{person}")),
    }
}

/// The raw (not normalized) snapshot a source would return.
fn baseline(n: u64) -> Snapshot {
    Snapshot {
        apps: APPS
            .iter()
            .map(|(id, name)| SourceApp {
                id: id.to_string(),
                name: name.to_string(),
                url: None,
            })
            .collect(),
        accounts: (0..n).map(|i| account(n, i)).collect(),
    }
}

/// `baseline(n)` with ~1 % of the accounts changed: a quarter each removed,
/// added (new people, a third of them in the watched app), status changed,
/// entitlements changed.
fn changed(n: u64) -> Snapshot {
    let mut snap = baseline(n);
    let mut accounts = Vec::with_capacity(snap.accounts.len() + snap.accounts.len() / 400 + 1);
    for (i, mut a) in snap.accounts.into_iter().enumerate() {
        match mix(6, i as u64) % 400 {
            0 => continue,
            1 => {
                a.status = if a.status == AccountStatus::Active {
                    AccountStatus::Suspended
                } else {
                    AccountStatus::Active
                }
            }
            2 if a.entitlements.is_empty() => a.entitlements.push(format!("{}-new", a.app)),
            2 => {
                a.entitlements.remove(0);
                a.entitlements.push(format!("{}-new", a.app));
            }
            _ => {}
        }
        accounts.push(a);
    }
    let people = (n * 2 / 5).max(1);
    for k in 0..n.div_ceil(400) {
        let (app, _) = APPS[if k % 3 == 0 { 3 } else { (k % 5) as usize }];
        accounts.push(person_account(app, people + k, n + k));
    }
    snap.accounts = accounts;
    snap
}

/// Heap bytes a snapshot holds (strings and vectors, by capacity).
fn heap_bytes(snap: &Snapshot) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
    snap.accounts.capacity() * std::mem::size_of::<Account>()
        + snap
            .accounts
            .iter()
            .map(|a| {
                a.app.capacity()
                    + a.id.capacity()
                    + opt(&a.email)
                    + opt(&a.name)
                    + opt(&a.manager)
                    + opt(&a.url)
                    + a.entitlements.capacity() * std::mem::size_of::<String>()
                    + a.entitlements.iter().map(String::capacity).sum::<usize>()
            })
            .sum::<usize>()
}

// ---------------------------------------------------------------- memory

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_mb() -> f64 {
    status_kb("VmRSS:") as f64 / 1024.0
}

fn hwm_mb() -> f64 {
    status_kb("VmHWM:") as f64 / 1024.0
}

extern "C" {
    /// glibc: returns freed heap memory to the kernel.
    fn malloc_trim(pad: usize) -> std::ffi::c_int;
}

/// Drops the freed-but-kept heap of the setup from RSS, so "RSS before" is
/// what the phase's inputs really hold.
fn trim_heap() {
    // SAFETY: malloc_trim only walks glibc's own arenas; no Rust invariants involved.
    unsafe {
        malloc_trim(0);
    }
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0), so a phase's peak does
/// not include the setup before it. False when the kernel refuses.
fn reset_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// CPU time (user + system, all threads) of this process so far, in ms;
/// 10 ms resolution. Less sensitive than wall time to a busy machine.
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime, fields 14 and 15 of proc(5), in USER_HZ (100/s).
    (ticks(11) + ticks(12)) * 10.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn emit(result: Value) {
    println!("{RESULT}{result}");
}

// ---------------------------------------------------------------- children

/// Phase 1: `Snapshot::normalized` of the new snapshot and `diff(old, new)`,
/// in memory, median of `runs`.
fn phase_diff(n: u64, label: &str) {
    let old = baseline(n).normalized().expect("valid baseline");
    println!(
        "  snapshot in memory: {:.1} MB of heap for {} accounts ({} B/account; Account is {} B, Change is {} B)",
        heap_bytes(&old) as f64 / 1e6,
        old.accounts.len(),
        heap_bytes(&old) / old.accounts.len().max(1),
        std::mem::size_of::<Account>(),
        std::mem::size_of::<accessd::domain::diff::Change>()
    );
    let runs = 5;
    let (mut normalize, mut diffing, mut checks) = (Vec::new(), Vec::new(), Vec::new());
    let (mut before, mut peak, mut reset, mut changes, mut cpu) = (0.0_f64, 0.0_f64, true, 0, 0.0);
    for run in 0..runs {
        // Generated afresh (untimed) so only `old` and the new snapshot are
        // held, as in a sync; the peak is measured from here.
        let input = changed(n);
        trim_heap();
        reset &= reset_hwm();
        before = before.max(rss_mb());
        let cpu_at = cpu_ms();
        let t = Instant::now();
        let new = input.normalized().expect("valid snapshot");
        normalize.push(ms(t.elapsed()));
        let t = Instant::now();
        let found = diff(&old, &new);
        diffing.push(ms(t.elapsed()));
        let t = Instant::now();
        let summary = Summary::of(&found);
        let held = MassRemoval::check(old.accounts.len(), &found, 0.2);
        checks.push(ms(t.elapsed()));
        cpu += (cpu_ms() - cpu_at) / runs as f64;
        peak = peak.max(hwm_mb());
        assert!(held.is_none(), "1 % is no mass removal");
        if run == 0 {
            println!("  diff: {} changes: {summary}", found.len());
        }
        changes = found.len();
    }
    let (normalize, diffing, checks) = (median(normalize), median(diffing), median(checks));
    emit(json!({
        "phase": label, "kind": "diff", "n": n, "changes": changes,
        "ms": normalize + diffing + checks,
        "parts": format!("normalized {normalize:.0} ms + diff {diffing:.0} ms + Summary/MassRemoval {checks:.1} ms (median of {runs})"),
        "rss_before": before, "hwm": peak, "hwm_reset": reset, "cpu_ms": cpu,
    }));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn load_config(dir: &Path) -> accessd::config::Config {
    let path = dir.join("accessd.toml");
    let text = std::fs::read_to_string(&path).expect("config");
    accessd::config::parse(&text, &path).unwrap_or_else(|e| panic!("bench config: {e}"))
}

/// Phase 2: one `sync_source` of the `file` source in `dir`, as the daemon
/// runs it.
fn phase_sync(n: u64, dir: &Path, label: &str) {
    runtime().block_on(async {
        let config = load_config(dir);
        let source = &config.sources[0];
        let reader = AnySource::from_config(source, None).expect("source");
        let store = Store::open(&config.database.path).expect("store");
        let before = rss_mb();
        let cpu_at = cpu_ms();
        let t = Instant::now();
        let outcome = sync_source(&store, &config, source, &reader, "bench:1", false)
            .await
            .expect("sync");
        let elapsed = t.elapsed();
        let cpu = cpu_ms() - cpu_at;
        let hwm = hwm_mb();
        println!("  {label}: {outcome}");
        let changes = match &outcome {
            SyncOutcome::Baseline { accounts, .. } => *accounts,
            SyncOutcome::Applied { summary, .. } => {
                summary.accounts_added
                    + summary.accounts_removed
                    + summary.status_changed
                    + summary.entitlements_added
                    + summary.entitlements_removed
                    + summary.apps_discovered
            }
            other => panic!("unexpected outcome: {other}"),
        };
        store.close().await;
        emit(json!({
            "phase": label, "n": n, "changes": changes, "ms": ms(elapsed),
            "rss_before": before, "hwm": hwm, "cpu_ms": cpu,
        }));
    });
}

/// The changed sync again, on a copy of the baseline database, one step of
/// `sync_leased` at a time, with the time and RSS after each step.
fn phase_breakdown(dir: &Path) {
    runtime().block_on(async {
        let config = load_config(dir);
        let source = &config.sources[0];
        let store = Store::open(&config.database.path).expect("store");
        let mut steps: Vec<(String, f64, f64, f64)> = Vec::new();
        let mut cpu_at = cpu_ms();
        let mut step = |name: &str, t: Instant| {
            let cpu = cpu_ms();
            steps.push((name.to_string(), ms(t.elapsed()), cpu - cpu_at, rss_mb()));
            cpu_at = cpu;
        };
        let start_rss = rss_mb();

        let t = Instant::now();
        let text = String::from_utf8(std::fs::read(dir.join("people.json")).expect("read"))
            .expect("utf-8");
        let file_mb = text.len() as f64 / 1e6;
        step("read file (String)", t);
        let t = Instant::now();
        let raw = file::parse_json(&text, &source.app).expect("parse");
        step("serde_json parse_json", t);
        drop(text);
        let t = Instant::now();
        let snapshot = raw.normalized().expect("normalized");
        step("Snapshot::normalized", t);
        let t = Instant::now();
        let previous = store
            .source_snapshot(source.id.clone())
            .await
            .expect("read")
            .expect("baseline");
        step(&format!("Store::source_snapshot ({} rows)", previous.accounts.len()), t);
        let t = Instant::now();
        let changes = diff(&previous, &snapshot);
        let summary = Summary::of(&changes);
        let changed = changes.len();
        step("diff + Summary", t);
        let before = previous.accounts.len();
        drop(previous);
        let t = Instant::now();
        let marks = accessd::alerts::Marks::new(&config, &store.app_marks().await.expect("marks"));
        let (raise, resolve) =
            accessd::alerts::from_changes(&config, source, &marks, &changes, &snapshot);
        step(&format!("alerts::from_changes ({} raised)", raise.len()), t);
        let t = Instant::now();
        let accounts = snapshot.accounts.len();
        store
            .record_source_sync(SyncRecord {
                source_id: source.id.clone(),
                at: chrono::Utc::now(),
                changes,
                apps: snapshot.apps,
                accounts,
                summary,
                raise,
                resolve,
            })
            .await
            .expect("record");
        step(&format!("Store::record_source_sync ({changed} changes)"), t);
        let t = Instant::now();
        let found = accessd::alerts::evaluate_offboarding(&store, &config, false)
            .await
            .expect("offboarding");
        step(&format!("alerts::evaluate_offboarding ({found:?} raised/resolved)"), t);
        let t = Instant::now();
        let offboarded = store
            .offboarded_active(vec![source.id.clone()])
            .await
            .expect("offboarded");
        step(&format!("  of which Store::offboarded_active ({} rows)", offboarded.len()), t);
        store.close().await;

        // Reading the rows without decoding them: what the JSON entitlements cost.
        let conn = rusqlite::Connection::open(&config.database.path).expect("open");
        let t = Instant::now();
        let mut stmt = conn
            .prepare("SELECT app, account_id, email, name, status, manager, entitlements, url FROM identity_accounts WHERE source_id = ?1")
            .expect("prepare");
        let rows: Vec<[Option<String>; 8]> = stmt
            .query_map([&source.id], |r| {
                Ok(std::array::from_fn(|c| r.get::<_, Option<String>>(c).ok().flatten()))
            })
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        let raw_rows = ms(t.elapsed());
        let t = Instant::now();
        let decoded: usize = rows
            .iter()
            .filter_map(|r| r[6].as_deref())
            .map(|e| serde_json::from_str::<Vec<String>>(e).map_or(0, |v| v.len()))
            .sum();
        let json_ms = ms(t.elapsed());
        drop(stmt);

        println!("  breakdown of the ~1 % sync (file {file_mb:.1} MB, {before} accounts before; RSS at start {start_rss:.1} MB):");
        println!("    {:<58} {:>8} {:>8} {:>9}", "step", "wall ms", "CPU ms", "RSS MB");
        for (name, ms, cpu, rss) in &steps {
            println!("    {name:<58} {ms:>8.0} {cpu:>8.0} {rss:>9.1}");
        }
        println!(
            "    (rows read without decoding: {raw_rows:.0} ms; decoding their {decoded} entitlements from JSON: {json_ms:.0} ms)"
        );
        println!("    peak RSS {:.1} MB", hwm_mb());

        println!("  EXPLAIN QUERY PLAN of Store::offboarded_active:");
        let plan_sql = format!("EXPLAIN QUERY PLAN {}", OFFBOARDED_SQL);
        let mut stmt = conn.prepare(&plan_sql).expect("explain");
        let plan = stmt
            .query_map([&source.id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(3)?))
            })
            .expect("plan")
            .collect::<rusqlite::Result<Vec<_>>>()
            .expect("plan rows");
        let mut depth: HashMap<i64, usize> = HashMap::new();
        for (id, parent, detail) in plan {
            let d = depth.get(&parent).map_or(0, |d| d + 1);
            depth.insert(id, d);
            println!("    {}{detail}", "  ".repeat(d));
        }
    });
}

/// `Store::offboarded_active`'s query for one authority, copied from
/// src/store/identity.rs (private there) to show its plan.
const OFFBOARDED_SQL: &str = "WITH gone AS (
   SELECT email, source_id AS authority, app AS auth_app, MIN(status) AS status
   FROM identity_accounts
   WHERE source_id IN (?1) AND email IS NOT NULL
     AND status IN ('suspended', 'deprovisioned')
     AND NOT EXISTS (SELECT 1 FROM identity_accounts k
                     WHERE k.source_id = identity_accounts.source_id
                       AND k.email = identity_accounts.email AND k.status = 'active')
   GROUP BY email, source_id, app
 )
 SELECT g.email, g.authority, g.auth_app, g.status, a.source_id, a.app, a.account_id
 FROM gone g JOIN identity_accounts a
   ON a.email = g.email AND a.status = 'active'
  AND NOT (a.source_id = g.authority AND a.app = g.auth_app)
 ORDER BY g.email, a.app, a.account_id";

// ---------------------------------------------------------------- parent

fn child(phase: &str, n: u64, dir: &Path, label: &str) -> Value {
    let out = Command::new(std::env::current_exe().expect("current exe"))
        .env("SOURCES_PHASE", phase)
        .env("SOURCES_N", n.to_string())
        .env("SOURCES_DIR", dir)
        .env("SOURCES_LABEL", label)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .expect("child");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut result = Value::Null;
    for line in text.lines() {
        match line.strip_prefix(RESULT) {
            Some(json) => result = serde_json::from_str(json).expect("child result"),
            None => println!("{line}"),
        }
    }
    assert!(out.status.success(), "phase {label} failed: {}", out.status);
    result
}

fn write_source(dir: &Path, snapshot: &Snapshot) {
    let tmp = dir.join("people.json.tmp");
    let file = std::io::BufWriter::new(std::fs::File::create(&tmp).expect("create"));
    serde_json::to_writer(file, snapshot).expect("write people.json");
    std::fs::rename(&tmp, dir.join("people.json")).expect("rename");
}

fn write_config(dir: &Path) {
    let text = format!(
        "[database]\npath = \"accessd.db\"\n\n\
         [[sources]]\nid = \"hr\"\nkind = \"file\"\npath = \"people.json\"\n\
         schedule = \"every 15m\"\nauthoritative = true\napp = \"hr\"\n\n\
         [alerts]\nwatchlist = [\"{WATCHED}\"]\nmass_change_guard = 0.2\n\
         [alerts.channels]\nwatchlist_signup = \"#sec-alerts\"\noffboarded_active = \"#sec-alerts\"\n\
         new_app = \"#it-ops\"\nsource_failed = \"#it-ops\"\n"
    );
    std::fs::write(dir.join("accessd.toml"), text).expect("write config");
}

/// Copies a closed SQLite database (and its WAL, if one is left).
fn copy_db(from: &Path, to: &Path) {
    for suffix in ["", "-wal"] {
        let src = PathBuf::from(format!("{}{suffix}", from.display()));
        if src.exists() {
            std::fs::copy(&src, format!("{}{suffix}", to.display())).expect("copy db");
        }
    }
}

fn verdict(ms: f64, mb: f64) -> String {
    match (ms / 1000.0 <= TARGET_SECS, mb <= TARGET_MB) {
        (true, true) => "yes".into(),
        (t, m) => {
            let mut why = Vec::new();
            if !t {
                why.push("time");
            }
            if !m {
                why.push("memory");
            }
            format!("NO ({})", why.join(", "))
        }
    }
}

fn main() {
    let n: u64 = std::env::var("SOURCES_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    if let Ok(phase) = std::env::var("SOURCES_PHASE") {
        let dir = PathBuf::from(std::env::var("SOURCES_DIR").unwrap_or_default());
        let label = std::env::var("SOURCES_LABEL").unwrap_or_default();
        match phase.as_str() {
            "diff" => phase_diff(n, &label),
            "sync" => phase_sync(n, &dir, &label),
            "breakdown" => phase_breakdown(&dir),
            other => panic!("unknown SOURCES_PHASE {other}"),
        }
        return;
    }

    println!("sources: N = {n} accounts, ~1 % changed; each phase in its own process");
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = if std::env::var_os("SOURCES_KEEP").is_some() {
        let kept = tmp.keep();
        println!("  keeping {} (SOURCES_KEEP)", kept.display());
        kept
    } else {
        tmp.path().to_path_buf()
    };
    let dir = root.join("sync");
    let copy = root.join("breakdown");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::create_dir_all(&copy).expect("dir");
    write_config(&dir);
    write_config(&copy);

    let mut results = vec![child("diff", n, &dir, "1 pure diff (normalized + diff)")];
    write_source(&dir, &baseline(n));
    let file_mb = std::fs::metadata(dir.join("people.json")).map_or(0, |m| m.len()) as f64 / 1e6;
    println!("  people.json: {file_mb:.1} MB");
    results.push(child("sync", n, &dir, "2a sync: baseline (first sync)"));
    copy_db(&dir.join("accessd.db"), &copy.join("accessd.db"));
    let changed = changed(n);
    write_source(&dir, &changed);
    write_source(&copy, &changed);
    drop(changed);
    results.push(child("sync", n, &dir, "2b sync: ~1 % changed"));
    results.push(child("sync", n, &dir, "2c sync: unchanged"));
    child("breakdown", n, &copy, "breakdown");

    println!();
    println!(
        "{:<34} {:>7} {:>8} {:>8} {:>7} {:>12} {:>14}  within ≤ {TARGET_SECS} s, ≤ {TARGET_MB} MB",
        "phase", "N", "changes", "wall ms", "CPU ms", "peak RSS MB", "RSS before MB"
    );
    for r in &results {
        let (ms, hwm) = (
            r["ms"].as_f64().unwrap_or(0.0),
            r["hwm"].as_f64().unwrap_or(0.0),
        );
        println!(
            "{:<34} {:>7} {:>8} {:>8.0} {:>7.0} {:>12.1} {:>14.1}  {}",
            r["phase"].as_str().unwrap_or("?"),
            r["n"].as_u64().unwrap_or(0),
            r["changes"].as_u64().unwrap_or(0),
            ms,
            r["cpu_ms"].as_f64().unwrap_or(0.0),
            hwm,
            r["rss_before"].as_f64().unwrap_or(0.0),
            verdict(ms, hwm)
        );
        if let Some(parts) = r["parts"].as_str() {
            println!("{:<34} {parts}", "");
        }
        if r["hwm_reset"] == json!(false) && r["kind"] == json!("diff") {
            println!(
                "{:<34} (VmHWM could not be reset: the peak includes generating the input)",
                ""
            );
        }
    }
}

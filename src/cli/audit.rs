//! `accessd audit export|verify|head`: the hash-chained audit log written
//! out for an auditor (JSON Lines or CSV), a walk of the whole chain that
//! exits 1 when a row was altered or deleted (or no longer holds a head
//! recorded elsewhere), and that head. All only read the store, so they run
//! while the daemon does.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Subcommand, ValueEnum};
use serde::Serialize;

use super::output::{clean, csv_field, emit, print_out, with_store, Failure, Outcome};
use crate::config;
use crate::store::{AuditBreakKind, AuditHead, AuditRow, AuditVerification, Store, StoreError};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Write every audit row, oldest first: seq, at, actor, action, subject,
    /// detail, prev_hash, hash.
    Export {
        /// Only rows at or after T: an RFC 3339 time (`2024-05-01T00:00:00Z`)
        /// or a humantime duration ago (`24h` = since 24 hours ago, `7d`).
        #[arg(long, value_name = "T", value_parser = parse_since)]
        since: Option<DateTime<Utc>>,
        /// `jsonl`: one JSON object per row, the exact hashed text (use it to
        /// re-check the chain later). `csv`: for spreadsheets, with a header.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Write to PATH (created 0600: the log names people) instead of stdout.
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
    },
    /// Walk the whole hash chain; exit 1 naming the first altered, missing
    /// or truncated row.
    Verify {
        /// Print the verification as a JSON object.
        #[arg(long)]
        json: bool,
        /// A head recorded earlier (`audit head`, or the anchor posted to
        /// `[audit] anchor_channel`): exit 1 unless the chain still holds
        /// that row with that hash.
        #[arg(long, value_name = "SEQ:HASH", value_parser = parse_head)]
        head: Option<AuditHead>,
    },
    /// Print `SEQ HASH` of the newest row: keep it off this host, and check
    /// against it later with `audit verify --head SEQ:HASH`.
    Head,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

/// RFC 3339 first (it cannot be mistaken for a duration), then a duration
/// counted back from now.
fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        format!("`{text}` is neither an RFC 3339 time (2024-05-01T00:00:00Z) nor a duration ago (24h, 7d)")
    })?;
    chrono::Duration::from_std(ago)
        .ok()
        .and_then(|ago| Utc::now().checked_sub_signed(ago))
        .ok_or_else(|| format!("`{text}` reaches back too far"))
}

/// `SEQ:HASH` as `audit head` prints it (a space is taken too, so the
/// printed line can be pasted as is when quoted).
fn parse_head(text: &str) -> Result<AuditHead, String> {
    let bad = || format!("`{text}` is not SEQ:HASH (e.g. 42:{})", "0".repeat(64));
    let (seq, hash) = text.trim().split_once([':', ' ']).ok_or_else(bad)?;
    let seq = seq
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(bad)?;
    let hash = hash.trim().to_ascii_lowercase();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok(AuditHead { seq, hash })
}

pub(crate) fn execute(config_path: &Path, command: AuditCommand) -> Outcome {
    // `Store::open` creates a missing database; an empty log would then
    // "verify" — a wrong `[database] path` must not look like a clean audit.
    let config = config::load(config_path).map_err(|err| Failure::usage(err.to_string()))?;
    let db = &config.database.path;
    if !db.exists() {
        return Err(Failure::runtime(format!(
            "accessd: no database at {}: nothing to {}; check `[database] path`",
            db.display(),
            match command {
                AuditCommand::Export { .. } => "export",
                AuditCommand::Verify { .. } => "verify",
                AuditCommand::Head => "read",
            }
        )));
    }
    match command {
        AuditCommand::Export {
            since,
            format,
            output,
        } => with_store(config_path, |store| export(store, since, format, output)),
        AuditCommand::Verify { json, head } => {
            with_store(config_path, |store| verify(store, json, head))
        }
        AuditCommand::Head => with_store(config_path, head),
    }
}

// ---------------------------------------------------------------------------
// export

/// The CSV header; the JSON keys are the same names.
const COLUMNS: [&str; 8] = [
    "seq",
    "at",
    "actor",
    "action",
    "subject",
    "detail",
    "prev_hash",
    "hash",
];

/// One exported row. `at` to the millisecond with `Z`, as it was hashed
/// (chrono's own serialization drops a `.000`), so the export can be
/// re-verified with the formula in `store/audit.rs`.
#[derive(Serialize)]
struct ExportRow<'a> {
    seq: i64,
    at: String,
    actor: &'a str,
    action: &'a str,
    subject: &'a str,
    detail: &'a serde_json::Value,
    prev_hash: &'a str,
    hash: &'a str,
}

impl<'a> From<&'a AuditRow> for ExportRow<'a> {
    fn from(r: &'a AuditRow) -> Self {
        ExportRow {
            seq: r.seq,
            at: r.at.to_rfc3339_opts(SecondsFormat::Millis, true),
            actor: &r.actor,
            action: &r.action,
            subject: &r.subject,
            detail: &r.detail,
            prev_hash: &r.prev_hash,
            hash: &r.hash,
        }
    }
}

async fn export(
    store: Store,
    since: Option<DateTime<Utc>>,
    format: ExportFormat,
    output: Option<PathBuf>,
) -> Outcome {
    let to_output = |err: ExportError| match err {
        ExportError::Store(err) => Failure::from(err),
        ExportError::Io(err) => Failure::runtime(format!("accessd: writing output: {err}")),
    };
    match output {
        None => {
            let stdout = std::io::stdout().lock();
            match write_export(&store, since, format, std::io::BufWriter::new(stdout)).await {
                // `| head` has what it wanted.
                Err(ExportError::Io(err)) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                Err(err) => Err(to_output(err)),
                Ok(_) => Ok(()),
            }
        }
        Some(path) => {
            let failed = |err: std::io::Error| {
                Failure::runtime(format!("accessd: writing {}: {err}", path.display()))
            };
            let file = create_private(&path).map_err(failed)?;
            let span = write_export(&store, since, format, std::io::BufWriter::new(&file))
                .await
                .map_err(|err| match err {
                    ExportError::Io(err) => failed(err),
                    err => to_output(err),
                })?;
            // An auditor's copy is only worth something once it is on disk.
            file.sync_all().map_err(failed)?;
            let seqs = match span.seqs {
                Some((first, last)) => format!(" (seq {first}..{last})"),
                None => String::new(),
            };
            print_out(&clean(&format!(
                "exported {} audit row{}{seqs} to {}",
                span.rows,
                if span.rows == 1 { "" } else { "s" },
                path.display()
            )))
        }
    }
}

/// Rows read from the store per page of an export.
const EXPORT_PAGE: usize = 2_000;

enum ExportError {
    Store(StoreError),
    Io(std::io::Error),
}

/// What an export wrote: row count and first..last seq.
struct Exported {
    rows: usize,
    seqs: Option<(i64, i64)>,
}

/// Writes the rows as of the start of the export, a page at a time, so a
/// log of millions of rows never sits in memory.
async fn write_export(
    store: &Store,
    since: Option<DateTime<Utc>>,
    format: ExportFormat,
    mut out: impl Write,
) -> Result<Exported, ExportError> {
    let upto = store.audit_last_seq().await.map_err(ExportError::Store)?;
    if let ExportFormat::Csv = format {
        write_csv_line(&mut out, &COLUMNS).map_err(ExportError::Io)?;
    }
    let mut done = Exported {
        rows: 0,
        seqs: None,
    };
    let mut after = 0;
    loop {
        let page = store
            .audit_page(since, after, upto, EXPORT_PAGE)
            .await
            .map_err(ExportError::Store)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let first = done.seqs.map_or(page[0].seq, |(first, _)| first);
        done.seqs = Some((first, last.seq));
        done.rows += page.len();
        write_rows(&mut out, &page, format).map_err(ExportError::Io)?;
    }
    out.flush().map_err(ExportError::Io)?;
    Ok(done)
}

/// Truncates an existing file; a new one is 0600 because audit rows carry
/// emails, as the database (also 0600) does.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// The rows of one page; the CSV header is written once, before the first.
fn write_rows(mut out: impl Write, rows: &[AuditRow], format: ExportFormat) -> std::io::Result<()> {
    match format {
        ExportFormat::Jsonl => {
            for row in rows {
                serde_json::to_writer(&mut out, &ExportRow::from(row))?;
                out.write_all(b"\n")?;
            }
        }
        ExportFormat::Csv => {
            for row in rows {
                let r = ExportRow::from(row);
                // Compact JSON: the text that was hashed.
                let detail = r.detail.to_string();
                let seq = r.seq.to_string();
                write_csv_line(
                    &mut out,
                    &[
                        &seq,
                        &r.at,
                        r.actor,
                        r.action,
                        r.subject,
                        &detail,
                        r.prev_hash,
                        r.hash,
                    ],
                )?;
            }
        }
    }
    Ok(())
}

/// RFC 4180 records end with CRLF.
fn write_csv_line(out: &mut impl Write, cells: &[&str]) -> std::io::Result<()> {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        out.write_all(csv_field(cell).as_bytes())?;
    }
    out.write_all(b"\r\n")
}

// ---------------------------------------------------------------------------
// verify

/// `audit verify --json`: the store's verification plus `intact`, so a
/// script need not know that a null `first_broken` means good.
#[derive(Serialize)]
struct VerifyView<'a> {
    intact: bool,
    /// The `--head` checked against, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    head: Option<&'a AuditHead>,
    #[serde(flatten)]
    verification: &'a AuditVerification,
}

async fn verify(store: Store, json: bool, anchor: Option<AuditHead>) -> Outcome {
    let anchored = anchor.clone();
    let v = store.verify_audit_against(anchor).await?;
    if json {
        emit(
            true,
            &VerifyView {
                intact: v.is_intact(),
                head: anchored.as_ref(),
                verification: &v,
            },
            String::new,
        )?;
    }
    match broken_message(&v, anchored.as_ref()) {
        Some(message) => Err(Failure::runtime(message)),
        None if json => Ok(()),
        None => print_out(&intact_message(&v, anchored.as_ref())),
    }
}

/// `audit head`: an empty log has no head worth recording, and says so.
async fn head(store: Store) -> Outcome {
    match store.audit_head().await? {
        Some(AuditHead { seq, hash }) => print_out(&format!("{seq} {hash}")),
        None => Err(Failure::runtime(
            "accessd: the audit log is empty: no head to record yet",
        )),
    }
}

fn intact_message(v: &AuditVerification, anchor: Option<&AuditHead>) -> String {
    let holds = anchor.map_or_else(String::new, |a| {
        format!("; holds the recorded head seq {} {}", a.seq, a.hash)
    });
    match (v.last_seq, &v.last_hash) {
        (Some(seq), Some(hash)) => format!(
            "audit log intact: {} row{}, last seq {seq}, last hash {hash}{holds}",
            v.rows,
            if v.rows == 1 { "" } else { "s" }
        ),
        _ => "audit log intact: 0 rows (empty)".into(),
    }
}

/// Which row and what is wrong with it, or `None` when the chain holds.
fn broken_message(v: &AuditVerification, anchor: Option<&AuditHead>) -> Option<String> {
    let b = v.first_broken.as_ref()?;
    let seq = b.seq;
    let last = || {
        v.last_seq.map_or_else(
            || "the log is empty".into(),
            |s| format!("the log now ends at seq {s}"),
        )
    };
    let anchored_hash = anchor.map_or("", |a| a.hash.as_str());
    let what = match b.kind {
        AuditBreakKind::Altered => format!(
            "row altered: seq {seq}'s stored hash does not match the hash recomputed from its content"
        ),
        AuditBreakKind::BrokenLink => format!(
            "chain link broken: seq {seq}'s prev_hash is not the hash of the row before it \
             (that row was rewritten or replaced)"
        ),
        AuditBreakKind::Gap => format!(
            "rows missing: a gap in seq just before seq {seq} (rows were deleted)"
        ),
        AuditBreakKind::Truncated => format!(
            "tail truncated: sqlite_sequence records rows from seq {seq} on, which are gone \
             (last row present: {})",
            v.last_seq.map_or_else(|| "none".into(), |s| format!("seq {s}"))
        ),
        AuditBreakKind::HeadMissing => format!(
            "the recorded head is gone: no row seq {seq} ({}); rows from it on were deleted \
             and the sequence reset",
            last()
        ),
        AuditBreakKind::HeadRewritten => format!(
            "the recorded head was rewritten: seq {seq}'s hash is not {anchored_hash}; the chain \
             was recomputed after a change at or before seq {seq}"
        ),
    };
    Some(format!(
        "audit log BROKEN at seq {seq}: {what}; {} row{} present",
        v.rows,
        if v.rows == 1 { "" } else { "s" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_rfc3339_or_a_duration_ago() {
        assert_eq!(
            parse_since("2024-05-01T02:00:00+02:00"),
            Ok("2024-05-01T00:00:00Z".parse().unwrap())
        );
        let day_ago = parse_since("24h").unwrap();
        let expected = Utc::now() - chrono::Duration::hours(24);
        assert!((day_ago - expected).num_seconds().abs() < 5);
        assert!(parse_since("garbage").is_err());
        assert!(parse_since("2024-05-01").is_err());
        assert!(parse_since("100000000000y").is_err());
    }

    #[test]
    fn csv_rows_quote_the_detail_and_end_with_crlf() {
        let row = AuditRow {
            seq: 7,
            at: "2024-05-01T00:00:00Z".parse().unwrap(),
            actor: "=cmd".into(),
            action: "review.created".into(),
            subject: "R-1".into(),
            detail: serde_json::json!({ "name": "Q3, \"all\"" }),
            prev_hash: "a".into(),
            hash: "b".into(),
        };
        let mut out = Vec::new();
        write_rows(&mut out, std::slice::from_ref(&row), ExportFormat::Csv).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "7,2024-05-01T00:00:00.000Z,'=cmd,review.created,R-1,\
             \"{\"\"name\"\":\"\"Q3, \\\"\"all\\\"\"\"\"}\",a,b\r\n"
        );
    }
}

//! The audit anchor post: the audit log's newest row, put in a channel so a
//! copy of it lives off the host, with the command that checks against it.

use serde_json::{json, Value};

use super::text::{context, section};

/// Text and blocks for the head `seq`/`hash` (hex, so nothing to escape).
pub fn anchor(seq: i64, hash: &str) -> (String, Value) {
    let text = format!("Audit log head: seq {seq} {hash}");
    let blocks = json!([
        section(&format!(
            "*Audit log head*: seq `{seq}`, hash `{hash}`\nKept here so a copy of the audit trail's head lives outside the accessd host."
        )),
        context(&format!(
            "To check that the log still holds it: `accessd audit verify --head {seq}:{hash}`"
        )),
    ]);
    (text, blocks)
}

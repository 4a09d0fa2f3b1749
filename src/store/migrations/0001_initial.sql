-- 0001_initial: the whole product's schema, so later features only add queries.
--
-- Conventions (the Rust side relies on them):
-- * Timestamps are TEXT in one fixed shape, RFC 3339 UTC with milliseconds
--   ('2026-11-24T10:00:00.000Z', what strftime('%Y-%m-%dT%H:%M:%fZ') writes),
--   so string comparison is time comparison and indexes on them work.
-- * JSON columns are TEXT checked with json_valid(), so a bad write fails at
--   the write and not at some later read.
-- * Emails compare case-insensitively (COLLATE NOCASE): identity records are
--   matched by exact, case-insensitive email.
-- * Tables are STRICT: a value of the wrong type is an error, not a coercion.
-- * Ids users see (T-42, G-7, R-3) use AUTOINCREMENT so an id is never reused.
-- * Enum CHECKs only where the design fixes the values; SQLite cannot alter a
--   CHECK without rebuilding the table.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE tickets (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    kind               TEXT NOT NULL DEFAULT 'request'
                       CHECK (kind IN ('request', 'extension', 'break_glass')),
    parent_ticket      INTEGER REFERENCES tickets (id),
    requester_slack_id TEXT NOT NULL,
    requester_email    TEXT NOT NULL COLLATE NOCASE,
    app_id             TEXT NOT NULL,
    roles              TEXT NOT NULL DEFAULT '[]'
                       CHECK (json_valid(roles) AND json_type(roles) = 'array'),
    reason             TEXT NOT NULL,
    duration_secs      INTEGER NOT NULL CHECK (duration_secs > 0),
    status             TEXT NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'approved', 'provisioning', 'active',
                                         'expired', 'revoked', 'rejected', 'cancelled',
                                         'stale', 'failed')),
    stage              INTEGER NOT NULL DEFAULT 0,
    created_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    decided_at         TEXT,
    expires_at         TEXT,
    last_nudge_at      TEXT,
    failure            TEXT,
    policy             TEXT CHECK (policy IS NULL OR json_valid(policy))
) STRICT;
CREATE INDEX tickets_status ON tickets (status, updated_at);
CREATE INDEX tickets_requester ON tickets (requester_slack_id, status);
CREATE INDEX tickets_requester_email ON tickets (requester_email);
CREATE INDEX tickets_parent ON tickets (parent_ticket) WHERE parent_ticket IS NOT NULL;

CREATE TABLE approvals (
    id                INTEGER PRIMARY KEY,
    ticket_id         INTEGER NOT NULL REFERENCES tickets (id),
    stage             INTEGER NOT NULL,
    approver_slack_id TEXT NOT NULL,
    approver_email    TEXT COLLATE NOCASE,
    decision          TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
    comment           TEXT,
    duration_secs     INTEGER CHECK (duration_secs IS NULL OR duration_secs > 0),
    decided_at        TEXT NOT NULL,
    UNIQUE (ticket_id, stage, approver_slack_id)
) STRICT;

-- Every DM an approver got about a ticket (reminders are new messages), so
-- each copy can be chat.update'd with the outcome.
CREATE TABLE approver_messages (
    id                INTEGER PRIMARY KEY,
    ticket_id         INTEGER NOT NULL REFERENCES tickets (id),
    approver_slack_id TEXT NOT NULL,
    channel           TEXT NOT NULL,
    ts                TEXT NOT NULL,
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (channel, ts)
) STRICT;
CREATE INDEX approver_messages_ticket ON approver_messages (ticket_id);

CREATE TABLE grants (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id       INTEGER NOT NULL REFERENCES tickets (id),
    app_id          TEXT NOT NULL,
    role_id         TEXT NOT NULL,
    person_email    TEXT NOT NULL COLLATE NOCASE,
    slack_id        TEXT,
    status          TEXT NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'expired', 'revoked', 'failed')),
    -- Present before the ticket: recorded, and never revoked at expiry.
    preexisting     INTEGER NOT NULL DEFAULT 0 CHECK (preexisting IN (0, 1)),
    granted_at      TEXT,
    expires_at      TEXT,
    revoked_at      TEXT,
    -- Same key for every retry of one provisioning call (see DESIGN §4).
    idempotency_key TEXT UNIQUE
) STRICT;
CREATE INDEX grants_status_expires ON grants (status, expires_at);
CREATE INDEX grants_person ON grants (person_email, status);
CREATE INDEX grants_slack ON grants (slack_id, status);
CREATE INDEX grants_ticket ON grants (ticket_id);

CREATE TABLE user_links (
    slack_id     TEXT PRIMARY KEY,
    email        TEXT NOT NULL COLLATE NOCASE,
    source       TEXT NOT NULL CHECK (source IN ('slack', 'manual')),
    refreshed_at TEXT NOT NULL,
    linked_by    TEXT
) STRICT;
CREATE INDEX user_links_email ON user_links (email);

-- Modal state; private_metadata carries only the id (Slack caps it at 3000 chars).
CREATE TABLE request_drafts (
    id         TEXT PRIMARY KEY,
    slack_id   TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (json_valid(state)),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
CREATE INDEX request_drafts_created ON request_drafts (created_at);

-- Hash-chained, append-only. seq is AUTOINCREMENT so sqlite_sequence keeps the
-- highest seq ever written: a deleted tail shows up as a gap at the next append
-- and as truncation in verify.
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    detail    TEXT NOT NULL CHECK (json_valid(detail)),
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
) STRICT;
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_subject ON audit_log (subject);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

-- Durable outgoing Slack Web API calls; written in the same transaction as the
-- state change they report, sent afterwards by the outbox worker.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    method          TEXT NOT NULL,
    channel         TEXT NOT NULL,
    payload         TEXT NOT NULL CHECK (json_valid(payload)),
    dedupe_key      TEXT UNIQUE,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    sent_at         TEXT,
    last_error      TEXT,
    response        TEXT CHECK (response IS NULL OR json_valid(response))
) STRICT;
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

-- Durable timers (reminders, expiries, polls, digests). AUTOINCREMENT: a
-- re-scheduled job is a new row and must never get the replaced row's id back,
-- or a runner still holding the old id would complete the new schedule.
CREATE TABLE jobs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    run_at     TEXT NOT NULL,
    payload    TEXT NOT NULL DEFAULT 'null' CHECK (json_valid(payload)),
    status     TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
-- At most one pending job per (kind, subject): scheduling again replaces it.
CREATE UNIQUE INDEX jobs_pending_kind_subject ON jobs (kind, subject) WHERE status = 'pending';
CREATE INDEX jobs_due ON jobs (status, run_at);

-- Socket Mode redelivers on other connections and after reconnects.
CREATE TABLE seen_envelopes (
    envelope_id TEXT PRIMARY KEY,
    seen_at     TEXT NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX seen_envelopes_at ON seen_envelopes (seen_at);
CREATE TABLE seen_events (
    event_id TEXT PRIMARY KEY,
    seen_at  TEXT NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX seen_events_at ON seen_events (seen_at);

-- Identity source snapshots. A failed read keeps ok = 0 and no data, and the
-- last ok snapshot stays the baseline for diffs.
CREATE TABLE snapshots (
    id        INTEGER PRIMARY KEY,
    source_id TEXT NOT NULL,
    taken_at  TEXT NOT NULL,
    ok        INTEGER NOT NULL CHECK (ok IN (0, 1)),
    data      ANY,
    counts    TEXT CHECK (counts IS NULL OR json_valid(counts)),
    error     TEXT
) STRICT;
CREATE INDEX snapshots_source ON snapshots (source_id, ok, taken_at);

-- One row per alert posted (watchlist sign-up, offboarded-but-active, new app,
-- source_failed); key makes raising the same alert twice a no-op.
CREATE TABLE alerts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,
    key        TEXT NOT NULL UNIQUE,
    status     TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    detail     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail)),
    channel    TEXT,
    ts         TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
CREATE INDEX alerts_status ON alerts (status, kind);

-- Standing conditions listed in the daily digest.
CREATE TABLE findings (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,
    key        TEXT NOT NULL UNIQUE,
    status     TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    detail     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail)),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
CREATE INDEX findings_status ON findings (status, kind);

CREATE TABLE review_campaigns (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'open',
    due_at     TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    closed_at  TEXT
) STRICT;
CREATE INDEX review_campaigns_status ON review_campaigns (status);

CREATE TABLE review_items (
    id                INTEGER PRIMARY KEY,
    campaign_id       INTEGER NOT NULL REFERENCES review_campaigns (id),
    app_id            TEXT NOT NULL,
    account_id        TEXT NOT NULL,
    email             TEXT COLLATE NOCASE,
    entitlement       TEXT,
    reviewer_email    TEXT NOT NULL COLLATE NOCASE,
    reviewer_slack_id TEXT,
    decision          TEXT CHECK (decision IS NULL OR decision IN ('keep', 'revoke')),
    comment           TEXT,
    decided_at        TEXT,
    revoke_outcome    TEXT
) STRICT;
CREATE INDEX review_items_campaign ON review_items (campaign_id, reviewer_email, decision);
CREATE INDEX review_items_reviewer ON review_items (reviewer_slack_id, decision);

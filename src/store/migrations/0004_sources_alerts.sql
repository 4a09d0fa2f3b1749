-- 0004_sources_alerts: identity sources' last good snapshots, sync state,
-- alert findings and the actions taken on them.

-- The last good snapshot of each source, one row per account, kept up to
-- date by applying each sync's diff. A failed or held sync leaves it as is.
CREATE TABLE identity_accounts (
    source_id    TEXT NOT NULL,
    app          TEXT NOT NULL,
    account_id   TEXT NOT NULL,
    email        TEXT COLLATE NOCASE,
    name         TEXT,
    status       TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'deprovisioned', 'pending')),
    manager      TEXT COLLATE NOCASE,
    entitlements TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(entitlements)),
    url          TEXT,
    PRIMARY KEY (source_id, app, account_id)
) STRICT, WITHOUT ROWID;
-- (email, status): the offboarding check and known-email lookups are
-- answered from the index alone.
CREATE INDEX identity_accounts_email ON identity_accounts (email, status);
CREATE INDEX identity_accounts_app ON identity_accounts (app, status);

CREATE TABLE identity_apps (
    source_id TEXT NOT NULL,
    app       TEXT NOT NULL,
    name      TEXT NOT NULL,
    url       TEXT,
    PRIMARY KEY (source_id, app)
) STRICT, WITHOUT ROWID;

-- One row per source: what `accessd sources list` shows, and the lease that
-- keeps the daemon and the CLI from syncing one source at the same time.
CREATE TABLE source_state (
    source_id       TEXT PRIMARY KEY,
    last_attempt_at TEXT,
    last_success_at TEXT,
    last_error_at   TEXT,
    last_error      TEXT,
    failures        INTEGER NOT NULL DEFAULT 0,
    accounts        INTEGER NOT NULL DEFAULT 0,
    apps            INTEGER NOT NULL DEFAULT 0,
    last_summary    TEXT CHECK (last_summary IS NULL OR json_valid(last_summary)),
    lease_owner     TEXT,
    lease_until     TEXT
) STRICT;

-- Apps marked from alert actions: 'watch' adds to alerts.watchlist,
-- 'ignore' silences new-app alerts for it.
CREATE TABLE app_marks (
    app       TEXT PRIMARY KEY,
    mark      TEXT NOT NULL CHECK (mark IN ('watch', 'ignore')),
    marked_by TEXT NOT NULL,
    marked_at TEXT NOT NULL
) STRICT;

-- `#name` → channel id, resolved by the daemon through conversations.list,
-- so the CLI can address alerts without Slack access.
CREATE TABLE slack_channels (
    name        TEXT PRIMARY KEY,
    id          TEXT NOT NULL,
    resolved_at TEXT NOT NULL
) STRICT;

-- Alerts are findings: `key` is the stable fingerprint; a finding posts once
-- while it stays open or acknowledged, and again only after it resolved.
ALTER TABLE alerts ADD COLUMN source_id TEXT;
ALTER TABLE alerts ADD COLUMN app TEXT;
ALTER TABLE alerts ADD COLUMN acted_by TEXT;
ALTER TABLE alerts ADD COLUMN acted_at TEXT;
ALTER TABLE alerts ADD COLUMN action TEXT;
ALTER TABLE alerts ADD COLUMN resolved_at TEXT;
ALTER TABLE alerts ADD COLUMN posts INTEGER NOT NULL DEFAULT 0;

-- 0003_grant_lifecycle: grants as the provisioning job runner writes them.
--
-- A grant row exists from the moment provisioning starts ('pending') so a
-- crash mid-call leaves a trace: `attempts` is committed *before* each
-- provisioner call, which is how a retry tells "already present because our
-- own earlier attempt applied it" (attempts > 1: ours, revoked at expiry)
-- from "already present before the ticket" (first attempt: preexisting).
-- No release wrote grants before this migration, so the table is rebuilt
-- (SQLite cannot alter a CHECK) without copying rows.
DROP INDEX grants_status_expires;
DROP INDEX grants_person;
DROP INDEX grants_slack;
DROP INDEX grants_ticket;
DROP TABLE grants;

CREATE TABLE grants (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id       INTEGER NOT NULL REFERENCES tickets (id),
    app_id          TEXT NOT NULL,
    role_id         TEXT NOT NULL,
    entitlement     TEXT NOT NULL,
    person_email    TEXT NOT NULL COLLATE NOCASE,
    slack_id        TEXT,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'active', 'expired', 'revoked', 'failed')),
    -- No provisioner: an app owner does it by hand and clicks Mark done.
    manual          INTEGER NOT NULL DEFAULT 0 CHECK (manual IN (0, 1)),
    -- Present before the ticket: recorded, and never revoked at expiry.
    preexisting     INTEGER NOT NULL DEFAULT 0 CHECK (preexisting IN (0, 1)),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    granted_at      TEXT,
    expires_at      TEXT,
    ended_at        TEXT,
    -- Why it ended: expired, released, revoked by whom.
    ended_by        TEXT,
    -- Same key for every retry of one provisioning call (see DESIGN §4); the
    -- revoke uses this key with a '/revoke' suffix.
    idempotency_key TEXT NOT NULL UNIQUE,
    UNIQUE (ticket_id, role_id)
) STRICT;
CREATE INDEX grants_status_expires ON grants (status, expires_at);
CREATE INDEX grants_person ON grants (person_email, status);
CREATE INDEX grants_slack ON grants (slack_id, status);

-- Messages about a ticket that are updated later: approver DMs ('approval'),
-- the owners' manual task DMs ('task').
ALTER TABLE approver_messages ADD COLUMN purpose TEXT NOT NULL DEFAULT 'approval'
    CHECK (purpose IN ('approval', 'task'));

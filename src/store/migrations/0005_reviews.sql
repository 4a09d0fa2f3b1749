-- 0005_reviews: access review campaigns as the review flow writes them.
-- No release wrote the review tables of 0001, so they are rebuilt without
-- copying rows.
DROP INDEX review_items_campaign;
DROP INDEX review_items_reviewer;
DROP TABLE review_items;
DROP INDEX review_campaigns_status;
DROP TABLE review_campaigns;

CREATE TABLE review_campaigns (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL,
    apps          TEXT NOT NULL CHECK (json_valid(apps)),
    -- owners | manager | an email, as asked for
    reviewer_rule TEXT NOT NULL,
    -- Told the outcome when the campaign closes.
    owner_email   TEXT NOT NULL COLLATE NOCASE,
    -- The [[reviews.schedules]] entry that created it, if any.
    schedule      TEXT,
    status        TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    due_at        TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    launched_at   TEXT,
    closed_at     TEXT
) STRICT;
CREATE INDEX review_campaigns_status ON review_campaigns (status);

-- One item per account × entitlement (or per account without entitlements),
-- from the sources' last good snapshots when the campaign was created.
CREATE TABLE review_items (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign_id     INTEGER NOT NULL REFERENCES review_campaigns (id),
    app_id          TEXT NOT NULL,
    source_id       TEXT NOT NULL,
    account_id      TEXT NOT NULL,
    email           TEXT COLLATE NOCASE,
    name            TEXT,
    entitlement     TEXT,
    reviewer_email  TEXT NOT NULL COLLATE NOCASE,
    -- The reviewer's DM page that shows it; NULL until sent.
    page            INTEGER,
    decision        TEXT CHECK (decision IS NULL OR decision IN ('keep', 'revoke')),
    comment         TEXT,
    decided_by      TEXT,
    decided_at      TEXT,
    reassigned_from TEXT,
    reassign_reason TEXT,
    -- What revoking it came to (revoked, already gone, manual task, failed: …).
    revoke_outcome  TEXT
) STRICT;
CREATE INDEX review_items_campaign ON review_items (campaign_id, reviewer_email, decision);
CREATE INDEX review_items_reviewer ON review_items (reviewer_email, decision);

-- Where each page of a reviewer's items was posted, to update it in place.
CREATE TABLE review_pages (
    campaign_id    INTEGER NOT NULL REFERENCES review_campaigns (id),
    reviewer_email TEXT NOT NULL COLLATE NOCASE,
    page           INTEGER NOT NULL,
    slack_id       TEXT NOT NULL,
    channel        TEXT,
    ts             TEXT,
    PRIMARY KEY (campaign_id, reviewer_email, page)
) STRICT;

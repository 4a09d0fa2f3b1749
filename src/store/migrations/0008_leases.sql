-- 0008_leases: named leases, so work that must not run twice at once (a
-- Slack user group's whole-list write) is serialised through the database,
-- and a holder that died lets go when its lease lapses.
CREATE TABLE leases (
    name  TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until TEXT NOT NULL
);

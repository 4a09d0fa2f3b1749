-- 0007_grant_target: a grant remembers which provisioner made it and the
-- target's own ids for what it made (a SCIM user and group id), so a revoke
-- goes to that provisioner and that account even after the app's
-- provisioner, the person's email or their userName changed.
ALTER TABLE grants ADD COLUMN provisioner_id TEXT;
ALTER TABLE grants ADD COLUMN target TEXT;

-- 0006_outbox_priority: alerts (break-glass, offboarding, provisioning
-- failures) are delivered ahead of ordinary notifications, so a flood of DMs
-- never delays them. Higher goes first; ordinary messages are 0.
ALTER TABLE outbox ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
CREATE INDEX outbox_lane ON outbox (status, priority DESC, id) WHERE status = 'pending';

-- 0002_outbox_on_sent: what to record once Slack accepted an outbox message.
-- An approver's DM is only addressable for chat.update by the (channel, ts)
-- Slack returns, so the worker records it in approver_messages in the same
-- transaction that marks the message sent.
ALTER TABLE outbox ADD COLUMN on_sent TEXT CHECK (on_sent IS NULL OR json_valid(on_sent));

-- 0009_campaign_notifications: a campaign may keep its own reminder
-- interval and closing-soon notice (NULL: the [reviews] settings in force),
-- or have no reminders at all (reminders = 0).
ALTER TABLE review_campaigns ADD COLUMN remind_every_secs INTEGER;
ALTER TABLE review_campaigns ADD COLUMN closing_soon_secs INTEGER;
ALTER TABLE review_campaigns ADD COLUMN reminders INTEGER NOT NULL DEFAULT 1;

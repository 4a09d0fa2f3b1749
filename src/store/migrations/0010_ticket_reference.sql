-- 0010_ticket_reference: the outside reference a request carries (a Jira
-- key), as the requester typed it and `reference.pattern` accepted it.
ALTER TABLE tickets ADD COLUMN reference TEXT;

-- Wamids a message no longer goes by: Meta reported the send outside the 24-hour window (131047)
-- after accepting it, and the command's fallback template went out instead under a new wamid.
-- Later statuses for the old wamid are recognised here (and ignored) instead of waiting as
-- orphans.
CREATE TABLE IF NOT EXISTS superseded_wamids (
    wamid       text PRIMARY KEY,
    command_id  text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);

-- Retention (RETENTION_DAYS) deletes the log's old rows by their last change.
CREATE INDEX IF NOT EXISTS messages_updated ON messages (updated_at);

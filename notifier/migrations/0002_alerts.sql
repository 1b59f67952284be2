-- Meta's signals that need the operators (an account restricted, a template paused, ...) fold
-- into the same digests as errors; a digest of alerts keeps the alert (its kind and facts) to
-- write its mail.
ALTER TABLE error_digests ADD COLUMN alert jsonb;

-- Every email the notifier decided to send, keyed by what caused it (an event id, or a digest
-- mail's key): one email per key, however often the cause is delivered.
CREATE TABLE emails (
    key             text PRIMARY KEY,
    kind            text NOT NULL,
    sender          text NOT NULL,
    recipients      text[] NOT NULL,
    reply_to        text[] NOT NULL DEFAULT '{}',
    subject         text NOT NULL,
    body_text       text NOT NULL,
    body_html       text NOT NULL,
    -- pending, sending, sent, suppressed, failed
    status          text NOT NULL DEFAULT 'pending',
    attempts        int NOT NULL DEFAULT 0,
    correlation_id  text,
    created_at      timestamptz NOT NULL,
    claimed_at      timestamptz,
    sent_at         timestamptz,
    ses_message_id  text,
    delivered_at    timestamptz,  -- from SES's delivery event
    error_type      text,
    error_message   text
);
CREATE INDEX emails_kind_created ON emails (kind, created_at);
CREATE INDEX emails_ses_message ON emails (ses_message_id) WHERE ses_message_id IS NOT NULL;

-- Addresses never to mail again: permanent bounces and complaints.
CREATE TABLE suppressed_addresses (
    address          text PRIMARY KEY,  -- lower case
    reason           text NOT NULL,     -- bounce, complaint
    detail           text,
    source_event_id  text,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- Identical errors (same fingerprint) folded together while their window is open. Occurrences
-- are rows of their own (no hot counter row to serialise a storm on); a handler holds its
-- window FOR SHARE while it adds one, the flusher takes it FOR UPDATE to close and count it.
CREATE TABLE error_digests (
    id               bigserial PRIMARY KEY,
    fingerprint      text NOT NULL,
    service          text NOT NULL,
    error_type       text NOT NULL,
    message          text NOT NULL,
    meta_code        int,
    phone_number_id  text,
    opened_at        timestamptz NOT NULL,
    due_at           timestamptz NOT NULL,
    reported         int NOT NULL DEFAULT 0,  -- occurrences mailed on their own
    status           text NOT NULL DEFAULT 'open',  -- open, closed
    occurrences      int,  -- counted when closed
    closed_at        timestamptz,
    mail_key         text
);
CREATE UNIQUE INDEX error_digests_open ON error_digests (fingerprint) WHERE status = 'open';
CREATE INDEX error_digests_due ON error_digests (due_at) WHERE status = 'open';

CREATE TABLE error_occurrences (
    event_id        text PRIMARY KEY,
    digest_id       bigint NOT NULL REFERENCES error_digests (id) ON DELETE CASCADE,
    occurred_at     timestamptz NOT NULL,
    correlation_id  text
);
CREATE INDEX error_occurrences_digest ON error_occurrences (digest_id);

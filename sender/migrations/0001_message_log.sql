-- The sender's state: the message log, shared pacing slots, circuits and recipient backoff.

-- One row per send command (keyed by its event id, the idempotency key). Written before the
-- Graph API call ("sending" with a lease), updated with Meta's answer, then moved forward by
-- status webhooks. status_rank only grows: pending 0, sending 1, accepted 2, sent 3,
-- delivered 4, read 5, played 6, failed 9 (final).
CREATE TABLE IF NOT EXISTS messages (
    command_id       text PRIMARY KEY,
    phone_number_id  text NOT NULL,
    recipient        text NOT NULL,
    kind             text NOT NULL,
    command          jsonb NOT NULL,
    status           text NOT NULL,
    status_rank      smallint NOT NULL,
    wamid            text UNIQUE,
    attempts         integer NOT NULL DEFAULT 0,
    claimed_until    timestamptz,
    used_fallback    boolean NOT NULL DEFAULT false,
    media_id         text,
    reason           text,
    error            jsonb,
    timeline         jsonb NOT NULL DEFAULT '[]'::jsonb,
    valid_until      timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS messages_recipient ON messages (phone_number_id, recipient, created_at);

-- Send slots per business number, shared by every replica: the next free slot (epoch seconds
-- on the database clock). A replica reserves a batch of slots with one UPDATE.
CREATE TABLE IF NOT EXISTS pacing (
    phone_number_id  text PRIMARY KEY,
    next_slot        double precision NOT NULL
);

-- Token failures per number: one incident per opening, so that one error report goes out.
CREATE TABLE IF NOT EXISTS circuits (
    phone_number_id  text PRIMARY KEY,
    state            text NOT NULL,
    incident         integer NOT NULL DEFAULT 0,
    reason           text,
    changed_at       timestamptz NOT NULL DEFAULT now()
);

-- Recipients Meta said we write to too fast (131056): no sends to them before `until`.
CREATE TABLE IF NOT EXISTS recipient_backoff (
    phone_number_id  text NOT NULL,
    recipient        text NOT NULL,
    until            timestamptz NOT NULL,
    strikes          integer NOT NULL DEFAULT 1,
    PRIMARY KEY (phone_number_id, recipient)
);

-- Handoff's state: conversations (one per customer), cases (one per request for a human),
-- agents, the transcript, the wamid map of relayed messages, timers and held messages.

CREATE TABLE conversations (
    customer         text PRIMARY KEY,          -- Identity.key: the phone, else the user id
    phone            text,
    user_id          text,
    name             text,
    phone_number_id  text NOT NULL,
    profile_id       text NOT NULL,
    state            text NOT NULL DEFAULT 'bot' CHECK (state IN ('bot', 'queued', 'active')),
    case_code        text,
    last_inbound_at  timestamptz,               -- Meta's 24 h window opens when they write
    version          integer NOT NULL DEFAULT 1,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE case_number START 1024;

CREATE TABLE cases (
    code               text PRIMARY KEY,
    customer           text NOT NULL REFERENCES conversations (customer),
    phone_number_id    text NOT NULL,
    profile_id         text NOT NULL,
    state              text NOT NULL CHECK (state IN ('queued', 'active', 'closed')),
    trigger            text NOT NULL,
    agent              text,
    end_reason         text CHECK (end_reason IN
                           ('agent', 'customer', 'timeout', 'no_agent', 'after_hours', 'idle')),
    created_at         timestamptz NOT NULL,
    claimed_at         timestamptz,
    first_response_at  timestamptz,
    closed_at          timestamptz,
    last_activity_at   timestamptz NOT NULL,
    version            integer NOT NULL DEFAULT 1,
    CHECK ((state = 'closed') = (end_reason IS NOT NULL)),
    CHECK (state <> 'active' OR agent IS NOT NULL)
);
-- At most one open case per customer: no duplicate conversations, whatever races.
CREATE UNIQUE INDEX cases_one_open_per_customer ON cases (customer) WHERE state <> 'closed';
CREATE INDEX cases_open ON cases (state) WHERE state <> 'closed';

CREATE TABLE agents (
    phone            text PRIMARY KEY,
    last_inbound_at  timestamptz,
    current_case     text
);

CREATE TABLE messages (
    id        bigserial PRIMARY KEY,
    customer  text NOT NULL,
    case_code text,
    at        timestamptz NOT NULL,
    author    text NOT NULL CHECK (author IN ('customer', 'agent', 'bot', 'system')),
    text      text NOT NULL
);
CREATE INDEX messages_customer ON messages (customer, id);
CREATE INDEX messages_case ON messages (case_code, id);

-- Every message handoff asks the sender to deliver for a case, so that a later message quoting
-- it (or reacting to it) finds its case and the message it relays.
CREATE TABLE outgoing (
    command_id    text PRIMARY KEY,
    case_code     text NOT NULL,
    recipient     text NOT NULL,
    role          text NOT NULL CHECK (role IN ('agent', 'customer')),
    source_wamid  text,                         -- the inbound message it relays, if any
    wamid         text UNIQUE,                  -- learnt from whatsapp.send.accepted
    body          jsonb,                        -- the command, to hold it again if it fails
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE timers (
    id         bigserial PRIMARY KEY,
    case_code  text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('queue', 'idle')),
    due_at     timestamptz NOT NULL,
    fired_at   timestamptz,
    UNIQUE (case_code, kind)
);
CREATE INDEX timers_due ON timers (due_at) WHERE fired_at IS NULL;

-- Send commands waiting for the recipient's 24 h window to open (they write back).
CREATE TABLE held (
    id         bigserial PRIMARY KEY,
    recipient  text NOT NULL,
    case_code  text NOT NULL,
    body       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX held_recipient ON held (recipient, id);

-- Issue 12: customers known by several identifiers, what Meta says of templates, marketing
-- preferences and the account, and two more circuit kinds of hold.

-- Which identifiers (a phone, a business-scoped user id, a parent one) are one customer: the
-- pair limit, the recipient backoff and a conversation's order are kept per customer.
CREATE TABLE IF NOT EXISTS customer_ids (
    identifier  text PRIMARY KEY,
    customer    text NOT NULL,
    linked_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS customer_ids_customer ON customer_ids (customer);

-- The customer key of an identifier: the one it was linked to, or itself.
CREATE OR REPLACE FUNCTION customer_of(identifier text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(
        (SELECT c.customer FROM customer_ids c WHERE c.identifier = customer_of.identifier),
        customer_of.identifier)
$$;

-- The latest marketing preference a customer expressed under each of their identifiers
-- (user_preferences stop / resume / signup, or Meta's 131050).
CREATE TABLE IF NOT EXISTS marketing_preferences (
    identifier  text PRIMARY KEY,
    stopped     boolean NOT NULL,
    changed_at  timestamptz NOT NULL,
    source      text NOT NULL
);

-- Whether the customer of an identifier stopped marketing messages: their latest preference,
-- whichever of their identifiers it came under.
CREATE OR REPLACE FUNCTION marketing_stopped(identifier text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT COALESCE((
        SELECT p.stopped FROM marketing_preferences p
        WHERE p.identifier = marketing_stopped.identifier
           OR p.identifier IN (
               SELECT c.identifier FROM customer_ids c
               WHERE c.customer = customer_of(marketing_stopped.identifier))
        ORDER BY p.changed_at DESC LIMIT 1), false)
$$;

-- What Meta says of each template (its status, category and quality), each with the time it
-- said it, so that webhooks handled out of order keep the latest. An announced category change
-- (template_category_update with a time) applies from next_category_at.
CREATE TABLE IF NOT EXISTS templates (
    name              text NOT NULL,
    language          text NOT NULL,
    template_id       text,
    status            text,
    status_at         timestamptz,
    category          text,
    category_at       timestamptz,
    quality           text,
    quality_at        timestamptz,
    next_category     text,
    next_category_at  timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, language)
);
CREATE INDEX IF NOT EXISTS templates_id ON templates (template_id);

-- The account's standing, from account_update (database-wide: every replica reports it).
CREATE TABLE IF NOT EXISTS account_state (
    waba_id     text PRIMARY KEY,
    state       text NOT NULL,
    event       text NOT NULL,
    changed_at  timestamptz NOT NULL
);

-- 131049: not sent again before this time. The reason's code for a failure the sender decided
-- itself (a template refused before Meta was asked). Whether its pricing was counted. Whether
-- it is a marketing template (the customer's preference is read at the claim).
ALTER TABLE messages ADD COLUMN IF NOT EXISTS not_before timestamptz;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS reason_code text;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS billed boolean NOT NULL DEFAULT false;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS marketing boolean NOT NULL DEFAULT false;

-- Circuits of two kinds per number: the access token (190, 0) and the account's payment
-- method (131042, 131044).
ALTER TABLE circuits ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'token';
ALTER TABLE circuits DROP CONSTRAINT IF EXISTS circuits_pkey;
ALTER TABLE circuits ADD PRIMARY KEY (phone_number_id, kind);

-- A customer is known by whichever identifiers Meta sends: the phone (E.164, when shown), the
-- business-scoped user id (BSUID) and the parent BSUID. A conversation's key stays the one it
-- was created with; customer_ids maps every identifier to it. An identity change (a new phone,
-- a new BSUID) links the new identifiers and retires the old ones: a retired identifier still
-- finds the conversation for what was sent before the change, and is free after it.

ALTER TABLE conversations
    ADD COLUMN parent_user_id      text,
    ADD COLUMN username            text,
    -- Someone at the business answered from the WhatsApp Business app: the bot is quiet until.
    ADD COLUMN bot_quiet_until     timestamptz,
    ADD COLUMN identity_changed_at timestamptz;

CREATE TABLE customer_ids (
    identifier  text PRIMARY KEY,              -- a phone (+E.164), a BSUID or a parent BSUID
    customer    text NOT NULL REFERENCES conversations (customer),
    retired_at  timestamptz                    -- no longer theirs from then on
);
CREATE INDEX customer_ids_customer ON customer_ids (customer);

-- The conversations from before: their key, their phone and their BSUID name them.
INSERT INTO customer_ids (identifier, customer)
    SELECT customer, customer FROM conversations
    ON CONFLICT DO NOTHING;
INSERT INTO customer_ids (identifier, customer)
    SELECT phone, customer FROM conversations WHERE phone IS NOT NULL
    ON CONFLICT DO NOTHING;
INSERT INTO customer_ids (identifier, customer)
    SELECT user_id, customer FROM conversations WHERE user_id IS NOT NULL
    ON CONFLICT DO NOTHING;

-- Answering is enough (issue 15): an agent's message for no case in particular, kept while they
-- choose the case it is for (an interactive list), and delivered to it once they tap a row; it
-- expires after HANDOFF_DRAFT_TTL_SECONDS (a durable timer: subject the agent's phone, kind
-- 'draft') with a note to the agent.
--
-- Claims need no new column: a claim is `UPDATE cases SET state = 'active', agent = ...
-- WHERE code = $1 AND state = 'queued'`. Of two concurrent claims, the second waits for the
-- first's row lock, re-reads the row, finds it active and changes nothing: one agent wins.

CREATE TABLE drafts (
    id          bigserial PRIMARY KEY,
    agent       text NOT NULL,                  -- the agent's phone (E.164)
    wamid       text NOT NULL UNIQUE,           -- the agent's message: kept once
    message     jsonb NOT NULL,                 -- the InboundMessage, as it came
    text        text NOT NULL DEFAULT '',       -- its words (for a caption, the caption)
    created_at  timestamptz NOT NULL
);
CREATE INDEX drafts_agent ON drafts (agent, id);

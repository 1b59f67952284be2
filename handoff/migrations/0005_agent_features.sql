-- Agents' features (issue 15): a paused agent is offered no new cases; a case moves between
-- agents (transfers: who handled what); a case whose customer waits too long for an answer is
-- offered to the other agents (reply_offers); the customer's rating when the case closed.

ALTER TABLE agents ADD COLUMN paused boolean NOT NULL DEFAULT false;

-- One row per move of a case from one agent to another (a /pasar, or a colleague who took it
-- when the customer waited too long): with the case's claim, the history of its handlers.
CREATE TABLE transfers (
    id          bigserial PRIMARY KEY,
    case_code   text NOT NULL,
    from_agent  text NOT NULL,
    to_agent    text NOT NULL,
    at          timestamptz NOT NULL,
    reason      text NOT NULL                -- transfer, reply_timeout
);
CREATE INDEX transfers_case ON transfers (case_code, id);

-- A case offered to the other agents (its customer waited too long): the first to take it wins.
CREATE TABLE reply_offers (
    case_code   text PRIMARY KEY,
    from_agent  text NOT NULL,
    offered_at  timestamptz NOT NULL
);

-- The rating asked when the case closed: offered, then rated (once) or expired (its deadline).
ALTER TABLE cases
    ADD COLUMN rating_state text CHECK (rating_state IN ('offered', 'rated', 'expired')),
    ADD COLUMN rating       integer,
    ADD COLUMN rated_at     timestamptz;

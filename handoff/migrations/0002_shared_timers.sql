-- The timers table takes the shape every schema's durable timers have (shared.timers): its
-- subject is the case code, and the kinds are the caller's (queue, idle) rather than a CHECK.
ALTER TABLE timers RENAME COLUMN case_code TO subject;
ALTER TABLE timers DROP CONSTRAINT IF EXISTS timers_kind_check;

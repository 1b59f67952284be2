-- A wamid is also superseded when Meta took one command twice (the first answer was lost and
-- the command was sent again): the command keeps the wamid it learnt first, and the other's
-- statuses are recognised here and not counted. `reason` says which case it was.
ALTER TABLE superseded_wamids ADD COLUMN IF NOT EXISTS reason text NOT NULL DEFAULT 'fallback';

-- Whether the current try took over from one that stopped mid-way (its lease ran out, or it
-- was interrupted): Meta may have that request, so the new try waits for a status first.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS taken_over boolean NOT NULL DEFAULT false;

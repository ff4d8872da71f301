-- The per-stream gate (service/store/outbox.py): an unpublished event with a `state` may not go out yet, and
-- neither may the later events of its stream (aggregate, tenant_id, subject). NULL = ready; 'parked' = Kafka
-- refused it for good (the relay sets it, `scimsync relay resend` clears it); 'held' = kept back on purpose.
-- Adding nullable columns without a default rewrites nothing.
ALTER TABLE events
    ADD COLUMN IF NOT EXISTS state        text CHECK (state IN ('parked', 'held')),
    ADD COLUMN IF NOT EXISTS state_reason text,
    ADD COLUMN IF NOT EXISTS state_since  timestamptz;

-- The gates themselves: a handful of rows at most, so the claim's "is this stream gated?" probe is one lookup in
-- a tiny index. Building it reads the table once, blocking writes meanwhile: on a big log build it first with
-- CONCURRENTLY (README, "Migrations on big tables"); IF NOT EXISTS then keeps it.
CREATE INDEX IF NOT EXISTS events_gated ON events (aggregate, tenant_id, subject, sequence)
    WHERE published_at IS NULL AND state IS NOT NULL;

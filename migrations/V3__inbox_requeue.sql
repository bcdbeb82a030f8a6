-- txbox V3: requeue of dead inbox messages.
-- Apply as the database owner: psql -v ON_ERROR_STOP=1 -f V3__inbox_requeue.sql
-- Safe to apply again.

-- An operator (txboxctl inbox dead requeue) sets requeued_at; the consumer then runs its
-- handler on the message again, outside the partition's order, and deletes the dead row
-- when the handler succeeds.
ALTER TABLE txbox.inbox_dead ADD COLUMN IF NOT EXISTS requeued_at timestamptz;
CREATE INDEX IF NOT EXISTS inbox_dead_requeued_idx ON txbox.inbox_dead (consumer, id)
  WHERE requeued_at IS NOT NULL;

INSERT INTO txbox.schema_version (version, description)
  VALUES (3, 'inbox requeue')
  ON CONFLICT (version) DO NOTHING;

-- txbox V5: the outbox's identity, for the relay's exactly-once mode.
-- Apply as the database owner: psql -v ON_ERROR_STOP=1 -f V5__outbox_identity.sql
-- Safe to apply again.
--
-- relay.delivery = "exactly_once" names its Kafka transactional ids and its progress topic
-- after this id (txbox-<id>-lane-<n>, txbox-progress-<id>): two outboxes that share a Kafka
-- cluster never fence each other, even with the same database and schema names. It is made
-- once and travels with the data (a promoted standby, a restored backup keep it).
CREATE TABLE IF NOT EXISTS txbox.outbox_identity (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  id        uuid    NOT NULL DEFAULT gen_random_uuid(),
  made_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO txbox.outbox_identity DEFAULT VALUES ON CONFLICT (singleton) DO NOTHING;
GRANT SELECT ON txbox.outbox_identity TO txbox_relay;

INSERT INTO txbox.schema_version (version, description)
  VALUES (5, 'outbox identity')
  ON CONFLICT (version) DO NOTHING;

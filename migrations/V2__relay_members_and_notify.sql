-- txbox V2: relay membership (for fair lease shares) and the NOTIFY wake-up.
-- Apply as the database owner: psql -v ON_ERROR_STOP=1 -f V2__relay_members_and_notify.sql
-- Safe to apply again.

-- Live relays: each relay refreshes its row every lease tick; the shards are spread evenly
-- over the relays seen recently.
CREATE TABLE IF NOT EXISTS txbox.outbox_relays (
  name    text        PRIMARY KEY,
  seen_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE, DELETE ON txbox.outbox_relays TO txbox_relay;

-- One NOTIFY per inserting statement (not per row) wakes the relays at once; without it
-- they still find new rows at their poll interval (for PgBouncer in transaction mode).
-- The channel is the schema name, so relays of different schemas do not wake each other.
CREATE OR REPLACE FUNCTION txbox.outbox_notify() RETURNS trigger
  LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM pg_notify(TG_TABLE_SCHEMA || '.outbox', '');
  RETURN NULL;
END
$fn$;
REVOKE ALL ON FUNCTION txbox.outbox_notify() FROM PUBLIC;

CREATE OR REPLACE TRIGGER outbox_notify AFTER INSERT ON txbox.outbox
  FOR EACH STATEMENT EXECUTE FUNCTION txbox.outbox_notify();

INSERT INTO txbox.schema_version (version, description)
  VALUES (2, 'relay members and notify')
  ON CONFLICT (version) DO NOTHING;

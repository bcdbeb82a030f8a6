-- txbox V6: writers commit without NOTIFY; relays find new rows by probing the outbox's id
-- sequence instead.
-- Apply as the database owner: psql -v ON_ERROR_STOP=1 -f V6__relay_probe_wakeup.sql
-- Safe to apply again.
--
-- V2's statement trigger called pg_notify in every enqueuing transaction. At commit,
-- PostgreSQL serialises every transaction that issued a NOTIFY on one database-wide lock,
-- held across the commit record's flush (PreCommit_Notify in src/backend/commands/async.c):
-- group commit is lost and the whole database commits one flush at a time while writers
-- enqueue (measured: 0.24x the commit rate of the same transactions without the trigger at
-- 32 writers; docs/benchmarks.md). Without it, an enqueuing transaction takes no lock that
-- every writer shares: its key's advisory lock (per key) and the row's own locks only.
DROP TRIGGER IF EXISTS outbox_notify ON txbox.outbox;
DROP FUNCTION IF EXISTS txbox.outbox_notify();

-- The relays' wake-up (docs/operations.md, "How relays wake up"): an idle relay reads the
-- identity sequence's last_value every few milliseconds (no index walk, no lock); a new value
-- means a writer inserted a row, and the relay claims. The sequence must keep CACHE 1 (the
-- default): with a cache, a session's inserts do not move last_value.
GRANT SELECT ON SEQUENCE txbox.outbox_id_seq TO txbox_relay;

INSERT INTO txbox.schema_version (version, description)
  VALUES (6, 'relay probe wake-up, no notify trigger')
  ON CONFLICT (version) DO NOTHING;

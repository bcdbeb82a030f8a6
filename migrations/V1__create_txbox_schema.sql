-- txbox V1: schema, tables and least-privilege roles.
--
-- Apply as the database owner (CREATEROLE needed for the roles; superuser not needed):
--   psql -v ON_ERROR_STOP=1 -f V1__create_txbox_schema.sql
-- Safe to apply again: every statement is IF NOT EXISTS or otherwise idempotent.
-- Every object lives in schema "txbox"; render.sh writes these files for another schema name.

CREATE SCHEMA IF NOT EXISTS txbox;

-- Schema version the code checks at start (txbox::schema_error names the missing migration).
CREATE TABLE IF NOT EXISTS txbox.schema_version (
  version     integer     PRIMARY KEY,
  description text        NOT NULL,
  applied_at  timestamptz NOT NULL DEFAULT now()
);

-- Messages waiting to be published. Rows are written by txbox::outbox inside the business
-- transaction and deleted by txbox-relay after Kafka acknowledged them.
CREATE TABLE IF NOT EXISTS txbox.outbox (
  id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  message_id      uuid        NOT NULL UNIQUE,
  topic           text        NOT NULL CHECK (topic ~ '^[a-zA-Z0-9._-]{1,249}$'),
  key             text,
  -- The ordering unit: all messages of one key share a shard; one relay publishes a shard
  -- at a time, in id order. Keyless messages spread over all shards by their id.
  shard           smallint    NOT NULL GENERATED ALWAYS AS
                    ((hashtext(coalesce(key, message_id::text)) & 63)) STORED,
  payload         bytea       NOT NULL,
  headers         jsonb       NOT NULL DEFAULT '[]'::jsonb,
  created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  attempts        integer     NOT NULL DEFAULT 0,
  last_error      text,
  next_attempt_at timestamptz,
  published_at    timestamptz
);
-- The relay's claim: the head of one shard, pending rows only.
CREATE INDEX IF NOT EXISTS outbox_pending_idx
  ON txbox.outbox (shard, id) WHERE published_at IS NULL;
-- Small, busy, delete-heavy: vacuum early so dead tuples do not pile up in the index.
ALTER TABLE txbox.outbox SET (autovacuum_vacuum_scale_factor = 0.01,
                              autovacuum_vacuum_insert_scale_factor = 0.01,
                              autovacuum_vacuum_cost_delay = 0);

-- Messages Kafka refused for good (too large, topic invalid or not authorised).
CREATE TABLE IF NOT EXISTS txbox.outbox_dead (
  id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  message_id  uuid        NOT NULL UNIQUE,
  topic       text        NOT NULL,
  key         text,
  payload     bytea       NOT NULL,
  headers     jsonb       NOT NULL,
  created_at  timestamptz NOT NULL,
  attempts    integer     NOT NULL,
  error       text        NOT NULL,
  failed_at   timestamptz NOT NULL DEFAULT now()
);

-- Shard leases: one row per shard (0..63). A relay owns a shard while expires_at is in the
-- future; epoch grows at every change of owner and fences a relay that lost its lease.
CREATE TABLE IF NOT EXISTS txbox.outbox_leases (
  shard      smallint    PRIMARY KEY CHECK (shard BETWEEN 0 AND 63),
  owner      text,
  epoch      bigint      NOT NULL DEFAULT 0,
  expires_at timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO txbox.outbox_leases (shard)
  SELECT s FROM generate_series(0, 63) AS s
  ON CONFLICT (shard) DO NOTHING;

-- Messages a consumer has processed: the dedupe record, committed with the effects.
-- message_id is the ce_id header, or "kafka:<topic>/<partition>/<offset>" for messages
-- that carry none (e.g. produced by something other than txbox).
CREATE TABLE IF NOT EXISTS txbox.inbox (
  consumer     text        NOT NULL,
  message_id   text        NOT NULL,
  topic        text        NOT NULL,
  "partition"  integer     NOT NULL,
  "offset"     bigint      NOT NULL,
  processed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, message_id)
);
CREATE INDEX IF NOT EXISTS inbox_processed_at_idx ON txbox.inbox (processed_at);

-- Where each consumer resumes: the source of truth for offsets (Kafka's are a mirror).
CREATE TABLE IF NOT EXISTS txbox.inbox_offsets (
  consumer    text        NOT NULL,
  topic       text        NOT NULL,
  "partition" integer     NOT NULL,
  next_offset bigint      NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, topic, "partition")
);

-- Messages whose handler kept failing.
CREATE TABLE IF NOT EXISTS txbox.inbox_dead (
  id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  consumer    text        NOT NULL,
  message_id  text        NOT NULL,
  topic       text        NOT NULL,
  "partition" integer     NOT NULL,
  "offset"    bigint      NOT NULL,
  key         bytea,
  payload     bytea,
  headers     jsonb       NOT NULL DEFAULT '[]'::jsonb,
  error       text        NOT NULL,
  attempts    integer     NOT NULL,
  failed_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (consumer, message_id)
);

-- Group roles (NOLOGIN). DBAs grant them to service users:
--   GRANT txbox_writer TO order_service;
DO $roles$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'txbox_writer') THEN
    CREATE ROLE txbox_writer NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'txbox_relay') THEN
    CREATE ROLE txbox_relay NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'txbox_consumer') THEN
    CREATE ROLE txbox_consumer NOLOGIN;
  END IF;
END
$roles$;

GRANT USAGE ON SCHEMA txbox TO txbox_writer, txbox_relay, txbox_consumer;

-- Writer: append to the outbox, nothing else.
GRANT INSERT ON txbox.outbox TO txbox_writer;

-- Relay: read, update and delete outbox rows, move dead letters, hold leases.
GRANT SELECT ON txbox.schema_version TO txbox_relay;
GRANT SELECT, INSERT, UPDATE, DELETE ON txbox.outbox TO txbox_relay;
GRANT SELECT, INSERT, DELETE ON txbox.outbox_dead TO txbox_relay;
GRANT SELECT, UPDATE ON txbox.outbox_leases TO txbox_relay;

-- Consumer: its inbox, offsets and dead letters.
GRANT SELECT ON txbox.schema_version TO txbox_consumer;
GRANT SELECT, INSERT, DELETE ON txbox.inbox TO txbox_consumer;
GRANT SELECT, INSERT, UPDATE ON txbox.inbox_offsets TO txbox_consumer;
GRANT SELECT, INSERT, UPDATE, DELETE ON txbox.inbox_dead TO txbox_consumer;

INSERT INTO txbox.schema_version (version, description)
  VALUES (1, 'create txbox schema')
  ON CONFLICT (version) DO NOTHING;

-- txbox V4: enqueue() in SQL, for writers in any language and for DBAs.
-- Apply as the database owner: psql -v ON_ERROR_STOP=1 -f V4__sql_enqueue.sql
-- Safe to apply again.
--
--   BEGIN;
--   INSERT INTO orders ...;
--   SELECT txbox.enqueue('orders', 'order-42', convert_to('{"id":42}', 'UTF8'),
--                        '[["traceparent", "00-..."]]', 'OrderPlaced');
--   COMMIT;
--
-- The same rules as the C++ Outbox::enqueue (outbox/src/outbox.cpp):
-- * a keyed message takes pg_advisory_xact_lock(29816, hashtext(key)), the lock the C++
--   writers take (core/src/schema.cpp key_lock_sql; 29816 = 0x7478, "tx"), before its row
--   gets its id: writers of one key in C++ and in SQL are serialised together, so id order is
--   commit order;
-- * the checks, each raising its own SQLSTATE (class TX) with a message naming the rule:
--     TX001 topic       Kafka topic name: 1-249 of [a-zA-Z0-9._-], not "." or ".."
--     TX002 payload     not NULL, at most <schema>.max_payload_bytes (default 1048576) bytes
--     TX003 key         UTF-8 text (NUL cannot occur in PostgreSQL text)
--     TX004 type        UTF-8 text
--     TX005 headers     a JSON array of ["name", "value"] string pairs (or an object), at
--                       most <schema>.max_headers (default 64) of them
--     TX006 header name non-empty UTF-8
--     TX007 header value UTF-8 text
--     TX008 reserved    names starting with "ce_" are txbox's (CloudEvents headers)
--     TX009 source      non-empty UTF-8 (sent as ce_source)
-- * a UUIDv7 id (48 bits of Unix milliseconds, 12 bits of sub-millisecond time, 62 random
--   bits), returned, sent as ce_id;
-- * the stored headers: ce_specversion, ce_source, ce_time (RFC 3339, UTC, microseconds),
--   ce_type when a type is given, then the caller's headers in order.
--
-- SECURITY INVOKER (the default): the function runs with the caller's rights, so it grants
-- nothing beyond what txbox_writer already has (INSERT on the outbox). It is a convenience
-- and a contract, not a gate; a SECURITY DEFINER function would run as the owner and need a
-- pinned search_path to be safe, for no gain here.

CREATE OR REPLACE FUNCTION txbox.enqueue(
  topic   text,
  key     text,
  payload bytea,
  headers jsonb DEFAULT '[]'::jsonb,
  type    text DEFAULT NULL,
  source  text DEFAULT 'txbox')
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY INVOKER PARALLEL UNSAFE
AS $fn$
DECLARE
  max_payload bigint := coalesce(nullif(current_setting('txbox.max_payload_bytes', true), ''),
                                 '1048576')::bigint;
  max_headers integer := coalesce(nullif(current_setting('txbox.max_headers', true), ''),
                                  '64')::integer;
  pairs   jsonb;
  pair    jsonb;
  n       integer := 0;
  hname   text;
  hvalue  text;
  utf8    text[] := ARRAY[]::text[];  -- (rule, sqlstate, what, value) to check as UTF-8
  i       integer;
  now_ts  timestamptz := clock_timestamp();
  us      bigint;
  rnd     text;
  new_id  uuid;
  stored  jsonb;
BEGIN
  -- TX001 topic
  IF topic IS NULL OR topic = '' THEN
    RAISE EXCEPTION USING ERRCODE = 'TX001',
      MESSAGE = 'enqueue rejected (rule topic): illegal Kafka topic name: it is empty',
      HINT = 'pass a topic of 1-249 characters of [a-zA-Z0-9._-]';
  END IF;
  IF length(topic) > 249 THEN
    RAISE EXCEPTION USING ERRCODE = 'TX001',
      MESSAGE = format('enqueue rejected (rule topic): illegal Kafka topic name ''%s...'': %s '
                       'characters, Kafka allows at most 249', left(topic, 40), length(topic)),
      HINT = 'pass a topic of 1-249 characters of [a-zA-Z0-9._-]';
  END IF;
  IF topic IN ('.', '..') THEN
    RAISE EXCEPTION USING ERRCODE = 'TX001',
      MESSAGE = format('enqueue rejected (rule topic): illegal Kafka topic name ''%s'': ''.'' '
                       'and ''..'' are reserved', topic);
  END IF;
  IF topic !~ '^[a-zA-Z0-9._-]+$' THEN
    RAISE EXCEPTION USING ERRCODE = 'TX001',
      MESSAGE = format('enqueue rejected (rule topic): illegal Kafka topic name %L: only ASCII '
                       'letters, digits, ''.'', ''_'' and ''-'' are allowed', topic);
  END IF;

  -- TX002 payload
  IF payload IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = 'TX002',
      MESSAGE = format('enqueue rejected (rule payload): the payload of the message for topic '
                       '''%s'' is NULL', topic),
      HINT = 'pass the bytes to publish (an empty bytea for an empty message)';
  END IF;
  IF octet_length(payload) > max_payload THEN
    RAISE EXCEPTION USING ERRCODE = 'TX002',
      MESSAGE = format('enqueue rejected (rule payload): message for topic ''%s'': payload is %s '
                       'bytes, the maximum is %s', topic, octet_length(payload), max_payload),
      HINT = 'raise the setting max_payload_bytes of this schema (SET <schema>.max_payload_bytes)'
             ' together with the broker''s message.max.bytes, or store large data elsewhere and '
             'send a reference';
  END IF;

  -- TX009 source
  IF source IS NULL OR source = '' THEN
    RAISE EXCEPTION USING ERRCODE = 'TX009',
      MESSAGE = format('enqueue rejected (rule source): message for topic ''%s'': the source is '
                       'empty (it is sent as ce_source)', topic),
      HINT = 'leave the argument out (default ''txbox'') or name the producing service';
  END IF;

  -- TX005 headers: an array of [name, value] pairs, or an object (in jsonb's key order).
  headers := coalesce(headers, '[]'::jsonb);
  IF jsonb_typeof(headers) = 'object' THEN
    SELECT coalesce(jsonb_agg(jsonb_build_array(e.key, e.value)), '[]'::jsonb)
      INTO pairs FROM jsonb_each(headers) AS e;
  ELSIF jsonb_typeof(headers) = 'array' THEN
    pairs := headers;
  ELSE
    RAISE EXCEPTION USING ERRCODE = 'TX005',
      MESSAGE = format('enqueue rejected (rule headers): message for topic ''%s'': headers must '
                       'be a JSON array of ["name", "value"] pairs, got a JSON %s', topic,
                       jsonb_typeof(headers)),
      HINT = 'pass ''[["traceparent", "00-..."]]'' (or ''{"traceparent": "00-..."}'')';
  END IF;
  IF jsonb_array_length(pairs) > max_headers THEN
    RAISE EXCEPTION USING ERRCODE = 'TX005',
      MESSAGE = format('enqueue rejected (rule headers): message for topic ''%s'': %s headers, the'
                       ' maximum is %s', topic, jsonb_array_length(pairs), max_headers),
      HINT = 'send fewer headers, or raise the setting max_headers of this schema';
  END IF;
  FOR pair IN SELECT value FROM jsonb_array_elements(pairs) LOOP
    n := n + 1;
    IF jsonb_typeof(pair) IS DISTINCT FROM 'array' OR jsonb_array_length(pair) <> 2
       OR jsonb_typeof(pair -> 0) <> 'string' THEN
      RAISE EXCEPTION USING ERRCODE = 'TX005',
        MESSAGE = format('enqueue rejected (rule headers): message for topic ''%s'': header #%s '
                         'is %s, not a ["name", "value"] pair of strings', topic, n, pair),
        HINT = 'pass ''[["traceparent", "00-..."]]''';
    END IF;
    hname := pair ->> 0;
    IF hname = '' THEN
      RAISE EXCEPTION USING ERRCODE = 'TX006',
        MESSAGE = format('enqueue rejected (rule header name): message for topic ''%s'': header '
                         '#%s has a name that is empty or not valid UTF-8', topic, n);
    END IF;
    IF jsonb_typeof(pair -> 1) <> 'string' THEN
      RAISE EXCEPTION USING ERRCODE = 'TX007',
        MESSAGE = format('enqueue rejected (rule header value): message for topic ''%s'': the '
                         'value of header ''%s'' is a JSON %s, not a string', topic, hname,
                         jsonb_typeof(pair -> 1)),
        HINT = 'header values are UTF-8 text; put binary data in the payload';
    END IF;
    IF starts_with(hname, 'ce_') THEN
      RAISE EXCEPTION USING ERRCODE = 'TX008',
        MESSAGE = format('enqueue rejected (rule reserved): message for topic ''%s'': header '
                         '''%s'' is reserved (the ce_* CloudEvents headers are set by enqueue)',
                         topic, hname),
        HINT = 'pass the type argument for ce_type; ce_id, ce_source, ce_time and '
               'ce_specversion are set for you';
    END IF;
    hvalue := pair ->> 1;
    utf8 := utf8 || ARRAY['header name', 'TX006', format('header #%s''s name', n), hname,
                          'header value', 'TX007', format('the value of header #%s', n), hvalue];
  END LOOP;

  -- TX003 key, TX004 type, TX006/TX007 headers: UTF-8. In a UTF8 database PostgreSQL has
  -- checked every text value already; in another encoding the bytes are checked here.
  IF pg_catalog.getdatabaseencoding() <> 'UTF8' THEN
    utf8 := ARRAY['key', 'TX003', 'the key', key, 'type', 'TX004', 'the type', type,
                  'source', 'TX009', 'the source', source] || utf8;
    FOR i IN 1 .. coalesce(array_length(utf8, 1), 0) / 4 LOOP
      CONTINUE WHEN utf8[4 * i] IS NULL;
      BEGIN
        PERFORM pg_catalog.convert(pg_catalog.convert_to(utf8[4 * i],
                                   pg_catalog.getdatabaseencoding()), 'UTF8', 'UTF8');
      EXCEPTION WHEN character_not_in_repertoire OR untranslatable_character THEN
        RAISE EXCEPTION USING ERRCODE = utf8[4 * i - 2],
          MESSAGE = format('enqueue rejected (rule %s): message for topic ''%s'': %s is not valid'
                           ' UTF-8 text', utf8[4 * i - 3], topic, utf8[4 * i - 1]),
          HINT = 'keys, types and headers go to Kafka as UTF-8 text; put binary data in the payload';
      END;
    END LOOP;
  END IF;

  -- UUIDv7 (RFC 9562, method 3 as in core/src/uuid.cpp): unix ms, 12 bits of the rest of the
  -- millisecond, then the variant and 62 random bits of a random UUID.
  us := (extract(epoch FROM now_ts) * 1000000)::bigint;
  rnd := replace(gen_random_uuid()::text, '-', '');
  new_id := (lpad(to_hex(us / 1000), 12, '0') || '7' ||
         lpad(to_hex(((us % 1000) * 4096) / 1000), 3, '0') || substr(rnd, 17))::uuid;

  stored := jsonb_build_array(
              jsonb_build_array('ce_specversion', '1.0'),
              jsonb_build_array('ce_source', source),
              jsonb_build_array('ce_time',
                                to_char(now_ts AT TIME ZONE 'UTC',
                                        'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')));
  IF type IS NOT NULL AND type <> '' THEN
    stored := stored || jsonb_build_array(jsonb_build_array('ce_type', type));
  END IF;
  stored := stored || pairs;

  -- The key's lock before the row's identity id (the C++ writers' lock, see above).
  IF key IS NOT NULL THEN
    PERFORM pg_advisory_xact_lock(29816, hashtext(key));
  END IF;
  INSERT INTO txbox.outbox (message_id, topic, key, payload, headers)
    VALUES (new_id, enqueue.topic, enqueue.key, enqueue.payload, stored);
  RETURN new_id;
END
$fn$;
COMMENT ON FUNCTION txbox.enqueue(text, text, bytea, jsonb, text, text) IS
  'Writes one message into the outbox in the caller''s transaction, with the rules and key lock '
  'of the C++ Outbox::enqueue; returns its id (UUIDv7). See docs/migrations.md.';
REVOKE ALL ON FUNCTION txbox.enqueue(text, text, bytea, jsonb, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION txbox.enqueue(text, text, bytea, jsonb, text, text) TO txbox_writer;

INSERT INTO txbox.schema_version (version, description)
  VALUES (4, 'sql enqueue')
  ON CONFLICT (version) DO NOTHING;

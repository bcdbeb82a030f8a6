// pg-transactional-outbox (npm, Frank Zehelein) outbox listener -> Kafka (kafkajs), measured on
// txbox's benchmark database and broker.
//
//   node bench.js PG_CONNINFO KAFKA_BOOTSTRAP N
//
// Environment (all optional; run.sh sets them):
//   PTO_ADMIN        superuser libpq conninfo (TXBOX_TEST_PG_ADMIN); needed for the replication
//                    mode (REPLICATION role attribute, replication slot)
//   PTO_MODE         replication (default; needs wal_level=logical) | polling
//   PTO_CONCURRENCY  replication mode concurrency controller: segment (default) | mutex |
//                    semaphore:N | full
//   PTO_POOL         max connections of the library's message-processing pool (default 20)
//   PTO_BATCH        polling mode: nextMessagesBatchSize (default 100)
//   PTO_POLL_MS      polling mode: nextMessagesPollingIntervalInMs (default 100)
//   PTO_PRODUCER     coalesce (default) | plain: see the handler below
//   PTO_MAX_ATTEMPTS the library's maxAttempts (default 100, library default 5)
//   PTO_STALL_SEC    stop when no message reached Kafka for this long (default 60)
//
// 1. Sets up the outbox with the library's DatabaseSetup helper (table, grants, publication,
//    logical replication slot, or the polling function and indexes).
// 2. Writes N outbox messages (200-byte JSON payload, 1000 keys) with the library's
//    initializeMessageStorage in transactions of 1000 messages.
// 3. Creates the Kafka topic with one warm-up message and connects the producer (acks=-1,
//    idempotent), then starts the library's outbox listener whose handler awaits the send.
// 4. Times from the first outbox message in Kafka to the N-th (start-up excluded) by polling the
//    topic's end offset. Prints the rate (msgs/s) on stdout, progress on stderr.
'use strict';

const { randomUUID } = require('node:crypto');
const { Client } = require('pg');
const { Kafka, logLevel } = require('kafkajs');
const pto = require('pg-transactional-outbox');

const progress = (...a) =>
  process.stderr.write(`[pg-transactional-outbox ${new Date().toISOString().slice(11, 19)}] ${a.join(' ')}\n`);
const die = (e) => {
  process.stderr.write(`pg-transactional-outbox bench: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
};

// libpq key=value conninfo -> node-postgres client config
function parseConninfo(s) {
  const out = {};
  const re = /\s*([A-Za-z_]+)\s*=\s*('((?:[^'\\]|\\.)*)'|[^\s]*)/g;
  let m;
  while ((m = re.exec(s)) !== null) {
    const v = m[3] !== undefined ? m[3].replace(/\\(.)/g, '$1') : m[2];
    out[m[1]] = v;
  }
  const cfg = {};
  if (out.host) cfg.host = out.host;
  if (out.hostaddr && !out.host) cfg.host = out.hostaddr;
  if (out.port) cfg.port = Number(out.port);
  if (out.dbname) cfg.database = out.dbname;
  if (out.user) cfg.user = out.user;
  if (out.password) cfg.password = out.password;
  return cfg;
}

async function main() {
  const [pgInfo, bootstrap, nArg] = process.argv.slice(2);
  if (!pgInfo || !bootstrap || !nArg) {
    process.stderr.write('usage: node bench.js PG_CONNINFO KAFKA_BOOTSTRAP N\n');
    process.exit(2);
  }
  const n = Number(nArg);
  let mode = process.env.PTO_MODE || 'replication';
  const concurrency = process.env.PTO_CONCURRENCY || 'segment';
  const poolMax = Number(process.env.PTO_POOL || 20);
  const batch = Number(process.env.PTO_BATCH || 100);
  const pollMs = Number(process.env.PTO_POLL_MS || 100);
  const owner = parseConninfo(pgInfo);
  const admin = process.env.PTO_ADMIN
    ? { ...parseConninfo(process.env.PTO_ADMIN), database: owner.database }
    : owner;

  const suffix = Date.now().toString(36);
  const schema = 'pto';
  const table = 'outbox';
  const listenerRole = 'pto_listener';
  const publication = 'pto_outbox_pub';
  const slot = 'pto_outbox_slot';
  const fnName = 'pto_next_outbox_messages';
  const topic = `pto_outbox_${suffix}`;
  const logger = pto.getDefaultLogger('outbox');
  logger.level = process.env.PTO_LOG_LEVEL || 'error'; // 'warn' shows the polling lock retries

  // --- 1. database setup (the library's DatabaseSetup helper) -----------------------------
  const adm = new Client(admin);
  await adm.connect();
  if (mode === 'replication') {
    const wal = (await adm.query('SHOW wal_level')).rows[0].wal_level;
    if (wal !== 'logical') {
      if (process.env.PTO_MODE) throw new Error(`replication mode needs wal_level=logical (server has ${wal})`);
      progress(`WARNING: wal_level=${wal}, not logical: measuring the POLLING listener instead of the replication listener`);
      mode = 'polling';
    }
  }
  const setupCfg = {
    outboxOrInbox: 'outbox',
    database: owner.database,
    schema,
    table,
    listenerRole,
    handlerRole: owner.user,
    publication,
    replicationSlot: slot,
    nextMessagesName: fnName,
  };
  const S = pto.DatabaseSetup;
  // The roles: the library only prints them as comments (to create by hand). The listener role
  // is created here; the handler role (the application writing the outbox) is the db owner.
  const exists = await adm.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [listenerRole]);
  if (exists.rowCount === 0) await adm.query(`CREATE ROLE ${listenerRole} WITH LOGIN`);
  await adm.query(`GRANT CONNECT ON DATABASE ${owner.database} TO ${listenerRole}`);
  await adm.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
  await adm.query(`DROP PUBLICATION IF EXISTS ${publication}`);
  await adm.query(S.dropAndCreateTable(setupCfg));
  await adm.query(S.grantPermissions(setupCfg));
  if (mode === 'replication') {
    await adm.query(S.setupReplicationCore(setupCfg)); // ALTER ROLE .. REPLICATION; publication
    await adm.query(S.setupReplicationSlot(setupCfg)); // pgoutput slot, in its own transaction
  } else {
    const r = await adm.query('SELECT rolreplication FROM pg_roles WHERE rolname = $1', [listenerRole]);
    if (r.rows[0].rolreplication) await adm.query(`ALTER ROLE ${listenerRole} WITH NOREPLICATION`);
    await adm.query(S.createPollingFunction(setupCfg));
    await adm.query(S.setupPollingIndexes(setupCfg));
  }
  await adm.end();
  progress(`set up ${schema}.${table} for the ${mode} listener`);

  const dbListenerConfig = { ...owner, user: listenerRole, password: undefined };
  const settings = {
    dbSchema: schema,
    dbTable: table,
    // as the README's outbox example: no max-attempts / poisonous-message bookkeeping for the
    // outbox (the library's outbox ENV defaults are false as well)
    enableMaxAttemptsProtection: false,
    enablePoisonousMessageProtection: false,
    messageCleanupIntervalInMs: 0, // no background cleanup during the measurement
    // The polling listener's poll transaction row-locks (NOWAIT) the oldest message of each
    // segment, also the ones being processed, so a handler's own NOWAIT lock can fail while a
    // poll runs; with the default of 5 attempts such messages get abandoned (never sent). More
    // attempts keep at-least-once delivery. (No effect on the replication listener here.)
    maxAttempts: Number(process.env.PTO_MAX_ATTEMPTS || 100),
  };
  const config =
    mode === 'replication'
      ? {
          outboxOrInbox: 'outbox',
          dbListenerConfig,
          dbHandlerConfig: { ...dbListenerConfig, max: poolMax },
          settings: { ...settings, dbPublication: publication, dbReplicationSlot: slot },
        }
      : {
          outboxOrInbox: 'outbox',
          dbListenerConfig,
          dbHandlerConfig: { ...dbListenerConfig, max: poolMax },
          settings: {
            ...settings,
            nextMessagesFunctionSchema: schema,
            nextMessagesFunctionName: fnName,
            nextMessagesBatchSize: batch,
            nextMessagesPollingIntervalInMs: pollMs,
          },
        };

  // --- 2. the outbox writes: initializeMessageStorage in transactions of 1000 ---------------
  const storeOutboxMessage = pto.initializeMessageStorage(config, logger);
  const data = 'p'.repeat(200 - JSON.stringify({ data: '' }).length); // JSON payload of 200 B
  const app = new Client(owner);
  await app.connect();
  progress(`writing ${n} messages (initializeMessageStorage, transactions of 1000)`);
  let t = Date.now();
  for (let i = 0; i < n; i += 1000) {
    await app.query('BEGIN');
    for (let j = i; j < n && j < i + 1000; j++) {
      const key = `key-${j % 1000}`;
      await storeOutboxMessage(
        {
          id: randomUUID(),
          aggregateType: 'order',
          aggregateId: key,
          messageType: 'OrderPlaced',
          segment: key, // per-key order, as txbox (used by the segment concurrency controller)
          concurrency: 'sequential',
          payload: { data },
          metadata: { topic },
          createdAt: new Date().toISOString(),
        },
        app,
      );
    }
    await app.query('COMMIT');
  }
  await app.end();
  progress(`written in ${((Date.now() - t) / 1000).toFixed(1)} s`);

  // --- 3. Kafka: topic (one warm-up message), producer, end-offset watcher -------------------
  const kafka = new Kafka({ clientId: 'pto-bench', brokers: bootstrap.split(','), logLevel: logLevel.ERROR });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: true });
  await producer.connect();
  await producer.send({ topic, acks: -1, messages: [{ key: 'warm-up', value: 'warm-up' }] });
  const kadmin = kafka.admin();
  await kadmin.connect();
  const end = async () => {
    const offs = await kadmin.fetchTopicOffsets(topic);
    return offs.reduce((s, p) => s + Number(p.high), 0);
  };
  const base = await end();

  // The message handler: publishes the outbox message and resolves when Kafka acknowledged it
  // (acks=all). The listener marks the message processed only after that.
  //   PTO_PRODUCER=plain    one producer.send per handler call (kafkajs as documented)
  //   PTO_PRODUCER=coalesce handler calls that arrive while a produce request is in flight are
  //                         sent together in the next request (kafkajs has no linger.ms; this is
  //                         what librdkafka's batching does); each handler still awaits its own ack.
  const producerMode = process.env.PTO_PRODUCER || 'coalesce';
  const kmsg = (message) => ({
    key: message.aggregateId,
    value: JSON.stringify(message.payload),
    headers: { 'message-id': message.id, 'message-type': message.messageType },
  });
  let pending = [];
  let inFlight = false;
  let requests = 0;
  const flush = async () => {
    inFlight = true;
    while (pending.length > 0) {
      const batch = pending;
      pending = [];
      const byTopic = new Map();
      for (const p of batch) {
        if (!byTopic.has(p.topic)) byTopic.set(p.topic, []);
        byTopic.get(p.topic).push(p.msg);
      }
      try {
        requests++;
        await producer.sendBatch({
          acks: -1,
          topicMessages: [...byTopic].map(([t, messages]) => ({ topic: t, messages })),
        });
        for (const p of batch) p.resolve();
      } catch (e) {
        for (const p of batch) p.reject(e);
      }
    }
    inFlight = false;
  };
  const sendCoalesced = (topic, msg) =>
    new Promise((resolve, reject) => {
      pending.push({ topic, msg, resolve, reject });
      if (!inFlight) setImmediate(() => { if (!inFlight) void flush(); });
    });
  const handler = {
    handle:
      producerMode === 'plain'
        ? async (message) => {
            requests++;
            await producer.send({ topic: message.metadata.topic, acks: -1, messages: [kmsg(message)] });
          }
        : async (message) => {
            await sendCoalesced(message.metadata.topic, kmsg(message));
          },
  };

  // --- 4. start the listener and time it ---------------------------------------------------
  let shutdown;
  if (mode === 'replication') {
    let cc;
    if (concurrency === 'segment') cc = pto.createReplicationSegmentMutexConcurrencyController();
    else if (concurrency === 'mutex') cc = pto.createReplicationMutexConcurrencyController();
    else if (concurrency === 'full') cc = pto.createReplicationFullConcurrencyController();
    else if (concurrency.startsWith('semaphore:'))
      cc = pto.createReplicationSemaphoreConcurrencyController(Number(concurrency.split(':')[1]));
    else throw new Error(`unknown PTO_CONCURRENCY ${concurrency}`);
    [shutdown] = pto.initializeReplicationMessageListener(config, handler, logger, { concurrencyStrategy: cc });
    progress(`replication listener started (concurrency ${concurrency}, pool ${poolMax})`);
  } else {
    [shutdown] = pto.initializePollingMessageListener(config, handler, logger);
    progress(`polling listener started (batch ${batch}, interval ${pollMs} ms, pool ${poolMax})`);
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  let first = await end();
  while (first <= base) {
    await sleep(2);
    first = await end();
  }
  const t0 = process.hrtime.bigint();
  const secs = () => Number(process.hrtime.bigint() - t0) / 1e9;
  let last = first;
  let lastAt = 0; // seconds after t0 when `last` was reached
  let lastReport = Date.now();
  const stallSec = Number(process.env.PTO_STALL_SEC || 60);
  const deadline = Date.now() + 20 * 60 * 1000;
  while (last < base + n && Date.now() < deadline && secs() - lastAt < stallSec) {
    await sleep(10);
    const e = await end();
    if (e > last) {
      last = e;
      lastAt = secs();
    }
    if (Date.now() - lastReport > 10000) {
      lastReport = Date.now();
      progress(`${last - base}/${n} in Kafka after ${secs().toFixed(1)} s (${((last - first) / secs()).toFixed(0)} msgs/s)`);
    }
  }
  const s = lastAt;
  const rate = s > 0 ? (last - first) / s : 0;
  progress(`published ${last - first} messages after the first in ${s.toFixed(1)} s: ${rate.toFixed(0)} msgs/s`);
  if (last < base + n) {
    progress(`WARNING: only ${last - base} of ${n} messages reached Kafka (no progress for ${stallSec} s or ` +
      `deadline); the rate is over the delivered ones`);
  }
  if (last > base + n) progress(`note: ${last - base - n} duplicates in Kafka`);
  progress(`producer: ${producerMode}, ${requests} produce requests`);
  const chk = new Client(owner);
  await chk.connect();
  const st = (await chk.query(
    `SELECT count(*) FILTER (WHERE processed_at IS NULL) AS unprocessed,
            count(*) FILTER (WHERE abandoned_at IS NOT NULL) AS abandoned,
            count(*) FILTER (WHERE GREATEST(started_attempts, finished_attempts) > 1) AS retried
       FROM ${schema}.${table}`)).rows[0];
  await chk.end();
  progress(`outbox table: ${st.unprocessed} unprocessed, ${st.abandoned} abandoned, ${st.retried} with more than one attempt`);

  await Promise.race([shutdown(), sleep(5000)]);
  await kadmin.disconnect();
  await producer.disconnect();
  process.stdout.write(`${rate.toFixed(0)}\n`);
  process.exit(0);
}

main().catch(die);

// Debezium's embedded PostgreSQL connector (pgoutput) with the outbox event router SMT,
// publishing with a KafkaProducer configured like txbox's relay, measured on txbox's benchmark
// database and broker.
//
//   java -cp ... txbox.bench.DebeziumOutboxBench PG_CONNINFO KAFKA_BOOTSTRAP N
//
// PG_CONNINFO is a libpq key=value string for a role with REPLICATION that may create a schema
// in the database (run.sh makes one). The engine is started first and left to create its slot and
// publication; one warm-up transaction then goes through the whole path (creates the topic, loads
// the classes, connects the producer). Then N rows of a 200 B payload over 1000 keys are inserted
// in transactions of 1000 while the connector streams, and the rate is N over the time from the
// first of these commits to the broker's ack of the N-th message (DBZ_BENCH_MODE=backlog instead
// stops the engine, inserts the rows, restarts it and times the first ack to the N-th). Prints
// the rate (msgs/s) on stdout, progress on stderr. README.md explains the settings.
package txbox.bench;

import io.debezium.embedded.Connect;
import io.debezium.engine.DebeziumEngine;
import io.debezium.engine.RecordChangeEvent;
import io.debezium.engine.format.ChangeEventFormat;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.LocalTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.connect.header.Header;
import org.apache.kafka.connect.source.SourceRecord;

public final class DebeziumOutboxBench {
  static final String SCHEMA = "dbz_bench";
  static final String TABLE = SCHEMA + ".outbox";
  static final int TX_ROWS = 1000;
  static final int KEYS = 1000;
  static final int PAYLOAD_BYTES = 200;

  static void progress(String fmt, Object... args) {
    System.err.printf("[debezium %s] %s%n",
        LocalTime.now().format(DateTimeFormatter.ofPattern("HH:mm:ss")), String.format(fmt, args));
  }

  /** Parses a libpq key=value conninfo (values optionally in single quotes). */
  static Map<String, String> parseConninfo(String s) {
    Map<String, String> m = new LinkedHashMap<>();
    int i = 0;
    while (i < s.length()) {
      while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++;
      if (i >= s.length()) break;
      int eq = s.indexOf('=', i);
      if (eq < 0) throw new IllegalArgumentException("bad conninfo: " + s);
      String key = s.substring(i, eq).trim();
      i = eq + 1;
      while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++;
      StringBuilder v = new StringBuilder();
      if (i < s.length() && s.charAt(i) == '\'') {
        for (i++; i < s.length() && s.charAt(i) != '\''; i++) {
          if (s.charAt(i) == '\\' && i + 1 < s.length()) i++;
          v.append(s.charAt(i));
        }
        i++;
      } else {
        for (; i < s.length() && !Character.isWhitespace(s.charAt(i)); i++) v.append(s.charAt(i));
      }
      m.put(key, v.toString()); // a repeated key: the last one wins, as in libpq
    }
    return m;
  }

  static long envLong(String name, long dflt) {
    String v = System.getenv(name);
    return v == null || v.isEmpty() ? dflt : Long.parseLong(v);
  }

  public static void main(String[] args) throws Exception {
    if (args.length < 3) {
      System.err.println("usage: DebeziumOutboxBench PG_CONNINFO KAFKA_BOOTSTRAP N");
      System.exit(2);
    }
    Map<String, String> pg = parseConninfo(args[0]);
    String bootstrap = args[1];
    long n = Long.parseLong(args[2]);
    String host = pg.getOrDefault("host", "127.0.0.1");
    String port = pg.getOrDefault("port", "5432");
    String db = pg.getOrDefault("dbname", "postgres");
    String user = pg.getOrDefault("user", System.getProperty("user.name"));
    String password = pg.getOrDefault("password", "");
    String jdbcUrl = "jdbc:postgresql://" + host + ":" + port + "/" + db;
    Properties jdbcProps = new Properties();
    jdbcProps.setProperty("user", user);
    if (!password.isEmpty()) jdbcProps.setProperty("password", password);

    String suffix = Long.toString(System.nanoTime(), 36);
    String slot = "dbz_bench_" + suffix;           // replication slot and publication
    String aggregateType = "bench_" + suffix;      // routes to topic outbox.event.<aggregatetype>
    String topic = "outbox.event." + aggregateType;
    long warmup = Math.max(1, envLong("DBZ_BENCH_WARMUP", 1000));

    try (Connection c = DriverManager.getConnection(jdbcUrl, jdbcProps);
        Statement st = c.createStatement()) {
      st.execute("CREATE SCHEMA IF NOT EXISTS " + SCHEMA);
      st.execute("DROP TABLE IF EXISTS " + TABLE);
      // Debezium's default outbox columns (docs: id uuid, aggregatetype, aggregateid, type,
      // payload); the payload is bytea like txbox.outbox.payload.
      st.execute("CREATE TABLE " + TABLE + " (id uuid PRIMARY KEY, aggregatetype varchar(255) NOT NULL,"
          + " aggregateid varchar(255) NOT NULL, type varchar(255) NOT NULL, payload bytea)");
    }

    // The producer: txbox's relay settings.
    Properties kp = new Properties();
    kp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    kp.put(ProducerConfig.ACKS_CONFIG, "all");
    kp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
    kp.put(ProducerConfig.LINGER_MS_CONFIG, "5");
    // librdkafka's (txbox's) default batch size, 1,000,000 B: the Java client's default of
    // 16 KiB caps a one-partition topic at 5 in-flight requests of ~70 messages (see README.md).
    kp.put(ProducerConfig.BATCH_SIZE_CONFIG, System.getenv().getOrDefault("DBZ_PRODUCER_BATCH_SIZE", "1000000"));
    kp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    kp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(kp);

    AtomicLong acked = new AtomicLong();
    AtomicLong batches = new AtomicLong(), batchRecords = new AtomicLong(), waitNanos = new AtomicLong();
    AtomicLong handleNanos = new AtomicLong();
    AtomicLong tEnd = new AtomicLong();
    AtomicLong firstAck = new AtomicLong();
    AtomicReference<Throwable> failure = new AtomicReference<>();
    long target = warmup + n;
    CountDownLatch warmedUp = new CountDownLatch(1);
    CountDownLatch done = new CountDownLatch(1);

    Path offsets = Files.createTempFile("dbz-bench-offsets-", ".dat");
    Properties p = new Properties();
    p.setProperty("name", "txbox-bench-" + suffix);
    p.setProperty("connector.class", "io.debezium.connector.postgresql.PostgresConnector");
    p.setProperty("offset.storage", "org.apache.kafka.connect.storage.FileOffsetBackingStore");
    p.setProperty("offset.storage.file.filename", offsets.toString());
    p.setProperty("offset.flush.interval.ms", System.getenv().getOrDefault("DBZ_OFFSET_FLUSH_MS", "1000"));
    p.setProperty("database.hostname", host);
    p.setProperty("database.port", port);
    p.setProperty("database.user", user);
    p.setProperty("database.password", password);
    p.setProperty("database.dbname", db);
    p.setProperty("topic.prefix", "txbox_bench");
    p.setProperty("plugin.name", "pgoutput");
    p.setProperty("slot.name", slot);
    p.setProperty("publication.name", slot);
    p.setProperty("publication.autocreate.mode", "filtered");
    p.setProperty("table.include.list", TABLE);
    p.setProperty("snapshot.mode", "no_data");
    p.setProperty("tombstones.on.delete", "false");
    p.setProperty("max.batch.size", System.getenv().getOrDefault("DBZ_MAX_BATCH_SIZE", "8192"));
    p.setProperty("max.queue.size", System.getenv().getOrDefault("DBZ_MAX_QUEUE_SIZE", "32768"));
    p.setProperty("poll.interval.ms", System.getenv().getOrDefault("DBZ_POLL_INTERVAL_MS", "5"));
    p.setProperty("transforms", "outbox");
    p.setProperty("transforms.outbox.type", "io.debezium.transforms.outbox.EventRouter");
    // The router's defaults: route by aggregatetype to outbox.event.<aggregatetype>, the key is
    // aggregateid, the value is payload, the event id goes in header "id".

    DebeziumEngine.ChangeConsumer<RecordChangeEvent<SourceRecord>> consumer = (records, committer) -> {
      // At-least-once: send the batch asynchronously, flush, wait for every ack, then mark the records
      // processed and the batch finished (the engine commits offsets after that).
      long h0 = System.nanoTime();
      batches.incrementAndGet();
      batchRecords.addAndGet(records.size());
      List<Future<RecordMetadata>> sends = new ArrayList<>(records.size());
      for (RecordChangeEvent<SourceRecord> ev : records) {
        SourceRecord r = ev.record();
        if (r.value() == null) { // a tombstone or a record the router dropped
          sends.add(null);
          continue;
        }
        RecordHeaders headers = new RecordHeaders();
        for (Header h : r.headers()) {
          if (h.value() != null) headers.add(h.key(), bytes(h.value()));
        }
        ProducerRecord<byte[], byte[]> pr = new ProducerRecord<>(
            r.topic(), null, r.key() == null ? null : bytes(r.key()), bytes(r.value()), headers);
        sends.add(producer.send(pr, (md, e) -> {
          if (e != null) {
            failure.compareAndSet(null, e);
            done.countDown();
            return;
          }
          long a = acked.incrementAndGet();
          if (a == warmup) warmedUp.countDown();
          if (a == warmup + 1) firstAck.set(System.nanoTime());
          if (a == target) {
            tEnd.set(System.nanoTime());
            done.countDown();
          }
        }));
      }
      long w0 = System.nanoTime();
      // The whole engine batch is handed over: send what lingers now and wait for every ack.
      producer.flush();
      for (int i = 0; i < records.size(); i++) {
        Future<RecordMetadata> f = sends.get(i);
        if (f != null) {
          try {
            f.get();
          } catch (java.util.concurrent.ExecutionException e) {
            throw new RuntimeException("Kafka send failed", e.getCause());
          }
        }
        committer.markProcessed(records.get(i));
      }
      committer.markBatchFinished();
      long h1 = System.nanoTime();
      waitNanos.addAndGet(h1 - w0);
      handleNanos.addAndGet(h1 - h0);
    };

    // Modes (see README.md): "stream" (default) inserts the rows while the connector streams and
    // times from the first commit to the N-th ack; "backlog" stops the engine after the warm-up,
    // inserts the rows, starts it again and times from the first message acked to the N-th.
    boolean backlog = "backlog".equals(System.getenv().getOrDefault("DBZ_BENCH_MODE", "stream"));
    p.setProperty("slot.drop.on.stop", backlog ? "false" : "true"); // dropped below in any case
    Runnable onFailure = () -> {
      warmedUp.countDown();
      done.countDown();
    };
    Engine engine = null;
    int exit = 0;
    try (Connection c = DriverManager.getConnection(jdbcUrl, jdbcProps)) {
      long tStart = System.nanoTime();
      engine = Engine.start(p, consumer, failure, onFailure);
      engine.awaitStreaming(c, slot, failure);
      progress("engine streaming after %.1f s (slot %s, publication filtered on %s)",
          (System.nanoTime() - tStart) / 1e9, slot, TABLE);

      c.setAutoCommit(false);
      byte[] payload = new byte[PAYLOAD_BYTES];
      Arrays.fill(payload, (byte) 'p');
      PreparedStatement ins = c.prepareStatement("INSERT INTO " + TABLE
          + " (id, aggregatetype, aggregateid, type, payload) SELECT gen_random_uuid(), ?, 'key-' || (g % "
          + KEYS + "), 'OrderPlaced', ? FROM generate_series(?::bigint, ?::bigint) g");
      ins.setString(1, aggregateType);
      ins.setBytes(2, payload);

      // Warm-up: through the whole path once (topic creation, producer id, class loading, JIT).
      long tw = System.nanoTime();
      insert(c, ins, 0, warmup);
      if (!warmedUp.await(120, TimeUnit.SECONDS)) throw new RuntimeException("warm-up not acked");
      check(failure);
      progress("warm-up: %d messages in %.2f s to topic %s", warmup, (System.nanoTime() - tw) / 1e9, topic);

      long b0 = batches.get(), r0 = batchRecords.get(), wn0 = waitNanos.get(), hn0 = handleNanos.get();
      if (backlog) {
        engine.close(); // commits its offsets; the slot stays
        engine = null;
        progress("engine stopped; inserting %d rows in transactions of %d", n, TX_ROWS);
      } else {
        progress("inserting %d rows in transactions of %d while the connector streams", n, TX_ROWS);
      }
      long t0 = 0;
      for (long i = 0; i < n; i += TX_ROWS) {
        insert(c, ins, warmup + i, Math.min(TX_ROWS, n - i));
        if (i == 0) t0 = System.nanoTime(); // the first commit has returned
        check(failure);
      }
      double insertS = (System.nanoTime() - t0) / 1e9;
      progress("inserted in %.2f s after the first commit (%.0f rows/s); %d of %d acked so far",
          insertS, n / Math.max(insertS, 1e-9), Math.max(0, acked.get() - warmup), n);
      if (backlog) {
        long ts = System.nanoTime();
        engine = Engine.start(p, consumer, failure, onFailure);
        engine.awaitStreaming(c, slot, failure);
        progress("engine streaming again after %.1f s", (System.nanoTime() - ts) / 1e9);
      }
      long timeoutS = envLong("DBZ_BENCH_TIMEOUT_S", 600);
      if (!done.await(timeoutS, TimeUnit.SECONDS)) {
        throw new RuntimeException("timed out: " + (acked.get() - warmup) + " of " + n + " acked");
      }
      check(failure);
      long nb = batches.get() - b0;
      progress("%d engine batches of %.0f records on average; in the consumer %.2f s (%.2f s waiting for acks)",
          nb, (batchRecords.get() - r0) / (double) Math.max(nb, 1), (handleNanos.get() - hn0) / 1e9,
          (waitNanos.get() - wn0) / 1e9);
      double s, rate;
      if (backlog) {
        s = (tEnd.get() - firstAck.get()) / 1e9;
        rate = (n - 1) / s;
        progress("published %d messages in %.2f s (first ack to N-th ack of the backlog): %.0f msgs/s", n, s, rate);
      } else {
        s = (tEnd.get() - t0) / 1e9;
        rate = n / s;
        progress("published %d messages in %.2f s (first commit to N-th ack): %.0f msgs/s", n, s, rate);
      }
      System.out.printf("%.0f%n", rate);
    } catch (Throwable e) {
      progress("failed: %s", e);
      exit = 1;
    } finally {
      if (engine != null) engine.close();
      producer.close();
      try (Connection c = DriverManager.getConnection(jdbcUrl, jdbcProps);
          Statement st = c.createStatement()) {
        st.execute("DROP PUBLICATION IF EXISTS " + slot);
        st.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            + " WHERE slot_name = '" + slot + "' AND NOT active");
        st.execute("DROP TABLE IF EXISTS " + TABLE);
      } catch (Exception e) {
        progress("cleanup: %s", e);
      }
      Files.deleteIfExists(offsets);
    }
    System.exit(exit);
  }

  /** One run of the embedded engine on its own thread. */
  static final class Engine {
    final DebeziumEngine<RecordChangeEvent<SourceRecord>> engine;
    final ExecutorService exec = Executors.newSingleThreadExecutor();
    final CountDownLatch taskStarted = new CountDownLatch(1);

    private Engine(Properties p, DebeziumEngine.ChangeConsumer<RecordChangeEvent<SourceRecord>> consumer,
        AtomicReference<Throwable> failure, Runnable onFailure) {
      engine = DebeziumEngine.create(ChangeEventFormat.of(Connect.class))
          .using(p)
          .using(new DebeziumEngine.ConnectorCallback() {
            @Override
            public void taskStarted() {
              taskStarted.countDown();
            }
          })
          .using((success, message, error) -> {
            if (!success) {
              failure.compareAndSet(null, error != null ? error : new RuntimeException(message));
              taskStarted.countDown();
              onFailure.run();
            }
          })
          .notifying(consumer)
          .build();
    }

    static Engine start(Properties p, DebeziumEngine.ChangeConsumer<RecordChangeEvent<SourceRecord>> consumer,
        AtomicReference<Throwable> failure, Runnable onFailure) {
      Engine e = new Engine(p, consumer, failure, onFailure);
      e.exec.execute(e.engine);
      return e;
    }

    /** Waits for the task to start and the slot to be active (the connector's walsender). */
    void awaitStreaming(Connection c, String slot, AtomicReference<Throwable> failure) throws Exception {
      if (!taskStarted.await(120, TimeUnit.SECONDS)) throw new RuntimeException("engine did not start");
      check(failure);
      try (PreparedStatement ps = c.prepareStatement(
          "SELECT active FROM pg_replication_slots WHERE slot_name = ?")) {
        ps.setString(1, slot);
        for (long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);; ) {
          try (ResultSet rs = ps.executeQuery()) {
            if (rs.next() && rs.getBoolean(1)) break;
          }
          check(failure);
          if (System.nanoTime() > deadline) throw new RuntimeException("slot " + slot + " not active");
          Thread.sleep(20);
        }
      }
      if (!c.getAutoCommit()) c.commit();
    }

    void close() throws Exception {
      engine.close();
      exec.shutdown();
      if (!exec.awaitTermination(60, TimeUnit.SECONDS)) progress("engine did not stop in 60 s");
    }
  }

  static void insert(Connection c, PreparedStatement ins, long from, long count) throws Exception {
    ins.setLong(3, from);
    ins.setLong(4, from + count - 1);
    ins.executeUpdate();
    c.commit();
  }

  static void check(AtomicReference<Throwable> failure) {
    Throwable t = failure.get();
    if (t != null) throw new RuntimeException("engine or producer failed", t);
  }

  static byte[] bytes(Object v) {
    if (v instanceof byte[] b) return b;
    if (v instanceof ByteBuffer bb) {
      ByteBuffer d = bb.duplicate();
      byte[] b = new byte[d.remaining()];
      d.get(b);
      return b;
    }
    return String.valueOf(v).getBytes(StandardCharsets.UTF_8);
  }
}

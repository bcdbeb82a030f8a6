// The writers' commit ceiling (issue 24): business transactions that write one order and
// their outbox messages, committed by N concurrent writers on durable PostgreSQL, against the
// same transactions with a plain INSERT. Shared declarations of bench/writer_bench*.cpp.
#pragma once

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "txbox/outbox.hpp"

namespace wb {

/// The bench's own schema: the orders table and the plain copies of the outbox table.
inline constexpr const char* k_schema = "writer_bench";

struct Options {
  std::string pg;       ///< conninfo of the writers (the database owner)
  std::string admin;    ///< superuser conninfo for CHECKPOINT between cells (optional)
  std::string v6;       ///< schema with every migration (no NOTIFY trigger)
  std::string v5;       ///< schema with V1..V5 only (the V2 NOTIFY trigger)
  double seconds = 5;   ///< measured time per cell, in slices
  double slice = 1;     ///< the arms of a group take turns, one slice each
  double settle = 0.2;  ///< after each switch of arm (once the last arm's tx ended), not measured
  double warmup = 0.5;  ///< each arm once per group before measuring, not measured
  int keys = 10'000;    ///< distinct message keys (customers)
  int payload = 300;    ///< payload bytes per message
  std::vector<int> writers{1, 8, 32, 64};
  std::vector<int> msgs{1, 10};
  std::vector<std::string> arms;  ///< arm names to run (empty: all)
  std::string commit;             ///< git commit, for the header
};

enum class Kind {
  orders_only,  ///< the business row alone
  plain,        ///< one multi-row VALUES insert into a copy of the outbox table
  plain_stmt,   ///< the plain copy through txbox's statement (detail::outbox_insert_sql), no lock
  plain_lock,   ///< the same with its key locks (pg_advisory_xact_lock(29816, hashtext(key)))
  cpp,          ///< txbox::Outbox::enqueue (the batch overload)
  sql,          ///< SELECT <schema>.enqueue(...), one statement calling it per message
};

struct Arm {
  std::string name{};   ///< for --arms and statement names: [a-z0-9_]
  std::string label{};  ///< the table's row label
  Kind kind = Kind::plain;
  std::string table{};   ///< quoted, schema-qualified outbox table (plain kinds)
  std::string schema{};  ///< quoted schema name (sql)
  std::shared_ptr<const txbox::Outbox> outbox{};  ///< cpp
  bool v4_ids = false;                            ///< random UUIDv4 message ids instead of UUIDv7
  bool one_key = false;  ///< every message of every writer has the same key
  bool probe = false;    ///< a serialisation probe, not one of the compared arms
};

/// The arms, in the order of the table (the baseline "plain" first).
std::vector<Arm> make_arms(const Options& o);

/// Drops and creates the bench's schema: orders and the plain copies of <v6>.outbox.
void setup_tables(pqxx::connection& db, const Options& o);

/// Empties every table a cell writes to (and restarts their identities); CHECKPOINT if admin.
void reset_tables(pqxx::connection& db, pqxx::connection* admin, const Options& o);

/// The SQL text of an arm's statement for `n` messages ("" for cpp and orders_only).
std::string arm_sql(const Arm& arm, int n);

/// One writer: its connection, prepared statements and random keys.
class Writer {
 public:
  Writer(const Options& o, const std::vector<Arm>& arms, unsigned seed);
  /// One business transaction of `arm` with `n` messages, committed.
  void run_tx(const Arm& arm, int n);
  /// The process id of this writer's PostgreSQL backend.
  [[nodiscard]] int backend_pid() const { return m_conn.backendpid(); }

 private:
  void insert_order(pqxx::work& tx, const std::string& customer);
  void insert_plain(pqxx::work& tx, const Arm& arm, const std::vector<std::string>& keys);
  void call_sql(pqxx::work& tx, const Arm& arm, const std::vector<std::string>& keys);
  void call_cpp(pqxx::work& tx, const Arm& arm, const std::vector<std::string>& keys);
  std::vector<std::string> pick_keys(const Arm& arm, int n);
  std::string message_id(bool v4);

  pqxx::connection m_conn;
  std::mt19937_64 m_rng;
  int m_keys;
  std::string m_payload;
  std::string m_headers;  // the headers JSON txbox stores (ce_*), for the plain arms
};

/// One cell (arm × messages per tx × writers): sums over its measured slices.
struct Cell {
  long commits = 0;
  double seconds = 0;
  double server = 0;  ///< CPU seconds of the writers' backends
  double client = 0;  ///< CPU seconds of the bench process (the writers' side)
  double wal = 0;     ///< WAL bytes
  std::vector<double> slice_tps{};
  long errors = 0;
  std::string first_error{};
  std::map<std::string, long> waits{};  ///< pg_stat_activity samples by state
  [[nodiscard]] double tps() const {
    return seconds > 0 ? static_cast<double>(commits) / seconds : 0;
  }
  [[nodiscard]] double per_tx(double total) const {
    return commits ? total / static_cast<double>(commits) : 0;
  }
};

class WaitSampler;

/// The writers of one group (messages per tx × writers): one thread and connection each,
/// running the current arm's transactions until switched or paused.
class Group {
 public:
  Group(const Options& o, const std::vector<Arm>& arms, int n, int writers);
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;
  /// Waits for the running transactions to end, switches to arm `a`, waits the settle time,
  /// then runs it `seconds` more; the measured window goes into `cell` when there is one.
  void run_slice(std::size_t a, double seconds, pqxx::connection& db, WaitSampler& sampler,
                 Cell* cell);
  /// Holds every writer between transactions (for TRUNCATE).
  void pause();

 private:
  struct alignas(64) Counter {
    std::atomic<long> commits{0};
  };
  void loop(std::size_t w);
  void record(Cell& cell, std::size_t a, const std::array<double, 5>& before, pqxx::connection& db);
  std::array<double, 5> snapshot(pqxx::connection& db);

  const std::vector<Arm>& m_arms;
  int m_n;
  double m_settle;
  std::vector<std::unique_ptr<Writer>> m_pool;
  std::vector<int> m_backends;
  std::vector<Counter> m_counters;
  std::vector<std::atomic<long>> m_errors;  // per arm
  std::vector<std::string> m_first_error;   // per arm, under m_mutex
  std::mutex m_mutex;
  std::atomic<int> m_current{-1};  // the arm being run; -1: paused
  std::atomic<int> m_busy{0};      // writers inside a transaction
  std::atomic<bool> m_stop{false};
  std::vector<std::thread> m_threads;
};

/// Samples pg_stat_activity of the writers (application_name writer_bench) every 20 ms while
/// recording: what each writer's backend is doing or waiting for.
class WaitSampler {
 public:
  explicit WaitSampler(const std::string& pg);
  ~WaitSampler();
  WaitSampler(const WaitSampler&) = delete;
  WaitSampler& operator=(const WaitSampler&) = delete;
  void start();                        ///< clears the counts, starts recording
  std::map<std::string, long> stop();  ///< stops recording; the counts by state

 private:
  void loop();
  pqxx::connection m_conn;
  std::atomic<bool> m_recording{false};
  std::atomic<bool> m_quit{false};
  std::mutex m_mutex;
  std::map<std::string, long> m_counts;
  std::thread m_thread;
};

/// CPU seconds (user + system) used so far by process `pid` (/proc/PID/stat; 0 if gone).
double process_cpu_seconds(int pid);

/// CPU seconds used so far by this process, every thread.
double self_cpu_seconds();

/// "Lock:object 61%, IO:WALSync 20%, CPU 9%, Lock:extend 1%": the top `n` states and their
/// shares, then every other lock wait (Lock:*, LWLock:*) of at least 1%.
std::string top_waits(const std::map<std::string, long>& counts, std::size_t n);

}  // namespace wb

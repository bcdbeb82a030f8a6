// Issue 24: an enqueuing transaction holds no lock at commit that another enqueuing
// transaction waits for. V2's NOTIFY trigger did: PreCommit_Notify (PostgreSQL's
// src/backend/commands/async.c) takes AccessExclusiveLock on object 0 of pg_database, and the
// transaction holds it across its commit record's flush until it ends, so every enqueuing
// commit waited for the previous one's flush.
//
// How: this executable's own PostgreSQL (fixture commit_lock.servers: scripts/servers.sh start
// DIR pg) gets a synchronous_standby_names that names a standby that does not exist. A commit
// with synchronous_commit = on then writes its commit record and waits for that standby (wait
// event SyncRep) for ever, still holding every lock it holds at commit. Transaction A enqueues
// and commits that way: it stays stalled inside its commit. Transaction B enqueues another key
// and commits with synchronous_commit = local, which waits for no standby. B committing is the
// pass; B seen waiting on a heavyweight lock (pg_stat_activity.wait_event_type 'Lock') fails
// the test, naming that lock, the sessions it waits for and every lock A holds. The negative
// control applies V1..V5 only (V2's trigger still there) and asserts that B is seen waiting for
// A: the detector works. pg_cancel_backend ends A's wait (PostgreSQL warns that the transaction
// committed locally). The tests run one at a time (RESOURCE_LOCK); each one resets
// synchronous_standby_names when it ends, and first releases what a killed run may have left.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <iostream>
#include <memory>
#include <pqxx/pqxx>
#include <stdexcept>
#include <string>

#include "commit_lock_support.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/outbox.hpp"

namespace pq = txbox::pq;

namespace {

using txbox::test::commit_lock::apply_migrations;
using txbox::test::commit_lock::servers;
using txbox::test::commit_lock::unique_name;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

/// Every wait of a test: for A to stall, for B to commit or wait, for a released commit to end.
constexpr auto k_bound = 30s;
/// The last migration before V6, which dropped the NOTIFY trigger.
constexpr int k_v5 = 5;
constexpr int k_every_migration = 1'000'000;

// ---- what the monitor sees -----------------------------------------------------------------

struct Activity {
  std::string type, event, state;
};

/// pg_stat_activity of backend `pid` (each call its own snapshot: autocommit).
Activity activity(pqxx::connection& monitor, int pid) {
  pqxx::nontransaction n(monitor);
  const auto r = pq::exec(
      n,
      "SELECT coalesce(wait_event_type, ''), coalesce(wait_event, ''), coalesce(state, '') "
      "FROM pg_stat_activity WHERE pid = $1",
      pid);
  if (r.empty()) return {"", "", "gone"};
  return {r[0][0].as<std::string>(), r[0][1].as<std::string>(), r[0][2].as<std::string>()};
}

/// Backend `pid`'s locks from pg_locks, granted or awaited, one per line, for messages.
std::string locks_of(pqxx::connection& monitor, int pid, bool granted) {
  pqxx::nontransaction n(monitor);
  return pq::exec1(
             n,
             "SELECT coalesce(string_agg(format('  %s %s%s%s%s', mode, locktype, "
             "  CASE WHEN relation IS NOT NULL THEN ' on ' || relation::regclass::text END, "
             "  CASE WHEN classid IS NOT NULL THEN format(' classid %s (%s) objid %s objsubid %s', "
             "    classid, classid::regclass, objid, objsubid) END, "
             "  CASE WHEN transactionid IS NOT NULL THEN ' ' || transactionid::text "
             "       WHEN locktype = 'virtualxid' THEN ' ' || virtualxid END), "
             "  E'\\n' ORDER BY locktype, mode, classid, objid), '  (none)') "
             "FROM pg_locks WHERE pid = $1 AND granted = $2",
             pid, granted)[0]
      .as<std::string>();
}

/// The backends that `pid` waits for (pg_blocking_pids), e.g. "{4711}".
std::string blockers_of(pqxx::connection& monitor, int pid) {
  pqxx::nontransaction n(monitor);
  return pq::exec1(n, "SELECT pg_blocking_pids($1)::text", pid)[0].as<std::string>();
}

void cancel_backend(const std::string& conninfo, int pid) {
  pqxx::connection c(conninfo);
  pqxx::nontransaction n(c);
  pq::exec(n, "SELECT pg_cancel_backend($1)", pid);
}

// ---- A and B -------------------------------------------------------------------------------

/// One transaction on a connection of its own, its statements and its COMMIT run in a thread
/// of its own, which the test watches from another session. Destroyed while it still runs, it
/// cancels its statement and waits for the thread.
class Transaction {
 public:
  using Body = std::function<void(pqxx::transaction_base&)>;

  /// `synchronous_commit`: "on" stalls in SyncRep while the standby is missing, "local" not.
  explicit Transaction(const std::string& synchronous_commit) : m_conn(servers().owner) {
    pqxx::nontransaction n(m_conn);
    pq::exec(n, "SELECT set_config('synchronous_commit', $1, false)", synchronous_commit);
  }
  ~Transaction() {
    try {
      release();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "could not end the transaction of backend " << m_pid << ": " << e.what();
    }
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  [[nodiscard]] int pid() const { return m_pid; }
  /// BEGIN, `body`, COMMIT, in the thread.
  void start(Body body) {
    m_run = std::async(std::launch::async, [this, body = std::move(body)] {
      pqxx::work tx(m_conn);
      body(tx);
      tx.commit();
    });
  }
  /// Whether it has ended (committed or failed), waiting up to `wait` for it.
  bool ended(std::chrono::milliseconds wait) {
    return m_run.valid() && m_run.wait_for(wait) == std::future_status::ready;
  }
  /// Once ended: "" if it committed, else the error.
  std::string error() {
    try {
      m_run.get();
      return "";
    } catch (const std::exception& e) {
      return e.what();
    }
  }
  /// Cancels the statement that still runs (a commit stalled in SyncRep then commits
  /// locally) and waits for the thread.
  void release() {
    if (!m_run.valid() || ended(0ms)) return;
    cancel_backend(servers().owner, m_pid);
    if (!ended(k_bound)) {
      throw std::runtime_error("still running " + std::to_string(k_bound.count()) +
                               " s after pg_cancel_backend");
    }
  }

 private:
  pqxx::connection m_conn;
  int m_pid = m_conn.backendpid();
  std::future<void> m_run;
};

/// While alive, synchronous_standby_names names a standby that does not exist: a commit with
/// synchronous_commit = on waits in SyncRep until cancelled.
class MissingStandby {
 public:
  MissingStandby() {
    // ALTER SYSTEM takes no parameters: the value is this constant.
    exec("ALTER SYSTEM SET synchronous_standby_names = 'txbox_no_such_standby'");
    exec("SELECT pg_reload_conf()");
  }
  ~MissingStandby() {
    try {
      restore();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "could not reset synchronous_standby_names: " << e.what();
    }
  }
  MissingStandby(const MissingStandby&) = delete;
  MissingStandby& operator=(const MissingStandby&) = delete;

  /// Resets synchronous_standby_names and releases every backend waiting in SyncRep. A test
  /// killed while A was stalled leaves both: A's backend waits for ever (neither
  /// statement_timeout nor the client's going away ends a commit's wait), holding its locks,
  /// and every commit with synchronous_commit = on (psql's migrations) stalls too. Once no
  /// standby is named, the checkpointer releases the waiters when it reloads; the cancel does
  /// at once.
  static void restore() {
    exec("ALTER SYSTEM RESET synchronous_standby_names");
    exec("SELECT pg_reload_conf()");
    exec(
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
        "WHERE wait_event = 'SyncRep' AND pid <> pg_backend_pid()");
  }

 private:
  static void exec(const std::string& sql) {
    pqxx::connection c(servers().admin);
    pqxx::nontransaction n(c);
    n.exec(sql);
  }
};

enum class Writer { cxx, sql };

/// What the test saw of B (its enqueue and its commit) while A was stalled in its commit.
struct Observation {
  enum class Outcome { ended, waited_on_lock, neither } outcome = Outcome::neither;
  int a_pid = 0, b_pid = 0;
  std::string a_holds;                 ///< A's granted locks while it was stalled
  std::string b_awaits;                ///< B's awaited locks when it was seen waiting
  std::string b_blockers;              ///< pg_blocking_pids(B) then
  Activity b_activity;                 ///< B's last pg_stat_activity
  std::string b_error;                 ///< B's error, if it ended failing
  std::string b_after_a;               ///< B once A was released: "" committed, else the error
  std::chrono::milliseconds b_time{};  ///< from B's start to what was seen (information only)

  [[nodiscard]] std::string outcome_name() const {
    switch (outcome) {
      case Outcome::ended:
        return b_error.empty() ? "committed" : "failed";
      case Outcome::waited_on_lock:
        return "waited on a lock";
      case Outcome::neither:
        break;
    }
    return "neither ended nor waited on a lock";
  }

  [[nodiscard]] std::string report() const {
    std::string out = "A (backend " + std::to_string(a_pid) + ", stalled in its commit) holds:\n" +
                      a_holds + "\nB (backend " + std::to_string(b_pid) + ", enqueue and commit) " +
                      outcome_name() + " after " + std::to_string(b_time.count()) + " ms";
    if (outcome == Outcome::waited_on_lock) {
      out += " (wait event " + b_activity.type + "/" + b_activity.event + ", blocked by backends " +
             b_blockers + ") for:\n" + b_awaits;
    } else if (outcome == Outcome::neither) {
      out += " (last seen: " + b_activity.type + "/" + b_activity.event + ", " + b_activity.state +
             ")";
    }
    if (!b_error.empty()) out += ": " + b_error;
    return out;
  }
};

// ---- the test ------------------------------------------------------------------------------

class CommitLockTest : public ::testing::Test {
 protected:
  void SetUp() override { MissingStandby::restore(); }

  /// A schema of this test's own with migrations V1..V`max_version`, and a business table.
  void use_schema(int max_version) {
    schema_ = unique_name("commit_lock");
    apply_migrations(schema_, max_version);
    pqxx::connection c(servers().owner);
    pqxx::work tx(c);
    tx.exec("CREATE TABLE " + tx.quote_name(schema_) +
            ".orders (id bigint PRIMARY KEY, note text)");
    tx.commit();
  }

  bool has_notify_trigger() {
    pqxx::connection c(servers().owner);
    pqxx::nontransaction n(c);
    return pq::exec1(n,
                     "SELECT count(*) > 0 FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid "
                     "JOIN pg_namespace s ON s.oid = r.relnamespace "
                     "WHERE s.nspname = $1 AND r.relname = 'outbox' AND t.tgname = 'outbox_notify'",
                     schema_)[0]
        .as<bool>();
  }

  /// A transaction's body: a business row, and a message with `key` through `writer`.
  Transaction::Body write(Writer writer, const std::string& key) {
    return [schema_name = schema_, id = ++order_id_, writer, key](pqxx::transaction_base& tx) {
      const std::string schema = tx.quote_name(schema_name);
      pq::exec(tx, "INSERT INTO " + schema + ".orders (id, note) VALUES ($1, $2)", id,
               "order of key " + key);
      const std::string payload = "payload of " + key;
      if (writer == Writer::cxx) {
        txbox::Outbox({.schema = schema_name})
            .enqueue(tx, {.topic = "orders", .key = key, .payload = payload});
      } else {
        pq::exec(tx, "SELECT " + schema + ".enqueue($1, $2, $3::bytea)", "orders", key, payload);
      }
    };
  }

  /// Transaction A, enqueued and stalled in its commit (SyncRep). Until the checkpointer has
  /// read the new synchronous_standby_names a commit does not stall: then A commits and
  /// another A is tried.
  std::unique_ptr<Transaction> stalled_a(Writer writer, pqxx::connection& monitor) {
    const auto deadline = Clock::now() + k_bound;
    while (Clock::now() < deadline) {
      auto a = std::make_unique<Transaction>("on");
      a->start(write(writer, "a"));
      while (!a->ended(5ms) && Clock::now() < deadline) {
        if (activity(monitor, a->pid()).event == "SyncRep") return a;
      }
      if (a->ended(0ms)) {
        if (const auto error = a->error(); !error.empty()) {
          throw std::runtime_error("A failed: " + error);
        }
      }
    }
    throw std::runtime_error(
        "no commit stalled in SyncRep within the bound: was "
        "synchronous_standby_names applied?");
  }

  /// Watches B (enqueue and commit) until it ends or waits on a heavyweight lock, or the bound.
  static void watch(Transaction& b, pqxx::connection& monitor, Observation& o) {
    const auto start = Clock::now();
    const auto deadline = start + k_bound;
    while (Clock::now() < deadline) {
      if (b.ended(5ms)) {
        o.outcome = Observation::Outcome::ended;
        o.b_error = b.error();
        break;
      }
      o.b_activity = activity(monitor, b.pid());
      if (o.b_activity.type == "Lock") {
        o.outcome = Observation::Outcome::waited_on_lock;
        o.b_awaits = locks_of(monitor, b.pid(), false);
        o.b_blockers = blockers_of(monitor, b.pid());
        break;
      }
    }
    o.b_time = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  }

  /// A stalls in its commit; B, another key of the same outbox, enqueues and commits meanwhile.
  /// Then A is released, and B, if it waited, gets the time to end.
  Observation commit_b_past_stalled_a(Writer writer) {
    const MissingStandby missing_standby;
    pqxx::connection monitor(servers().owner);
    auto a = stalled_a(writer, monitor);
    Observation o;
    o.a_pid = a->pid();
    o.a_holds = locks_of(monitor, a->pid(), true);
    Transaction b("local");
    o.b_pid = b.pid();
    b.start(write(writer, "b"));
    watch(b, monitor, o);
    a->release();
    if (o.outcome == Observation::Outcome::waited_on_lock) {
      o.b_after_a = b.ended(k_bound) ? b.error() : "still running after A ended";
    }
    std::cout << "[commit_lock] " << o.report() << std::endl;
    return o;
  }

  void expect_no_shared_commit_lock(Writer writer) {
    use_schema(k_every_migration);
    const auto o = commit_b_past_stalled_a(writer);
    EXPECT_EQ(o.outcome_name(), "committed")
        << "an enqueuing transaction waited for another one stalled in its commit: a lock "
           "that every enqueuing transaction holds at commit is back (issue 24).\n"
        << o.report();
  }

  void expect_detector_sees_the_notify_lock(Writer writer) {
    use_schema(k_v5);
    ASSERT_TRUE(has_notify_trigger()) << "V1..V5 should leave V2's outbox_notify trigger";
    const auto o = commit_b_past_stalled_a(writer);
    ASSERT_EQ(o.outcome_name(), "waited on a lock")
        << "the detector did not see B wait for the NOTIFY commit lock of V2's trigger.\n"
        << o.report();
    EXPECT_EQ(o.b_blockers, "{" + std::to_string(o.a_pid) + "}") << o.report();
    EXPECT_NE(o.b_awaits.find("AccessExclusiveLock object classid 1262 (pg_database) objid 0"),
              std::string::npos)
        << o.report();
    EXPECT_EQ(o.b_after_a, "") << "B did not commit once A was released";
  }

  std::string schema_;
  long order_id_ = 0;
};

TEST_F(CommitLockTest, CxxEnqueueCommitsPastAStalledEnqueueCommit) {
  expect_no_shared_commit_lock(Writer::cxx);
}

TEST_F(CommitLockTest, SqlEnqueueCommitsPastAStalledEnqueueCommit) {
  expect_no_shared_commit_lock(Writer::sql);
}

// Negative controls: V2's trigger (schema at V5) makes B wait for A, and the detector says so.
TEST_F(CommitLockTest, DetectorSeesTheV5NotifyLockWithCxxEnqueue) {
  expect_detector_sees_the_notify_lock(Writer::cxx);
}

TEST_F(CommitLockTest, DetectorSeesTheV5NotifyLockWithSqlEnqueue) {
  expect_detector_sees_the_notify_lock(Writer::sql);
}

}  // namespace

// The relay's readiness (relay/src/readiness) and the problem throttle behind its log lines:
// ready only while every condition holds, why not, and one line per state change.
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <vector>

#include "problem_throttle.hpp"
#include "readiness.hpp"

namespace txbox::relay {
namespace {

using namespace std::chrono_literals;
using tp = ProblemThrottle::clock::time_point;

const tp k_t0 = tp{} + 1000s;

// The lines logged while it lives, "level: text".
class LogCapture {
 public:
  LogCapture()
      : m_sink(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(100)),
        m_previous(spdlog::default_logger()) {
    m_sink->set_pattern("%l: %v");
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", m_sink));
  }
  ~LogCapture() { spdlog::set_default_logger(m_previous); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  // The lines logged since the last call.
  std::vector<std::string> take() {
    std::vector<std::string> all = m_sink->last_formatted();
    std::vector<std::string> out(all.begin() + static_cast<std::ptrdiff_t>(m_seen), all.end());
    m_seen = all.size();
    for (auto& line : out) {
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    }
    return out;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> m_sink;
  std::shared_ptr<spdlog::logger> m_previous;
  std::size_t m_seen = 0;
};

detail::failure failure_of(detail::failure_kind kind, std::string message, bool reconnect = false,
                           std::string sqlstate = {}) {
  detail::failure f;
  f.kind = kind;
  f.reconnect = reconnect;
  f.sqlstate = std::move(sqlstate);
  f.message = std::move(message);
  return f;
}

Readiness ready_readiness() {
  Readiness r("host=db.example user=relay");
  r.db_connected();
  r.on_kafka({.reachable = true, .give_back = false, .why = {}});
  return r;
}

TEST(RelayProblemThrottle, LogsEachDistinctProblemOnce) {
  ProblemThrottle t;
  EXPECT_FALSE(t.active());
  EXPECT_TRUE(t.admit("lock timeout", k_t0));
  EXPECT_FALSE(t.admit("lock timeout", k_t0 + 1h)) << "no repeat interval: never again";
  EXPECT_EQ(t.current(), "lock timeout");
  EXPECT_TRUE(t.admit("deadlock", k_t0 + 1h));
  EXPECT_TRUE(t.admit("lock timeout", k_t0 + 1h)) << "a different problem than the last";
  t.clear();
  EXPECT_FALSE(t.active());
  EXPECT_TRUE(t.admit("lock timeout", k_t0 + 1h)) << "over, then back: a line again";
}

TEST(RelayProblemThrottle, RepeatsAProblemOncePerInterval) {
  ProblemThrottle t(1min);
  EXPECT_TRUE(t.admit("permission denied", k_t0));
  EXPECT_FALSE(t.admit("permission denied", k_t0 + 59s));
  EXPECT_TRUE(t.admit("permission denied", k_t0 + 60s));
  EXPECT_FALSE(t.admit("permission denied", k_t0 + 61s));
  EXPECT_TRUE(t.admit("bug", k_t0 + 62s));
}

TEST(RelayReadiness, ReadyOnlyOnceTheDatabaseIsConnectedAndTheBrokersAnswered) {
  Readiness r("host=db.example");
  EXPECT_FALSE(r.ready());
  EXPECT_EQ(r.why_not(), "the database is not connected");
  r.db_connected();
  EXPECT_EQ(r.why_not(), "the brokers have not answered a probe yet");
  r.on_kafka({.reachable = false, .give_back = false, .why = {}});  // no probe ended yet
  EXPECT_FALSE(r.ready());
  r.on_kafka({.reachable = true, .give_back = false, .why = {}});
  EXPECT_TRUE(r.ready());
  EXPECT_EQ(r.why_not(), "");
  const ReadinessState s = r.state();
  EXPECT_TRUE(s.ready);
  EXPECT_TRUE(s.kafka_reachable);
  EXPECT_FALSE(s.database_misconfigured);
}

TEST(RelayReadiness, LogsTheBrokersGoingAwayAndComingBackOnce) {
  LogCapture log;
  Readiness r = ready_readiness();
  log.take();
  const ReachVerdict down{.reachable = false, .give_back = false, .why = "no answer in 2000 ms"};
  r.on_kafka(down);
  r.on_kafka(down);
  EXPECT_FALSE(r.ready());
  EXPECT_EQ(r.why_not(), "the brokers do not answer: no answer in 2000 ms");
  const auto lines = log.take();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].rfind("warning: kafka: cannot reach the brokers: no answer in 2000 ms;", 0),
            0u)
      << lines[0];
  r.on_kafka({.reachable = true, .give_back = false, .why = {}});
  r.on_kafka({.reachable = true, .give_back = false, .why = {}});
  EXPECT_TRUE(r.ready());
  EXPECT_EQ(log.take(), std::vector<std::string>{"info: kafka: the brokers answer again"});
}

TEST(RelayReadiness, DeliveriesFailingAndTheirShortfallsUntilTheySucceed) {
  LogCapture log;
  Readiness r = ready_readiness();
  log.take();
  r.broker(false, "no acknowledgement");
  r.broker(false, "no acknowledgement");
  EXPECT_FALSE(r.ready());
  EXPECT_EQ(r.why_not(), "deliveries to Kafka fail: no acknowledgement");
  const IsrShortfall s{
      .topic = "orders", .partition = 0, .leader = 1, .isr = {1}, .min_insync = 2, .replicas = 3};
  r.on_isr_shortfalls({s});
  r.on_isr_shortfalls({s});
  EXPECT_EQ(r.state().partitions_below_min_isr, 1u);
  auto lines = log.take();
  ASSERT_EQ(lines.size(), 2u) << "one line each, however often reported";
  EXPECT_EQ(lines[0],
            "warning: kafka: deliveries failing, retrying with backoff: no acknowledgement");
  EXPECT_NE(lines[1].find("NOT_ENOUGH_REPLICAS"), std::string::npos) << lines[1];
  r.broker(true, {});
  EXPECT_TRUE(r.ready());
  EXPECT_EQ(r.state().partitions_below_min_isr, 0u);
  EXPECT_EQ(log.take(), std::vector<std::string>{"info: kafka: deliveries succeed again"});
}

TEST(RelayReadiness, ATransientDatabaseFailureIsLoggedOnceAndKeepsItReady) {
  LogCapture log;
  Readiness r = ready_readiness();
  log.take();
  const auto f = failure_of(detail::failure_kind::db_transient, "lock timeout", false, "55P03");
  r.failed(f, "lock timeout", 100ms, k_t0);
  r.failed(f, "lock timeout", 100ms, k_t0 + 1h);
  EXPECT_TRUE(r.ready()) << "a lock timeout is no readiness problem";
  EXPECT_EQ(log.take(), std::vector<std::string>{
                            "warning: database: lock timeout (SQLSTATE 55P03); retrying the "
                            "round in 100 ms"});
  r.db_ok();
  r.failed(f, "lock timeout", 100ms, k_t0 + 2h);
  EXPECT_EQ(log.take().size(), 1u) << "after a good round the same failure is news again";
}

TEST(RelayReadiness, ALostConnectionIsNotReadyUntilConnectedAgain) {
  LogCapture log;
  Readiness r = ready_readiness();
  log.take();
  const auto f = failure_of(detail::failure_kind::db_transient, "server closed", true);
  r.failed(f, "server closed", 1s, k_t0);
  r.failed(f, "server closed", 1s, k_t0 + 1s);
  EXPECT_FALSE(r.ready());
  EXPECT_EQ(r.why_not(), "the database is not connected");
  EXPECT_EQ(log.take(),
            std::vector<std::string>{
                "warning: database: unreachable, retrying with backoff: server closed"});
  r.db_connected();
  EXPECT_TRUE(r.ready());
  EXPECT_EQ(log.take(),
            std::vector<std::string>{"info: database: connected (host=db.example user=relay)"});
}

TEST(RelayReadiness, APermanentProblemIsRepeatedEveryMinuteUntilAPassSucceeds) {
  LogCapture log;
  Readiness r = ready_readiness();
  log.take();
  auto f = failure_of(detail::failure_kind::db_permanent, "permission denied for table outbox",
                      false, "42501");
  f.hint = "GRANT the relay's role its privileges";
  r.failed(f, f.message, 30s, k_t0);
  r.failed(f, f.message, 30s, k_t0 + 30s);
  EXPECT_FALSE(r.ready());
  EXPECT_TRUE(r.state().database_misconfigured);
  EXPECT_EQ(r.why_not(), "a database problem is being retried");
  r.failed(f, f.message, 30s, k_t0 + 60s);
  const auto lines = log.take();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0],
            "error: database: permission denied for table outbox (SQLSTATE 42501). Hint: GRANT "
            "the relay's role its privileges; retrying every 30.0 s");
  EXPECT_EQ(lines[1].rfind("error: database: still failing: permission denied", 0), 0u) << lines[1];
  r.db_ok();
  EXPECT_TRUE(r.ready());
  EXPECT_FALSE(r.state().database_misconfigured);
  EXPECT_EQ(log.take(), std::vector<std::string>{"info: database: statements succeed again"});
}

TEST(RelayReadiness, AKafkaFailureOfTheLoopIsNotReadyUntilDeliveriesSucceed) {
  LogCapture log;
  Readiness r = ready_readiness();
  log.take();
  const auto f = failure_of(detail::failure_kind::kafka_transient, "fencing lane 2 timed out");
  r.failed(f, f.message, 500ms, k_t0);
  r.failed(f, f.message, 500ms, k_t0 + 1s);
  EXPECT_FALSE(r.ready());
  EXPECT_EQ(log.take(),
            std::vector<std::string>{"warning: fencing lane 2 timed out; retrying in 500 ms"});
  r.broker(true, {});
  EXPECT_TRUE(r.ready());
}

TEST(RelayReadiness, AHeldStandbyRoundIsNotReadyUntilTheGatePasses) {
  Readiness r = ready_readiness();
  r.on_standbys(false);
  EXPECT_FALSE(r.ready());
  EXPECT_EQ(r.why_not(), "the standbys have not flushed the last round's WAL");
  r.on_standbys(true);
  EXPECT_TRUE(r.ready());
}

}  // namespace
}  // namespace txbox::relay

// The durability gate (see durability_gate.hpp).
#include "durability_gate.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "kafka_client.hpp"
#include "txbox/relay.hpp"

namespace txbox::relay {
namespace {

using namespace std::chrono_literals;

// Under strict durability a weak topic is looked at again after this (an operator may have
// fixed it); a topic whose check failed (broker unreachable), sooner.
constexpr auto k_recheck_weak = 30s;
constexpr auto k_recheck_unknown = 5s;
// Without strict durability a failed check only delays a warning: the publish loop, which
// waits for each check, asks again rarely.
constexpr auto k_recheck_relaxed = 5min;
// The admin requests at start: nothing waits on them yet.
constexpr auto k_start_admin_timeout = 10s;

}  // namespace

// A second client, for the durability checks only: its metadata requests must not make the
// broker auto-create a missing topic (with the broker's possibly weak defaults).
DurabilityGate::DurabilityGate(const std::map<std::string, std::string>& kafka, bool strict,
                               std::chrono::milliseconds admin_timeout)
    : m_strict(strict), m_admin_timeout(admin_timeout) {
  detail::conf_ptr conf(rd_kafka_conf_new());
  for (const auto& [k, v] : kafka) set_conf(conf.get(), k, v);
  set_conf(conf.get(), "allow.auto.create.topics", "false");
  m_admin = make_client(std::move(conf), "admin client");
}

std::vector<detail::TopicDurability> DurabilityGate::check(const std::vector<std::string>& names,
                                                           std::chrono::milliseconds timeout,
                                                           bool quiet_weak) {
  auto results = detail::describe_durability(m_admin.get(), names, timeout);
  const auto now = clock::now();
  for (const auto& d : results) record(d, quiet_weak, now);
  return results;
}

// Records one outcome; one log line per topic whose state changed (weak topics are not
// logged when `quiet_weak`: the caller reports them).
void DurabilityGate::record(const detail::TopicDurability& d, bool quiet_weak,
                            clock::time_point now) {
  auto [it, fresh] = m_checks.try_emplace(d.topic);
  TopicCheck& c = it->second;
  // An int, not std::optional<state>: g++ 12 -O2 warns (falsely) that the optional may be
  // used uninitialised.
  const int before = fresh ? -1 : static_cast<int>(c.st);
  const auto changed = [&] { return before != static_cast<int>(c.st); };
  if (d.checked) c.min_insync = d.min_insync_replicas;
  if (!d.checked) {
    c.st = TopicCheck::state::unknown;
    c.recheck_at = now + (m_strict ? k_recheck_unknown : k_recheck_relaxed);
    c.why = fmt::format("the durability of topic '{}' could not be checked: {}", d.topic, d.error);
    if (changed()) {
      spdlog::warn("durability: could not check topic '{}' ({}); {}", d.topic, d.error,
                   m_strict ? "its messages wait in the outbox until a check succeeds"
                            : "publishing it anyway, checked again later");
    }
  } else if (d.problems().empty()) {
    c.st = TopicCheck::state::durable;
    if (changed()) {
      spdlog::info(
          "durability: topic '{}' ok (replication.factor={}, min.insync.replicas={}, "
          "unclean.leader.election.enable={})",
          d.topic, d.replication_factor, d.min_insync_replicas, d.unclean_leader_election);
    }
  } else {
    c.st = TopicCheck::state::weak;
    // Under strict durability an operator may fix the topic: look again now and then.
    c.recheck_at = m_strict ? now + k_recheck_weak : clock::time_point::max();
    c.why = "held by strict durability: " + d.summary();
    if (changed() && !quiet_weak) {
      if (m_strict) {
        spdlog::error(
            "durability: {}; its messages stay in the outbox (strict durability) and are "
            "retried with backoff. Hint: {}",
            d.summary(), d.hint());
      } else {
        spdlog::warn(
            "durability: {}; a broker failure can lose messages Kafka acknowledged. "
            "Hint: {}, or set relay.strict_durability to refuse such topics",
            d.summary(), d.hint());
      }
    }
  }
}

void DurabilityGate::check_at_start(const std::set<std::string>& topics) {
  if (topics.empty()) return;
  const auto results =
      check({topics.begin(), topics.end()}, k_start_admin_timeout, /*quiet_weak=*/m_strict);
  std::vector<std::string> weak, hints;
  for (const auto& d : results) {
    if (d.problems().empty()) continue;
    weak.push_back(d.summary());
    hints.push_back(d.hint());
  }
  if (m_strict && !weak.empty()) {
    throw durability_error(fmt::format(
        "refusing to start (strict durability): {}. A broker failure could lose messages "
        "Kafka acknowledged. Hint: {}; or turn off --strict-durability "
        "(relay.strict_durability)",
        fmt::join(weak, "; "), fmt::join(hints, "; ")));
  }
}

void DurabilityGate::check_due(const std::vector<Row>& rows) {
  const auto now = clock::now();
  std::set<std::string> due;
  for (const auto& row : rows) {
    const auto it = m_checks.find(row.topic);
    if (it == m_checks.end() ||
        (it->second.st != TopicCheck::state::durable && now >= it->second.recheck_at)) {
      due.insert(row.topic);
    }
  }
  if (!due.empty()) check({due.begin(), due.end()}, m_admin_timeout, false);
}

std::optional<std::string> DurabilityGate::hold_reason(const std::string& topic) const {
  if (!m_strict) return std::nullopt;
  const auto it = m_checks.find(topic);
  if (it == m_checks.end()) {
    return fmt::format("held by strict durability: topic '{}' not checked yet", topic);
  }
  if (it->second.st == TopicCheck::state::durable) return std::nullopt;
  return it->second.why;
}

std::set<std::string> DurabilityGate::weak_topics() const {
  std::set<std::string> weak;
  for (const auto& [t, c] : m_checks) {
    if (c.st == TopicCheck::state::weak) weak.insert(t);
  }
  return weak;
}

std::vector<IsrShortfall> DurabilityGate::isr_shortfalls(
    const std::set<std::string>& topics) const {
  // A waiting round is diagnosed every lease TTL; a few topics say enough, and each may cost
  // a metadata timeout when brokers hang.
  constexpr std::size_t k_max_topics = 8;
  std::map<std::string, int> min_insync;
  for (const auto& t : topics) {
    const auto it = m_checks.find(t);
    if (it != m_checks.end() && it->second.min_insync > 0) min_insync[t] = it->second.min_insync;
    if (min_insync.size() == k_max_topics) break;
  }
  return relay::isr_shortfalls(m_admin.get(), min_insync, m_admin_timeout);
}

}  // namespace txbox::relay

// Whether this relay can reach Kafka (see kafka_reach.hpp).
#include "kafka_reach.hpp"

#include <algorithm>

namespace txbox::relay {

using namespace std::chrono_literals;

ReachOptions reach_options(std::chrono::milliseconds lease_ttl) {
  ReachOptions o;
  o.probe_timeout = std::clamp<std::chrono::milliseconds>(lease_ttl / 4, 500ms, 2s);
  o.probe_interval = std::clamp<std::chrono::milliseconds>(lease_ttl / 4, 500ms, 2s);
  // A loss is noticed within probe_interval + probe_timeout of it.
  o.give_back_after = lease_ttl + o.probe_interval + o.probe_timeout;
  return o;
}

void KafkaReach::probed(clock::time_point now, const std::string& error) {
  m_answered = error.empty();
  if (m_answered) {
    m_lost.reset();
    m_next = now + m_opt.probe_interval;
    return;
  }
  if (!m_lost) m_lost = now;
  m_why = error;
  m_next = now + m_opt.retry_interval;
}

ReachVerdict KafkaReach::verdict(clock::time_point now) const {
  if (m_answered) return {.reachable = true, .give_back = false, .why = {}};
  return {.reachable = false,
          .give_back = m_lost && now - *m_lost >= m_opt.give_back_after,
          .why = m_why};
}

LeaseIntent lease_intent(const ReachVerdict& v, std::set<int> busy) {
  if (v.reachable) return {.busy = std::move(busy)};  // kept until settled (surplus)
  return {.publish = false, .give_back = v.give_back, .busy = std::move(busy)};
}

}  // namespace txbox::relay

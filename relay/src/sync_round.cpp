// A synchronous round (see sync_round.hpp).
#include "sync_round.hpp"

#include <spdlog/spdlog.h>

#include <optional>

namespace txbox::relay {

HandOver SyncRound::send(std::vector<Row> rows, const RoundGates& gates) {
  auto out = m_producer.hand_over(std::move(rows), gates);
  m_round = out.round;
  m_outcomes = out.outcomes;
  m_outstanding = out.handed;
  book(m_producer.take_reports());  // served during the hand-over (waiting for queue room)
  return out;
}

void SyncRound::book(std::vector<Report> reports) {
  for (auto& r : reports) {
    if (r.round != m_round || r.index >= m_outcomes.size() || m_outcomes[r.index].final()) {
      ++m_late;
      continue;
    }
    m_outcomes[r.index] = std::move(r.outcome);
    --m_outstanding;
  }
}

bool SyncRound::poll(std::chrono::milliseconds wait) {
  // flush, not poll: the round is handed over whole, so linger.ms would only delay it
  // (librdkafka ignores linger.ms during a flush and sends what is queued at once).
  if (m_outstanding > 0) m_producer.flush(wait);
  book(m_producer.take_reports());
  return m_outstanding == 0;
}

std::vector<Outcome> SyncRound::await(const Waiting& waiting) {
  using namespace std::chrono_literals;
  std::optional<clock::time_point> stop_seen, purged_at;
  auto slow_at = clock::now() + waiting.slow_after;
  const auto grace = m_producer.options().stop_grace;
  // librdkafka retries until Kafka acknowledges or refuses a message for good. Only a stop
  // gives up, after the grace: what is purged then may still have reached Kafka (re-sent by
  // the next owner) but nothing of this relay follows it.
  while (!poll(50ms)) {
    const auto now = clock::now();
    if (now >= slow_at) {
      waiting.on_slow();
      slow_at = clock::now() + waiting.slow_after;
    }
    // After a fatal error librdkafka delivers nothing more: fail what is left at once (it is
    // retried by a new producer).
    if (!purged_at && m_producer.fatal_error()) {
      m_producer.purge();
      purged_at = now;
    }
    if (waiting.stop.stop_requested() && !purged_at) {
      if (!stop_seen) stop_seen = now;
      if (now - *stop_seen >= grace) {
        spdlog::warn("stopping: giving up on {} unacknowledged message(s) after {} ms",
                     m_outstanding, grace.count());
        m_producer.purge();
        purged_at = now;
      }
    }
    if (purged_at && now - *purged_at > 10s) {
      break;  // a purged message whose report never comes is left pending (retried later)
    }
  }
  std::vector<Outcome> out;
  out.swap(m_outcomes);
  m_outstanding = 0;
  m_round = 0;  // what is still outstanding is late from now on
  return out;
}

}  // namespace txbox::relay

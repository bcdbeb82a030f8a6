// The streamed rounds of at_least_once (see streamed_rounds.hpp).
#include "streamed_rounds.hpp"

namespace txbox::relay {

HandOver StreamedRounds::stream(std::vector<Row> rows, const RoundGates& gates) {
  auto out = m_producer.hand_over(std::move(rows), gates);
  // Reports served during the hand-over wait in the producer: booked by reports().
  if (out.handed > 0) m_waiting[out.round] = out.handed;
  m_streaming += out.handed;
  return out;
}

std::vector<Report> StreamedRounds::reports(std::chrono::milliseconds wait) {
  // flush, not poll: a waiting relay has nothing more to add, so linger.ms would only delay
  // what is queued (librdkafka ignores linger.ms during a flush).
  if (m_streaming > 0) {
    if (wait.count() > 0) {
      m_producer.flush(wait);
    } else {
      m_producer.poll(wait);
    }
  }
  auto out = m_producer.take_reports();
  std::erase_if(out, [this](const Report& r) {
    const auto it = m_waiting.find(r.round);
    if (it == m_waiting.end()) {
      ++m_late;
      return true;
    }
    --m_streaming;
    if (--it->second == 0) m_waiting.erase(it);
    return false;
  });
  return out;
}

std::optional<std::string> StreamedRounds::replace_if_fatal() {
  auto reason = m_producer.replace_if_fatal();
  if (reason) {
    m_waiting.clear();  // no report of the old producer books anything (the caller gave
    m_streaming = 0;    // their rows up): they are late
  }
  return reason;
}

}  // namespace txbox::relay

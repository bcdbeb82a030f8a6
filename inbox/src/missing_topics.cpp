// missing_topics: when to say again that a subscribed topic does not exist.
#include "missing_topics.hpp"

namespace txbox::inbox {

using namespace std::chrono_literals;

std::chrono::seconds missing_topic_reminder_delay(int n) {
  return n == 0 ? 30s : 300s;
}

std::string missing_for_text(std::chrono::seconds d) {
  const auto s = d.count();
  if (s < 120) return std::to_string(s) + " s";
  const auto minutes = s / 60;
  if (minutes < 60) return std::to_string(minutes) + " min";
  const auto rest = minutes % 60;
  return std::to_string(minutes / 60) + " h" + (rest ? " " + std::to_string(rest) + " min" : "");
}

bool missing_topics::reported(const std::string& topic, clock::time_point now) {
  return m_topics.try_emplace(topic, entry{now, now + missing_topic_reminder_delay(0)}).second;
}

bool missing_topics::found(const std::string& topic) {
  return m_topics.erase(topic) > 0;
}

std::vector<missing_topics::reminder> missing_topics::due(clock::time_point now) {
  std::vector<reminder> out;
  for (auto& [topic, e] : m_topics) {
    if (now < e.next) continue;
    out.push_back({topic, std::chrono::duration_cast<std::chrono::seconds>(now - e.since)});
    e.next = now + missing_topic_reminder_delay(++e.reminders);
  }
  return out;
}

}  // namespace txbox::inbox

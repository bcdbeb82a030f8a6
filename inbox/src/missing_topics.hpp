// Subscribed topics the broker does not have. librdkafka reports each once; a consumer that
// then waits in silence looks like one that works, so the line comes again 30 s later and then
// every 5 minutes (a daemon logs state, not polls) until the topic exists. Pure: the caller
// passes the time and says whether the topic exists.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace txbox::inbox {

/// What to check when a subscribed topic is missing, appended to each line about it.
inline constexpr const char* missing_topic_hint =
    "is a relay running? `txboxctl status` shows the relays and the outbox backlog; does the "
    "producer write to the same topic name?";

/// The wait before reminder `n` (0: the first after the report): 30 s, then 5 minutes.
std::chrono::seconds missing_topic_reminder_delay(int n);

/// "45 s", "5 min", "1 h 5 min": how long a topic has been missing, for a log line.
std::string missing_for_text(std::chrono::seconds d);

class missing_topics {
 public:
  using clock = std::chrono::steady_clock;

  /// A reminder due: the topic and how long it has been missing.
  struct reminder {
    std::string topic;
    std::chrono::seconds missing_for{};
  };

  /// librdkafka reported `topic` missing at `now`: true when that is news (say it now).
  bool reported(const std::string& topic, clock::time_point now);
  /// `topic` exists (a record or an assignment came): true when it had been missing.
  bool found(const std::string& topic);
  /// The reminders due at `now`, each rescheduled (missing_topic_reminder_delay).
  std::vector<reminder> due(clock::time_point now);
  [[nodiscard]] bool empty() const { return m_topics.empty(); }

 private:
  struct entry {
    clock::time_point since;
    clock::time_point next;
    int reminders = 0;
  };
  std::map<std::string, entry> m_topics;
};

}  // namespace txbox::inbox

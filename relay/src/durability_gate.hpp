// The durability gate: which target topics may be published (strict durability holds the
// rows of a weak or unchecked topic). Owns the admin client the checks use; the describing
// itself is durability.cpp. Internal to the relay.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "durability.hpp"
#include "isr_check.hpp"
#include "round.hpp"
#include "txbox/detail/rdkafka.hpp"

namespace txbox::relay {

class DurabilityGate {
 public:
  /// `kafka`: the user's librdkafka properties. `admin_timeout`: for checks a round waits on.
  DurabilityGate(const std::map<std::string, std::string>& kafka, bool strict,
                 std::chrono::milliseconds admin_timeout);

  /// At start: checks `topics`; under strict durability a weak one throws durability_error
  /// naming all of them and the fixes.
  void check_at_start(const std::set<std::string>& topics);

  /// Checks the topics of `rows` never checked, or due for another look.
  void check_due(const std::vector<Row>& rows);

  /// Under strict durability, why a row of `topic` is held (nullopt: publish it).
  [[nodiscard]] std::optional<std::string> hold_reason(const std::string& topic) const;

  /// Checked topics below the durability minimum.
  [[nodiscard]] std::set<std::string> weak_topics() const;

  /// The partitions of `topics` (those checked) that cannot take acks=all writes now.
  [[nodiscard]] std::vector<IsrShortfall> isr_shortfalls(const std::set<std::string>& topics) const;

 private:
  struct TopicCheck {
    enum class state { unknown, durable, weak } st = state::unknown;
    clock::time_point recheck_at{};
    std::string why;     // for outbox.last_error of a held row
    int min_insync = 0;  // as last checked, 0: unknown
  };
  std::vector<detail::TopicDurability> check(const std::vector<std::string>& names,
                                             std::chrono::milliseconds timeout, bool quiet_weak);
  void record(const detail::TopicDurability& d, bool quiet_weak, clock::time_point now);

  detail::kafka_ptr m_admin;
  bool m_strict;
  std::chrono::milliseconds m_admin_timeout;
  std::map<std::string, TopicCheck> m_checks;
};

}  // namespace txbox::relay

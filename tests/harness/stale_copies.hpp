// Stale copies in a Kafka log: an older message of a key that lands after a newer one and
// leaves the key behind. Used by check_stream (tests/integration/relay_fixture.hpp) and the
// chaos driver's log audit (tests/chaos/log_audit.cpp).
//
// At least once, a relay that replays rows it had published but not settled (after a crash,
// a lost connection, a fenced settle) rewinds a key and then sends every message of it again
// up to the newest: the key catches up, a consumer that keeps each key's latest value goes
// back for a moment and returns. That is a duplicate, not a stale copy. A stale copy is an
// older message after which the key moves on (a newer message is first published) or the log
// ends before the newest is seen again: such a consumer stays behind (issue 25, defect 6: a
// relay's slow copies landing after the newer messages another relay sent meanwhile).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace txbox::test {

class StaleCopies {
 public:
  /// One episode of stale copies of a key.
  struct Episode {
    std::string key;
    int seq = 0;                 ///< the first older message's sequence number
    std::int64_t at = 0;         ///< its position or time (as given to add)
    int newest = 0;              ///< the newer message it landed after
    std::int64_t newest_at = 0;  ///< that one's position or time
    int copies = 0;              ///< the older messages of the episode
  };

  /// The next record of the log: `key`, its sequence number, a position or time kept in the
  /// episodes. Per key, records must come in log order.
  void add(const std::string& key, int seq, std::int64_t at) {
    Key& k = m_keys[key];
    if (seq > k.newest) {  // a message first published (or the key's first record)
      if (k.behind) m_episodes.push_back(*k.behind);  // it moved on while behind
      k.behind.reset();
      k.newest = seq;
      k.newest_at = at;
    } else if (seq == k.newest) {
      k.behind.reset();  // caught up: a replay
    } else if (k.behind) {
      ++k.behind->copies;
    } else {
      k.behind = Episode{key, seq, at, k.newest, k.newest_at, 1};
    }
  }

  /// The episodes, the keys still behind at the end of the log included.
  [[nodiscard]] std::vector<Episode> episodes() const {
    auto out = m_episodes;
    for (const auto& [key, k] : m_keys) {
      if (k.behind) out.push_back(*k.behind);
    }
    return out;
  }

  /// The older messages in all episodes.
  [[nodiscard]] int copies() const {
    int n = 0;
    for (const auto& e : episodes()) n += e.copies;
    return n;
  }

 private:
  struct Key {
    int newest = -1;
    std::int64_t newest_at = 0;
    std::optional<Episode> behind;
  };
  std::map<std::string, Key> m_keys;
  std::vector<Episode> m_episodes;
};

}  // namespace txbox::test

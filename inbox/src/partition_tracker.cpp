// The partition state machine (pure: decisions only, returned as actions).
#include "partition_tracker.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "txbox/detail/backoff.hpp"

namespace txbox::inbox {

std::int64_t partition_table::start_of(const partition_state& s) const {
  if (s.next_offset >= 0) return s.next_offset;
  return m_from_earliest ? offset_beginning : offset_end;
}

tracker_actions partition_table::assigned(
    const std::vector<TopicPartition>& tps,
    const std::optional<std::map<TopicPartition, std::int64_t>>& stored,
    const std::map<TopicPartition, std::int64_t>& ends) {
  tracker_actions a;
  for (const auto& tp : tps) {
    partition_state s;
    // The end read now is where a latest partition without a stored offset starts: kept in
    // memory from here on (a later seek to "the end" would skip what arrived meanwhile).
    const auto end = ends.find(tp);
    if (!m_from_earliest && end != ends.end()) s.next_offset = end->second;
    if (stored) {
      s.phase = phase::ready;
      const auto it = stored->find(tp);
      if (it != stored->end()) {
        s.next_offset = it->second;
      } else if (s.next_offset >= 0) {
        a.store[tp] = s.next_offset;  // pinned: survives a rebalance and a restart too
      }
      a.assign_at[tp] = start_of(s);
      a.resume.push_back(tp);
    } else {
      // Start nowhere in particular; paused until the stored offset can be read.
      a.assign_at[tp] = offset_invalid;
      a.pause.push_back(tp);
    }
    m_parts[tp] = s;
  }
  return a;
}

tracker_actions partition_table::revoked(const std::vector<TopicPartition>& tps) {
  tracker_actions a;
  for (const auto& tp : tps) m_parts.erase(tp);
  a.resume = tps;  // do not leave a pause flag behind for a later assignment
  return a;
}

tracker_actions partition_table::offsets_lost(const std::vector<TopicPartition>& tps) {
  tracker_actions a;
  for (auto& [tp, s] : m_parts) {
    if (!tps.empty() && std::find(tps.begin(), tps.end(), tp) == tps.end()) continue;
    s.phase = phase::offset_unknown;
    a.pause.push_back(tp);
  }
  return a;
}

std::vector<TopicPartition> partition_table::unknown() const {
  std::vector<TopicPartition> out;
  for (const auto& [tp, s] : m_parts) {
    if (s.phase == phase::offset_unknown) out.push_back(tp);
  }
  return out;
}

tracker_actions partition_table::offsets_loaded(
    const std::map<TopicPartition, std::int64_t>& stored, steady::time_point now) {
  tracker_actions a;
  for (auto& [tp, s] : m_parts) {
    if (s.phase != phase::offset_unknown) continue;
    const auto it = stored.find(tp);
    if (it != stored.end()) {
      s.next_offset = it->second;
    } else if (s.next_offset >= 0) {
      // Nothing stored yet, but the position is known here (the end read at assignment, a
      // failed first message): seek back there, and store it.
      a.store[tp] = s.next_offset;
    }
    a.seek.emplace_back(tp, start_of(s));
    if (s.failing_offset >= 0 && s.next_offset > s.failing_offset) {
      s.failing_offset = -1;  // committed by someone meanwhile
      s.attempts = 0;
      s.blocked = false;
    }
    if (s.resume_at > now) {
      s.phase = phase::waiting;  // its handler-retry backoff still runs
    } else {
      s.phase = phase::ready;
      a.resume.push_back(tp);
    }
  }
  return a;
}

tracker_actions partition_table::committed(const std::map<TopicPartition, std::int64_t>& next) {
  tracker_actions a;
  for (const auto& [tp, offset] : next) {
    const auto it = m_parts.find(tp);
    if (it == m_parts.end()) continue;
    auto& s = it->second;
    s.next_offset = std::max(s.next_offset, offset);
    if (s.failing_offset >= 0 && s.failing_offset < offset) {
      if (s.blocked) a.notes.push_back(fmt::format("{} unblocked", tp_text(tp)));
      s.failing_offset = -1;
      s.attempts = 0;
      s.blocked = false;
    }
  }
  return a;
}

void partition_table::failed(const TopicPartition& tp, std::int64_t offset, int attempts,
                             steady::time_point resume_at) {
  const auto it = m_parts.find(tp);
  if (it == m_parts.end()) return;
  it->second.failing_offset = offset;
  it->second.attempts = attempts;
  it->second.resume_at = std::max(it->second.resume_at, resume_at);
}

tracker_actions partition_table::retry_later(const TopicPartition& tp, std::int64_t offset,
                                             steady::time_point resume_at, bool blocked,
                                             const std::string& why) {
  tracker_actions a;
  const auto it = m_parts.find(tp);
  if (it == m_parts.end()) return a;
  auto& s = it->second;
  s.next_offset = offset;
  s.resume_at = resume_at;
  if (s.phase == phase::ready) s.phase = phase::waiting;
  if (blocked && !s.blocked) {
    s.blocked = true;
    a.warnings.push_back(
        fmt::format("{} blocked at offset {} (policy block): {}", tp_text(tp), offset, why));
  }
  a.pause.push_back(tp);
  a.seek.emplace_back(tp, offset);
  return a;
}

tracker_actions partition_table::due(steady::time_point now) {
  tracker_actions a;
  for (auto& [tp, s] : m_parts) {
    if (s.phase == phase::waiting && s.resume_at <= now) {
      s.phase = phase::ready;
      a.resume.push_back(tp);
    }
  }
  return a;
}

bool partition_table::accepts(const TopicPartition& tp, std::int64_t offset) const {
  const auto it = m_parts.find(tp);
  if (it == m_parts.end() || it->second.phase != phase::ready) return false;
  return it->second.next_offset < 0 || offset >= it->second.next_offset;  // else stale
}

std::optional<prior_failure> partition_table::prior(const TopicPartition& tp) const {
  const auto it = m_parts.find(tp);
  if (it == m_parts.end() || it->second.failing_offset < 0) return std::nullopt;
  return prior_failure{it->second.failing_offset, it->second.attempts};
}

}  // namespace txbox::inbox

namespace txbox::inbox {

std::chrono::milliseconds retry_delay(int attempts, std::chrono::milliseconds min,
                                      std::chrono::milliseconds max, std::mt19937_64& rng) {
  return detail::backoff(attempts - 1, min, max, rng);
}

}  // namespace txbox::inbox

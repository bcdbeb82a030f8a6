// The pipeline's book (see in_flight.hpp).
#include "in_flight.hpp"

#include <algorithm>
#include <stdexcept>

namespace txbox::relay {

void InFlight::add(std::uint32_t round, std::vector<Row> rows, const LeaseView& view,
                   std::vector<Outcome> outcomes) {
  if (rows.size() != outcomes.size()) {
    throw std::logic_error("InFlight::add: one outcome per row expected");
  }
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto epoch = view.epochs.find(rows[i].shard);
    Shard& shard = m_shards[rows[i].shard];
    m_rows += 1;
    m_bytes += rows[i].bytes;
    shard.slots.push_back({std::move(rows[i]), std::move(outcomes[i]),
                           epoch == view.epochs.end() ? 0 : epoch->second});
    Slot& slot = shard.slots.back();
    if (slot.outcome.in_flight()) {
      m_waiting[key(round, i)] = &slot;
      ++m_pending;
    }
  }
}

void InFlight::report(std::uint32_t round, std::size_t index, Outcome outcome) {
  const auto it = m_waiting.find(key(round, index));
  if (it == m_waiting.end()) return;
  Slot& slot = *it->second;
  m_waiting.erase(it);
  --m_pending;
  // A pending outcome here is a report that never came (abandon).
  slot.outcome = outcome.in_flight() ? Outcome::given_up() : std::move(outcome);
}

void InFlight::abandon() {
  std::vector<std::uint64_t> keys;
  keys.reserve(m_waiting.size());
  for (const auto& [k, slot] : m_waiting) keys.push_back(k);
  for (const auto k : keys) {
    report(static_cast<std::uint32_t>(k >> 32), static_cast<std::size_t>(k & 0xffffffffu), {});
  }
}

InFlight::Ready InFlight::take_ready() {
  Ready out;
  const auto final = [](const Slot& s) { return s.outcome.final(); };
  for (auto it = m_shards.begin(); it != m_shards.end();) {
    Shard& shard = it->second;
    if (!std::all_of(shard.slots.begin(), shard.slots.end(), final)) {
      ++it;  // the whole shard waits for its last outcome
      continue;
    }
    out.view.epochs[it->first] = shard.slots.back().epoch;
    for (Slot& s : shard.slots) {
      m_rows -= 1;
      m_bytes -= s.row.bytes;
      out.rows.push_back(std::move(s.row));
      out.outcomes.push_back(std::move(s.outcome));
    }
    it = m_shards.erase(it);  // claimed from its head again
  }
  return out;
}

std::set<int> InFlight::shards() const {
  std::set<int> out;
  for (const auto& [id, shard] : m_shards) out.insert(id);
  return out;
}

std::set<std::string> InFlight::topics() const {
  std::set<std::string> out;
  for (const auto& [id, shard] : m_shards) {
    for (const auto& s : shard.slots) out.insert(s.row.topic);
  }
  return out;
}

}  // namespace txbox::relay

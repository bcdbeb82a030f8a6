// The exactly_once lanes' bookkeeping (see lane_book.hpp).
#include "lane_book.hpp"

namespace txbox::relay {

std::vector<std::int64_t> lane_epochs(const LeaseView& view, int lane) {
  std::vector<std::int64_t> out;
  for (int sh = lane * k_lane_shards; sh < (lane + 1) * k_lane_shards; ++sh) {
    const auto it = view.epochs.find(sh);
    if (it == view.epochs.end()) return {};
    out.push_back(it->second);
  }
  return out;
}

std::vector<int> LaneBook::follow(const LeaseView& view) {
  for (auto it = m_lanes.begin(); it != m_lanes.end();) {
    it = lane_epochs(view, it->first) == it->second.epochs ? std::next(it) : m_lanes.erase(it);
  }
  std::vector<int> fresh;
  for (int lane = 0; lane < k_lanes; ++lane) {
    auto epochs = lane_epochs(view, lane);
    if (epochs.empty()) continue;
    auto [it, added] = m_lanes.try_emplace(lane);
    if (added || it->second.broken) {
      it->second.epochs = std::move(epochs);
      it->second.broken = true;  // until opened
      fresh.push_back(lane);
    }
  }
  return fresh;
}

void LaneBook::opened(int lane, std::vector<PublishedRow> last) {
  const auto it = m_lanes.find(lane);
  if (it == m_lanes.end()) return;
  // What Kafka says the lane's last transaction published, with what this relay knew (a
  // commit of its own whose DELETE failed before the lane broke).
  for (auto& r : last) it->second.unsettled.push_back(std::move(r));
  it->second.broken = false;
}

void LaneBook::broke(int lane) {
  if (const auto it = m_lanes.find(lane); it != m_lanes.end()) it->second.broken = true;
}

void LaneBook::committed(int lane, std::vector<PublishedRow> rows) {
  if (const auto it = m_lanes.find(lane); it != m_lanes.end()) {
    it->second.unsettled = std::move(rows);
  }
}

std::vector<PublishedRow> LaneBook::unsettled() const {
  std::vector<PublishedRow> out;
  for (const auto& [lane, l] : m_lanes) {
    out.insert(out.end(), l.unsettled.begin(), l.unsettled.end());
  }
  return out;
}

void LaneBook::settled() {
  for (auto& [lane, l] : m_lanes) l.unsettled.clear();
}

bool LaneBook::ready(int lane) const {
  const auto it = m_lanes.find(lane);
  return it != m_lanes.end() && !it->second.broken && it->second.unsettled.empty();
}

bool LaneBook::is_open(int lane) const {
  const auto it = m_lanes.find(lane);
  return it != m_lanes.end() && !it->second.broken;
}

}  // namespace txbox::relay

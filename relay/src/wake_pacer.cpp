// The relay's wake-up pacing (see wake_pacer.hpp).
#include "wake_pacer.hpp"

#include <algorithm>
#include <charconv>
#include <stdexcept>
#include <string>

namespace txbox::relay {
namespace {

std::uint64_t parse_xid(std::string_view text, std::string_view whole) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size() || text.empty()) {
    throw std::invalid_argument("not a pg_snapshot: '" + std::string(whole) + "'");
  }
  return v;
}

}  // namespace

DbSnapshot DbSnapshot::parse(std::string_view text) {
  const auto c1 = text.find(':');
  const auto c2 = c1 == std::string_view::npos ? c1 : text.find(':', c1 + 1);
  if (c2 == std::string_view::npos) {
    throw std::invalid_argument("not a pg_snapshot: '" + std::string(text) + "'");
  }
  DbSnapshot s;
  s.xmin = parse_xid(text.substr(0, c1), text);
  s.xmax = parse_xid(text.substr(c1 + 1, c2 - c1 - 1), text);
  const auto list = text.substr(c2 + 1);
  for (std::size_t at = 0; !list.empty() && at <= list.size();) {
    const auto comma = std::min(list.find(',', at), list.size());
    s.xip.push_back(parse_xid(list.substr(at, comma - at), text));
    at = comma + 1;
  }
  return s;
}

bool DbSnapshot::ended(std::uint64_t xid) const {
  if (xid < xmin) return true;
  if (xid >= xmax) return false;
  return std::find(xip.begin(), xip.end(), xid) == xip.end();
}

WakePacer::WakePacer(WakeOptions options, clock::time_point now)
    : m_options(options), m_gap(options.probe_min), m_next_probe(now), m_last_claim(now) {}

void WakePacer::busy(clock::time_point now) {
  m_hot_until = now + k_hot;
  m_gap = m_options.probe_min;
  m_next_probe = now + m_gap;
}

void WakePacer::claimed(clock::time_point now, bool found_rows) {
  m_last_claim = now;
  if (found_rows) busy(now);
}

bool WakePacer::watched_ended(const DbSnapshot& snapshot) {
  return std::erase_if(m_watch, [&](std::uint64_t xid) { return snapshot.ended(xid); }) > 0;
}

bool WakePacer::probed(clock::time_point now, const ProbeReading& reading) {
  const DbSnapshot& snap = reading.snapshot;
  const bool first = !m_last_value;
  const bool moved = !first && reading.last_value != *m_last_value;
  m_last_value = reading.last_value;
  const bool in_horizon = now < m_horizon_until;
  const bool sign =
      in_horizon && (watched_ended(snap) || (m_last_xmax && snap.xmax > *m_last_xmax));
  m_last_xmax = snap.xmax;
  // A writer may be half-way at start, or has just inserted: watch what runs from now on.
  if (first || moved) m_horizon_until = now + m_options.poll_interval;
  if (now < m_horizon_until) {
    m_watch.insert(snap.xip.begin(), snap.xip.end());
  } else {
    m_watch.clear();
  }
  if (moved || sign) {
    busy(now);
  } else {
    if (now >= m_hot_until) m_gap = std::min<clock::duration>(m_gap * 2, m_options.probe_max);
    m_next_probe = now + m_gap;
  }
  return moved || sign;
}

bool WakePacer::poll_due(clock::time_point now) const {
  return now - m_last_claim >= m_options.poll_interval;
}

clock::time_point WakePacer::next_event() const {
  const auto poll = m_last_claim + m_options.poll_interval;
  return probing() ? std::min(poll, m_next_probe) : poll;
}

}  // namespace txbox::relay

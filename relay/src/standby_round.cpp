// The standby gate's decisions (see standby_round.hpp).
#include "standby_round.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <stdexcept>

namespace txbox::relay {
namespace {

// The application_name pg_receivewal and pg_basebackup -X stream connect with by default.
constexpr std::string_view k_archiver_names[] = {"pg_receivewal", "pg_basebackup"};

std::uint32_t hex_part(std::string_view part, std::string_view text) {
  std::uint32_t v = 0;
  const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), v, 16);
  if (part.empty() || ec != std::errc() || end != part.data() + part.size()) {
    throw std::invalid_argument(fmt::format("'{}' is not a WAL position (pg_lsn)", text));
  }
  return v;
}

}  // namespace

Lsn parse_lsn(std::string_view text) {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) {
    throw std::invalid_argument(fmt::format("'{}' is not a WAL position (pg_lsn)", text));
  }
  return (static_cast<Lsn>(hex_part(text.substr(0, slash), text)) << 32) |
         hex_part(text.substr(slash + 1), text);
}

std::string format_lsn(Lsn lsn) {
  return fmt::format("{:X}/{:X}", lsn >> 32, lsn & 0xFFFFFFFFu);
}

std::string Walsender::name() const {
  return (application_name.empty() ? std::string("walreceiver") : application_name) + "@" + client;
}

std::optional<std::string> not_counted(const Walsender& w,
                                       const std::vector<std::string>& standby_names) {
  if (w.logical) return "logical";
  if (!w.flush_lsn) return "no flush position";
  if (!standby_names.empty()) {
    if (std::find(standby_names.begin(), standby_names.end(), w.application_name) ==
        standby_names.end()) {
      return "not in relay.standby_names";
    }
    return std::nullopt;
  }
  if (w.state == "backup") return "a base backup";
  if (std::find(std::begin(k_archiver_names), std::end(k_archiver_names), w.application_name) !=
      std::end(k_archiver_names)) {
    return "a WAL archiver";
  }
  return std::nullopt;
}

StandbyRounds::StandbyRounds(int required, std::vector<std::string> standby_names)
    : m_required(required), m_names(std::move(standby_names)) {}

StandbyRounds::Round StandbyRounds::claimed(const std::vector<RowRef>& refs, Lsn insert_lsn,
                                            const std::string& server) {
  if (m_held && m_held->server == server) {
    Round kept{.target = m_held->target, .refs = {}, .kept = true};
    for (const auto& r : refs) {
      if (m_held->refs.contains(r)) kept.refs.push_back(r);
    }
    if (!kept.refs.empty()) {
      // Rows of the held round that this claim did not see again are gone (published by
      // another relay, or their shards moved): forget them.
      m_held->refs = {kept.refs.begin(), kept.refs.end()};
      return kept;
    }
  }
  m_held = Held{.target = insert_lsn, .server = server, .refs = {refs.begin(), refs.end()}};
  return Round{.target = insert_lsn, .refs = refs, .kept = false};
}

StandbyCount StandbyRounds::check(Lsn target, const std::vector<Walsender>& walsenders) const {
  StandbyCount c;
  for (const auto& w : walsenders) {
    if (not_counted(w, m_names)) continue;
    ++c.counted;
    if (*w.flush_lsn >= target) ++c.flushed;
  }
  c.pass = c.flushed >= static_cast<std::size_t>(m_required);
  return c;
}

void StandbyRounds::published() {
  m_held.reset();
}

void StandbyRounds::nothing_claimed() {
  m_held.reset();
}

}  // namespace txbox::relay

#include "pipeline_pacing.hpp"

#include <algorithm>

namespace txbox::relay::pacing {

std::size_t round_rows(int batch_size, std::size_t shards_owned) {
  return static_cast<std::size_t>(batch_size) * std::max<std::size_t>(shards_owned, 1);
}

bool room_for_round(std::size_t rows_in_flight, std::size_t bytes_in_flight, std::size_t round_rows,
                    std::size_t max_batch_bytes) {
  return rows_in_flight <= round_rows && bytes_in_flight <= max_batch_bytes / 2;
}

bool claim_due(const std::optional<clock::time_point>& idle_since,
               const std::function<bool()>& work_due) {
  return !idle_since || work_due();
}

bool settle_due(std::size_t rows, std::size_t pending, std::size_t round_rows,
                clock::time_point now, clock::time_point last_settle) {
  const std::size_t in = rows - pending;  // rows with their outcome
  if (in == 0) return false;
  const bool waiting_for_more = pending > 0 && in < round_rows / 2;
  return !(waiting_for_more && now - last_settle < k_settle_delay);
}

bool abandon_due(const std::optional<clock::time_point>& gave_up, clock::time_point now) {
  return gave_up && now - *gave_up > k_abandon_after;
}

clock::time_point report_mark(clock::time_point last_report, bool reports_came, std::size_t pending,
                              clock::time_point now) {
  return reports_came || pending == 0 ? now : last_report;
}

bool reports_stalled(clock::time_point last_report, clock::time_point now,
                     std::chrono::milliseconds lease_ttl) {
  return now - last_report > lease_ttl;
}

bool stop_grace_left(std::size_t pending, clock::time_point now, clock::time_point until) {
  return pending > 0 && now < until;
}

}  // namespace txbox::relay::pacing

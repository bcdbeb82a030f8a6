// start_relay: constructs a Relay, waiting while the database is not there (the daemon's
// start-up, for every user of txbox::Relay).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <pqxx/except>
#include <string>
#include <string_view>

#include "txbox/conninfo.hpp"
#include "txbox/detail/backoff.hpp"
#include "txbox/detail/failure.hpp"
#include "txbox/relay.hpp"

namespace txbox {
namespace {

using steady = std::chrono::steady_clock;

// While the database is not there at start, its reason is logged again this often.
constexpr auto k_repeat_start_line = std::chrono::minutes(1);
// The backoff of an unreachable database: from this, doubled up to k_max_delay.
constexpr auto k_first_delay = std::chrono::milliseconds(200);
constexpr auto k_max_delay = std::chrono::milliseconds(10'000);

// The log lines of a start that waits: the reason at once, then every k_repeat_start_line.
class StartLines {
 public:
  // True when a line is due now.
  bool due() {
    if (steady::now() < m_next_line) return false;
    m_next_line = steady::now() + k_repeat_start_line;
    return true;
  }
  // "retrying <how>", then "still retrying <how>, for <n> s now".
  [[nodiscard]] std::string retrying(std::string_view how) const {
    const auto s = std::chrono::duration_cast<std::chrono::seconds>(steady::now() - m_started);
    return s.count() == 0 ? fmt::format("retrying {}", how)
                          : fmt::format("still retrying {}, for {} s now", how, s.count());
  }

 private:
  steady::time_point m_started = steady::now();
  steady::time_point m_next_line = m_started;
};

}  // namespace

std::unique_ptr<Relay> start_relay(const RelayConfig& config, std::stop_token stop) {
  auto delay = k_first_delay;
  StartLines lines;
  while (!stop.stop_requested()) {
    try {
      return std::make_unique<Relay>(config);
    } catch (const transient_error& e) {
      if (lines.due()) {
        spdlog::warn("{}; {}", libpq_error_text(e.what(), config.database_url),
                     lines.retrying("with backoff"));
      }
      detail::sleep_for(delay, stop);
      delay = std::min(delay * 2, k_max_delay);
    } catch (const pqxx::sql_error&) {
      // A privilege or object missing at start: the fix named, retried slowly (not ready
      // meanwhile); anything else is not for a retry.
      const auto f = detail::classify_current();
      if (f.kind != detail::failure_kind::db_permanent) throw;
      if (lines.due()) {
        spdlog::error(
            "database: {} (SQLSTATE {}). Hint: {}; {}",
            libpq_error_text(f.message, config.database_url), f.sqlstate,
            f.hint.empty() ? "an operator must fix this" : f.hint,
            lines.retrying(fmt::format("every {} s", config.retry_backoff_max.count() / 1000)));
      }
      detail::sleep_for(config.retry_backoff_max, stop);
    }
  }
  return nullptr;
}

}  // namespace txbox

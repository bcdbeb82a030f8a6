// The chaos driver's view of the pipeline: progress figures and the drain check.
#include "monitor.hpp"

#include <fmt/format.h>

#include <cstdint>
#include <map>
#include <vector>

#include "log_audit.hpp"
#include "report.hpp"
#include "txbox/detail/pq.hpp"
#include "workload.hpp"

namespace pq = txbox::pq;

namespace chaos {

pqxx::connection& Monitor::conn() {
  if (!m_conn) m_conn = std::make_unique<pqxx::connection>(m_pg);
  return *m_conn;
}

std::string Monitor::status() {
  try {
    pqxx::nontransaction nt(conn());
    const auto r = nt.exec(
        "SELECT (SELECT count(*) FROM txbox.outbox), "
        "(SELECT coalesce(sum(applied), 0) FROM chaos.key_state)");
    return fmt::format("outbox {:>7}  applied {:>9}", group(r[0][0].as<std::int64_t>()),
                       group(r[0][1].as<std::int64_t>()));
  } catch (const std::exception&) {
    m_conn.reset();
    return "database unreachable";
  }
}

// Checked while every process runs and both servers are up.
bool Monitor::drained(Kafka& kafka, std::string& why) {
  try {
    pqxx::nontransaction nt(conn());
    const auto outbox = nt.exec("SELECT count(*) FROM txbox.outbox")[0][0].as<std::int64_t>();
    if (outbox > 0) {
      why = fmt::format("{} row(s) in the outbox", outbox);
      return false;
    }
    const auto hw = kafka.high_watermarks(m_topic, m_partitions, 5000);
    if (!hw) {
      why = "the broker does not answer";
      return false;
    }
    std::map<int, std::int64_t> stored;
    for (const auto& row :
         pq::exec(nt,
                  "SELECT \"partition\", next_offset FROM txbox.inbox_offsets WHERE consumer = $1 "
                  "AND topic = $2",
                  k_consumer, m_topic)) {
      stored[row[0].as<int>()] = row[1].as<std::int64_t>();
    }
    std::int64_t behind = 0;
    for (int p = 0; p < m_partitions; ++p) {
      behind += (*hw)[static_cast<std::size_t>(p)] - (stored.contains(p) ? stored[p] : 0);
    }
    if (!m_eos_bootstrap.empty() && behind > 0) {
      // The offsets past the stored ones may be transaction markers only: count records.
      std::vector<std::int64_t> from;
      for (int p = 0; p < m_partitions; ++p) from.push_back(stored.contains(p) ? stored[p] : 0);
      const auto left = records_after(m_eos_bootstrap, m_topic, from, 5000);
      if (!left) {
        why = "the broker does not answer";
        return false;
      }
      behind = *left;
    }
    if (behind != 0) {
      why = fmt::format("consumers {} record(s) behind", behind);
      return false;
    }
    return true;
  } catch (const std::exception& e) {
    m_conn.reset();
    why = e.what();
    return false;
  }
}

}  // namespace chaos

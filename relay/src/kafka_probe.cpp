// The probe behind KafkaReach (see kafka_probe.hpp).
#include "kafka_probe.hpp"

#include <fmt/format.h>

#include "kafka_client.hpp"

namespace txbox::relay {

KafkaProbe::KafkaProbe(const std::map<std::string, std::string>& kafka, ReachOptions options)
    : m_reach(options) {
  const auto it = kafka.find("bootstrap.servers");
  m_servers = it == kafka.end() ? "" : it->second;
  detail::conf_ptr conf(rd_kafka_conf_new());
  for (const auto& [k, v] : connection_settings(kafka)) set_conf(conf.get(), k, v);
  set_conf(conf.get(), "allow.auto.create.topics", "false");
  m_client = make_client(std::move(conf), "client for the broker probe");
  m_thread = std::jthread([this](const std::stop_token& stop) { run(stop); });
}

KafkaProbe::~KafkaProbe() {
  m_thread.request_stop();
  if (m_thread.joinable()) m_thread.join();
}

std::string KafkaProbe::probe_once() {
  const auto timeout = m_reach.options().probe_timeout;
  const rd_kafka_metadata_t* md = nullptr;
  const auto err =
      rd_kafka_metadata(m_client.get(), 0, nullptr, &md, static_cast<int>(timeout.count()));
  const detail::metadata_ptr owned(md);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return {};
  return fmt::format("no answer from kafka.bootstrap.servers ({}) within {} ms: {}", m_servers,
                     timeout.count(), rd_kafka_err2str(err));
}

void KafkaProbe::run(const std::stop_token& stop) {
  while (!stop.stop_requested()) {
    const std::string error = probe_once();
    std::unique_lock lock(m_mutex);
    m_reach.probed(clock::now(), error);
    m_wake.wait_until(lock, stop, m_reach.next_probe(), [] { return false; });
  }
}

ReachVerdict KafkaProbe::verdict() const {
  const std::lock_guard lock(m_mutex);
  return m_reach.verdict(clock::now());
}

}  // namespace txbox::relay

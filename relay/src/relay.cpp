// The publish loop: tick the leases -> let the delivery mode claim, publish, settle a round
// (delivery_mode.hpp) -> observe; one failure policy for it all. Each step is a unit of its
// own (see docs/architecture.md).
#include "txbox/relay.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <pqxx/except>
#include <random>

#include "delivery_mode.hpp"
#include "txbox/detail/backoff.hpp"
#include "txbox/detail/failure.hpp"

namespace txbox {
namespace {

using namespace std::chrono_literals;
using relay::clock;

// The topics of this many rows at each shard's head are checked at start (the rest before
// their first publish).
constexpr int k_start_topics_per_shard = 100;

std::string default_name() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return fmt::format("{}:{}", host, ::getpid());
}

RelayConfig validated(RelayConfig config) {
  validate_relay_config(config);
  if (config.name.empty()) config.name = default_name();
  return config;
}

}  // namespace

struct Relay::impl {
  explicit impl(RelayConfig c)
      : cfg(validated(std::move(c))),
        health(cfg.database_url),
        leases(detail::schema_name(cfg.schema), cfg.name, cfg.lease_ttl, relay::lease_unit(cfg)),
        store(detail::schema_name(cfg.schema), cfg.name, cfg.batch_size, cfg.max_batch_bytes),
        gate(cfg.kafka, cfg.strict_durability, relay::admin_timeout(cfg)),
        standbys(cfg.wait_for_standbys, cfg.standby_names) {}

  RelayConfig cfg;
  relay::Health health;
  relay::LeaseTable leases;
  relay::OutboxStore store;
  relay::DurabilityGate gate;
  relay::StandbyGate standbys;
  relay::KafkaProbe kafka{cfg.kafka, relay::reach_options(cfg.lease_ttl)};  // no lease without it
  std::mt19937_64 rng{std::random_device{}()};
  relay::RoundContext round{cfg, session, leases, store, gate, standbys, kafka, health, rng};
  std::unique_ptr<relay::DeliveryMode> mode = relay::make_delivery_mode(round);
  // After the mode: closed before its producers are destroyed. Reset after a failure that
  // needs a new connection.
  std::unique_ptr<relay::Session> session;
  clock::time_point next_backlog{};

  pqxx::connection& db() { return session->db(); }

  void connect() {
    session = std::make_unique<relay::Session>(cfg);
    health.db_connected();
  }
  void drop_session() {
    session.reset();
    leases.forget();  // renewed by epoch only: a new connection takes shards afresh
  }

  // One pass of the loop; returns after a round, or after waiting for work.
  void step(const std::stop_token& stop) {
    if (!round.connected()) connect();
    health.on_kafka(kafka.verdict());
    // Renew early when the leases no longer cover a round's delivery budget.
    if (leases.due(clock::now()) || (!leases.view().empty() && !round.lease_time_for_round())) {
      health.on_leases(leases.tick(db(), kafka.lease_intent(mode->busy_shards())));
    }
    mode->replace_failed_producer();
    if (clock::now() >= next_backlog) {
      health.on_backlog(store.backlog(db()), mode->queue_length());
      next_backlog = clock::now() + 1s;
    }
    mode->step(stop);
  }

  // The failure policy: how long until the loop tries again, and with which connection.
  std::chrono::milliseconds on_failure(const detail::failure& f, int attempt) {
    // Permanent problems and bugs: an operator must act; try again rarely (one log line).
    const auto delay =
        f.transient() ? detail::backoff(attempt, cfg.retry_backoff_min, cfg.retry_backoff_max, rng)
                      : cfg.retry_backoff_max;
    health.failed(f, delay);
    // Nothing was deleted that Kafka did not acknowledge; rows whose delete did not commit
    // are re-sent and the inbox absorbs them.
    if (f.reconnect) drop_session();
    return delay;
  }

  void release() noexcept {
    if (round.connected()) leases.release(db());
  }
};

Relay::Relay(RelayConfig config) : m_impl(std::make_unique<impl>(std::move(config))) {
  auto& m = *m_impl;
  try {
    m.connect();
    m.standbys.check_privilege(m.db());
    // The topics waiting at the shards' heads and relay.durability_topics; topics further
    // back are checked before their first publish.
    auto topics = m.store.head_topics(m.db(), k_start_topics_per_shard);
    topics.insert(m.cfg.durability_topics.begin(), m.cfg.durability_topics.end());
    topics.merge(m.mode->start());
    m.gate.check_at_start(topics);
    m.health.on_weak_topics(m.gate.weak_topics());
  } catch (const pqxx::broken_connection& e) {
    detail::throw_connect_failure(e.what(), m.cfg.database_url);  // config_error or transient
  }
}

Relay::~Relay() {
  m_impl->release();
  m_impl->mode->flush(5s);
}

void Relay::run(std::stop_token stop) {
  auto& m = *m_impl;
  spdlog::info(
      "relay {}: publishing schema {} (batch {}, lease ttl {} ms, probe {} ms, poll {} ms{}, {})",
      m.cfg.name, m.cfg.schema, m.cfg.batch_size, m.cfg.lease_ttl.count(),
      m.cfg.probe_interval.count(), m.cfg.poll_interval.count(),
      m.cfg.listen_notify ? ", listen" : "", m.mode->name());
  int failures = 0;  // in a row
  while (!stop.stop_requested()) {
    try {
      m.step(stop);
      failures = 0;
    } catch (const schema_error&) {
      throw;  // the schema changed under the relay: fix and restart
    } catch (...) {
      const auto f = detail::classify_current();
      if (f.kind == detail::failure_kind::config) throw;
      detail::sleep_for(m.on_failure(f, failures++), stop);
    }
  }
  // Stop: what is in flight gets its grace and is settled; give the shards back at once.
  try {
    m.mode->finish();
  } catch (const std::exception& e) {
    spdlog::warn("stopping: the rows in flight were not settled ({}); they are sent again",
                 e.what());
  }
  m.release();
  m.mode->flush(5s);
  spdlog::info("relay {}: stopped", m.cfg.name);
}

RelayStats Relay::stats() const {
  return m_impl->health.snapshot();
}

std::string Relay::metrics_text() const {
  return m_impl->health.metrics_text();
}

}  // namespace txbox

// The publish loop: tick the leases -> claim a round -> publish it -> classify the outcomes ->
// settle (fenced) -> observe. Each step is a unit of its own (see docs/architecture.md).
#include "txbox/relay.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <pqxx/except>
#include <random>

#include "durability.hpp"
#include "durability_gate.hpp"
#include "fault_point.hpp"
#include "health.hpp"
#include "in_flight.hpp"
#include "kafka_probe.hpp"
#include "lease_table.hpp"
#include "outbox_store.hpp"
#include "session.hpp"
#include "settle_plan.hpp"
#include "standby_gate.hpp"
#include "streamed_rounds.hpp"
#include "txbox/detail/backoff.hpp"
#include "txbox/detail/failure.hpp"
#include "txn_lanes.hpp"

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

// A message is handed to Kafka only while the leases hold for this much longer: time for
// its acknowledgement and the fenced delete before another relay may take the shard.
std::chrono::milliseconds delivery_budget(const RelayConfig& c) {
  return c.lease_ttl / 3;
}

// The admin requests for a claimed round: the round's leases wait on them.
std::chrono::milliseconds admin_timeout(const RelayConfig& c) {
  return std::clamp<std::chrono::milliseconds>(c.lease_ttl / 3, 2s, 10s);
}

relay::ProducerOptions publisher_options(const RelayConfig& c) {
  relay::ProducerOptions o;
  o.kafka = c.kafka;
  o.max_batch_bytes = c.max_batch_bytes;
  o.delivery_budget = delivery_budget(c);
  o.metadata_timeout = admin_timeout(c);
  o.transaction_timeout = 2 * c.lease_ttl;
  return o;
}

}  // namespace

struct Relay::impl {
  explicit impl(RelayConfig c)
      : cfg(validated(std::move(c))),
        health(cfg.database_url),
        leases(detail::schema_name(cfg.schema), cfg.name, cfg.lease_ttl,
               eos() ? relay::k_lane_shards : 1),
        store(detail::schema_name(cfg.schema), cfg.name, cfg.batch_size, cfg.max_batch_bytes),
        gate(cfg.kafka, cfg.strict_durability, admin_timeout(cfg)),
        standbys(cfg.wait_for_standbys, cfg.standby_names) {
    if (!eos()) publisher = std::make_unique<relay::StreamedRounds>(publisher_options(cfg));
  }

  RelayConfig cfg;
  relay::Health health;
  relay::LeaseTable leases;
  relay::OutboxStore store;
  relay::DurabilityGate gate;
  relay::StandbyGate standbys;
  relay::KafkaProbe kafka{cfg.kafka, relay::reach_options(cfg.lease_ttl)};  // no lease without it
  std::unique_ptr<relay::StreamedRounds> publisher;                         // at_least_once
  relay::InFlight flight;                        // at_least_once: the rows in flight
  std::optional<clock::time_point> idle_since;   // at_least_once: the last claim was empty
  std::optional<clock::time_point> gave_up;      // at_least_once: purged after a fatal error
  clock::time_point last_report = clock::now();  // at_least_once: progress of the reports
  clock::time_point last_settle = clock::now();  // at_least_once
  std::unique_ptr<relay::ProgressLog> progress;  // exactly_once
  std::unique_ptr<relay::TxnLanes> lanes;        // exactly_once
  bool progress_topic_ready = false;
  std::unique_ptr<relay::Session> session;
  std::mt19937_64 rng{std::random_device{}()};
  clock::time_point next_backlog{};

  pqxx::connection& db() { return session->db(); }
  [[nodiscard]] bool eos() const { return cfg.delivery == Delivery::exactly_once; }

  // exactly_once, at start: names the lanes' transactional ids and the progress topic.
  std::set<std::string> start_exactly_once() {
    const std::string id = store.identity(db());
    progress = std::make_unique<relay::ProgressLog>(cfg.kafka, id, cfg.progress_topic,
                                                    admin_timeout(cfg));  // keyed by id
    const std::string topic = progress->topic();
    try {
      progress->ensure_topic();  // before the durability check, which then sees it
      progress_topic_ready = true;
    } catch (const detail::kafka_call_error& e) {
      spdlog::warn("{}; created before the first round", e.what());
    }
    lanes =
        std::make_unique<relay::TxnLanes>(relay::LanesOptions{.producer = publisher_options(cfg),
                                                              .id_prefix = "txbox-" + id,
                                                              .relay_name = cfg.name,
                                                              .init_timeout = admin_timeout(cfg),
                                                              .commit_timeout = cfg.lease_ttl},
                                          *progress);
    spdlog::info(
        "relay {}: exactly-once delivery: transactional ids txbox-{}-lane-0..{}, "
        "progress topic '{}'",
        cfg.name, id, relay::k_lanes - 1, topic);
    return {topic, detail::transaction_state_topic};
  }

  // exactly_once, before a claim: the lanes follow the leases; what a lane's last committed
  // transaction published (by its previous owner, or by this relay before a failed DELETE) is
  // deleted, never sent again.
  void adopt_lanes() {
    if (!progress_topic_ready) {
      progress->ensure_topic();
      progress_topic_ready = true;
    }
    const auto published = lanes->adopt(leases.view());
    std::size_t deleted = 0;
    if (!published.empty()) {
      std::vector<std::int64_t> ids;
      std::vector<std::string> message_ids;
      for (const auto& r : published) {
        ids.push_back(r.id);
        message_ids.push_back(r.message_id);
      }
      deleted = store.delete_published(db(), leases.view(), ids, message_ids);
    }
    lanes->settled();
    health.on_lanes(lanes->lanes(), deleted);
  }
  bool lease_time_for_round() const {
    return leases.view().covers(clock::now(), delivery_budget(cfg));
  }

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
    if (!session || !session->is_open()) connect();
    health.on_kafka(kafka.verdict());
    // Renew early when the leases no longer cover a round's delivery budget.
    if (leases.due(clock::now()) || (!leases.view().empty() && !lease_time_for_round())) {
      health.on_leases(leases.tick(db(), kafka.lease_intent(flight.shards())));
    }
    if (publisher && flight.empty() && publisher->replace_if_fatal()) {
      health.on_producer_replaced();
    }
    if (clock::now() >= next_backlog) {
      health.on_backlog(store.backlog(db()),
                        publisher ? publisher->queue_length() : lanes->queue_length());
      next_backlog = clock::now() + 1s;
    }
    if (eos()) {
      step_transactional(stop);
    } else {
      step_pipelined(stop);
    }
  }

  // exactly_once: claim, deliver in transactions, settle; then the next round.
  void step_transactional(const std::stop_token& stop) {
    if (!lease_time_for_round() || !kafka.reachable()) {
      detail::sleep_for(std::min(cfg.poll_interval, cfg.lease_ttl / 3), stop);
      return;
    }
    adopt_lanes();
    auto rows = store.claim(db(), leases.view());
    session->claimed(!rows.empty());
    if (rows.empty()) {
      idle(stop);
      return;
    }
    if (!standbys_have(rows, stop)) return;
    publish(std::move(rows), stop);
  }

  // at_least_once: settle what Kafka acknowledged, claim the next round while earlier ones
  // are in flight (up to one round's worth of rows, and half of relay.max_batch_bytes), and
  // wait only when there is nothing to claim.
  void step_pipelined(const std::stop_token& stop) {
    settle_ready(0ms);
    if (publisher->fatal() && !flight.empty() && !gave_up) {
      publisher->give_up();  // its reports fail the rows: settled as transient failures
      gave_up = clock::now();
    }
    // Room for the next round: at most a round's rows and half of relay.max_batch_bytes in
    // flight (so rounds stay large, and two of them overlap).
    const bool room = flight.rows() <= round_rows() && flight.bytes() <= cfg.max_batch_bytes / 2;
    if (room && !gave_up && !publisher->fatal() && kafka.reachable() && lease_time_for_round() &&
        claim_due()) {
      // Only shards with nothing in flight: a claim takes a shard's head, so a shard's next
      // rows never overtake one of its rows still in flight (nor one that committed late).
      // Nor draining ones: held beyond the fair share only until their rows have settled.
      const relay::LeaseView view = relay::claimable(leases.view(), flight.shards());
      if (!view.empty()) {
        auto rows = store.claim(db(), view, cfg.max_batch_bytes - flight.bytes());
        session->claimed(!rows.empty());
        if (!rows.empty()) {
          idle_since.reset();
          if (standbys_have(rows, stop)) stream(std::move(rows));
          return;
        }
        if (!idle_since) idle_since = clock::now();
      }
    }
    if (flight.empty()) {
      gave_up.reset();
      if (!lease_time_for_round() || !kafka.reachable()) {
        detail::sleep_for(std::min(cfg.poll_interval, cfg.lease_ttl / 3), stop);
      } else {
        idle(stop);
      }
      idle_since.reset();  // waited for work: claim again
      return;
    }
    settle_ready(5ms);
    if (gave_up && clock::now() - *gave_up > 10s) flight.abandon();  // a report never came
  }

  // While rows are in flight and the last claim found nothing: claim again when the wake-up
  // sees signs of new rows (the probe, a NOTIFY) or after relay.poll_interval.
  bool claim_due() { return !idle_since || session->work_due(); }

  // Nothing to claim: wait for signs of new rows, poll_interval, or the next lease tick.
  void idle(const std::stop_token& stop) {
    if (const auto over = standbys.nothing_claimed()) health.on_standbys(*over, 0);
    health.db_ok();  // every statement of a pass went through
    session->wait_for_work(
        stop, std::min(cfg.poll_interval, std::chrono::duration_cast<std::chrono::milliseconds>(
                                              leases.next_tick() - clock::now())));
  }

  // At stop (at_least_once): the rows in flight get stop_grace for their reports, then are
  // given up; what came is settled (when the database is there).
  void finish_in_flight() {
    if (!publisher || flight.empty()) return;
    const auto grace = relay::ProducerOptions{}.stop_grace;
    const auto until = clock::now() + grace;
    while (flight.pending() > 0 && clock::now() < until) book_reports(50ms);
    if (flight.pending() > 0) {
      spdlog::warn("stopping: giving up on {} unacknowledged message(s) after {} ms",
                   flight.pending(), grace.count());
      publisher->give_up();
      book_reports(100ms);
      flight.abandon();
    }
    if (!session || !session->is_open()) return;
    auto ready = flight.take_ready();
    if (!ready.rows.empty()) settle(ready.rows, ready.outcomes, ready.view);
  }

  // The phantom guard: true when relay.wait_for_standbys standbys flushed the round's WAL (up to
  // 1 s, never into the delivery budget). Else the rows stay in the outbox, untouched; the next
  // pass waits for the same point (`rows` keeps the held round's rows: standby_round.hpp).
  bool standbys_have(std::vector<relay::Row>& rows, const std::stop_token& stop) {
    if (!standbys.enabled()) return true;
    const auto until = std::min<clock::time_point>(leases.view().valid_until - delivery_budget(cfg),
                                                   clock::now() + 1s);
    const auto verdict = standbys.wait(db(), rows, stop, until);
    health.on_standbys(verdict, rows.size());
    if (!verdict.pass) health.db_ok();  // holding is not a database failure
    return verdict.pass;
  }

  // exactly_once: one round at a time, one transaction per lane, settled before the next
  // claim (a lane's next transaction must not start before its last one's DELETE).
  void publish(std::vector<relay::Row> rows, const std::stop_token& stop) {
    const relay::LeaseView view = leases.view();  // the round's claim and settle run under it
    gate.check_due(rows);
    health.on_weak_topics(gate.weak_topics());
    const auto gates = round_gates(view, rows);
    auto slow = [this, topics = relay::topics_of(rows)] { on_slow(topics); };
    auto round = lanes->deliver(std::move(rows), gates, {stop, cfg.lease_ttl, slow});
    health.on_transactions(round.committed, round.aborted, round.commit_seconds, round.first_abort);
    lease_short(round.lease_short);
    health.on_late_reports(lanes->late_reports());
    settle(round.rows, round.outcomes, view);
    lanes->settled();
  }

  // at_least_once: hands a claimed round to Kafka and books it in flight; its rows are
  // settled as their reports come in (settle_ready), while the next rounds are claimed.
  void stream(std::vector<relay::Row> rows) {
    const relay::LeaseView view = leases.view();  // the round's claim and settle run under it
    gate.check_due(rows);
    health.on_weak_topics(gate.weak_topics());
    const auto gates = round_gates(view, rows);
    auto sent = publisher->stream(std::move(rows), gates);
    lease_short(sent.lease_short);
    flight.add(sent.round, std::move(sent.rows), view, std::move(sent.outcomes));
  }

  // at_least_once: books the reports that came within `wait`, then settles every row whose
  // shard's earlier rows are settled too. A row waits for its report as long as it takes
  // (librdkafka retries until Kafka answers); only a stop gives up, after the grace.
  void settle_ready(std::chrono::milliseconds wait) {
    const bool came = book_reports(wait) > 0;
    const auto now = clock::now();
    if (came || flight.pending() == 0) last_report = now;
    if (now - last_report > cfg.lease_ttl) {
      on_slow(flight.topics());
      last_report = now;
    }
    // Few large settles (a DELETE's commit costs the same for 10 rows as for 10,000), but at most
    // 10 ms late: an acknowledged row holds its shard's next rows (and risks a re-send).
    const std::size_t in = flight.rows() - flight.pending();
    if (in == 0 || (flight.pending() > 0 && in < round_rows() / 2 && now - last_settle < 10ms)) {
      return;
    }
    const auto busy = flight.shard_count();
    auto ready = flight.take_ready();
    if (ready.rows.empty()) return;
    if (flight.shard_count() < busy) idle_since.reset();  // shards to claim again
    last_settle = now;
    health.on_late_reports(publisher->late_reports());
    settle(ready.rows, ready.outcomes, ready.view);
  }

  // Books the delivery reports that came within `wait` in the pipeline's book; how many.
  std::size_t book_reports(std::chrono::milliseconds wait) {
    auto reports = publisher->reports(wait);
    for (auto& r : reports) flight.report(r.round, r.index, std::move(r.outcome));
    return reports.size();
  }

  // The rows of a full round: batch_size per shard owned.
  [[nodiscard]] std::size_t round_rows() const {
    return static_cast<std::size_t>(cfg.batch_size) *
           std::max<std::size_t>(leases.view().epochs.size(), 1);
  }

  // A round's gates: strict durability; the leases, checked before every hand-over (a relay
  // that stalled may have lost the shard) and commit (else the next owner may have fenced it).
  relay::RoundGates round_gates(const relay::LeaseView& v, const std::vector<relay::Row>& rows) {
    relay::RoundGates g{{}, v.until(delivery_budget(cfg)), v.until(delivery_budget(cfg) / 3)};
    for (const auto& t : relay::topics_of(rows)) {
      if (auto why = gate.hold_reason(t)) g.held.emplace(t, *why);
    }
    return g;
  }
  void on_slow(const std::set<std::string>& topics) {
    health.broker(false, fmt::format("no acknowledgement for {} ms (broker unreachable or "
                                     "slow); waiting for it",
                                     cfg.lease_ttl.count()));
    health.on_isr_shortfalls(gate.isr_shortfalls(topics));
  }
  void lease_short(std::size_t rows) {
    if (rows == 0) return;
    spdlog::warn(
        "leases: {} claimed row(s) not sent: the leases would expire before Kafka could "
        "acknowledge them (the relay stalled, or Kafka was slow to take them); they go out "
        "in a later round",
        rows);
    leases.expedite();
  }

  // Deletes the acknowledged rows, moves the refused ones to outbox_dead and schedules the
  // retries, fenced by `view` (the epochs the rows were claimed at).
  void settle(const std::vector<relay::Row>& rows, const std::vector<relay::Outcome>& outcomes,
              const relay::LeaseView& view) {
    const double now_epoch =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    const auto plan = relay::classify_round(rows, outcomes, now_epoch);
    if (!plan.delete_ids.empty()) relay::fault_point("after_publish");
    const auto counts = store.settle(db(), view, plan, [&](int attempts) {
      return detail::backoff(attempts, cfg.retry_backoff_min, cfg.retry_backoff_max, rng);
    });
    if (counts.deleted != plan.delete_ids.size()) {
      // Another relay took over some shard: its rows stay for the new owner.
      spdlog::warn(
          "leases: a shard was taken over during a batch; {} acknowledged row(s) "
          "left for the new owner ({})",
          plan.delete_ids.size() - counts.deleted,
          eos() ? "it deletes them when it takes the lane, without sending them again"
                : "they will be re-sent; the inbox absorbs them");
      leases.expedite();
    }
    health.on_settle(plan, counts);
    health.db_ok();  // every statement of a round went through
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

  void flush(std::chrono::milliseconds wait) {
    if (publisher) publisher->flush(wait);
    if (lanes) lanes->flush(wait);
  }

  void release() noexcept {
    if (session && session->is_open()) leases.release(db());
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
    if (m.eos()) topics.merge(m.start_exactly_once());
    m.gate.check_at_start(topics);
    m.health.on_weak_topics(m.gate.weak_topics());
  } catch (const pqxx::broken_connection& e) {
    detail::throw_connect_failure(e.what(), m.cfg.database_url);  // config_error or transient
  }
}

Relay::~Relay() {
  m_impl->release();
  m_impl->flush(5s);
}

void Relay::run(std::stop_token stop) {
  auto& m = *m_impl;
  spdlog::info(
      "relay {}: publishing schema {} (batch {}, lease ttl {} ms, probe {} ms, poll {} ms{}, {})",
      m.cfg.name, m.cfg.schema, m.cfg.batch_size, m.cfg.lease_ttl.count(),
      m.cfg.probe_interval.count(), m.cfg.poll_interval.count(),
      m.cfg.listen_notify ? ", listen" : "", m.eos() ? "exactly once" : "at least once");
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
    m.finish_in_flight();
  } catch (const std::exception& e) {
    spdlog::warn("stopping: the rows in flight were not settled ({}); they are sent again",
                 e.what());
  }
  m.release();
  m.flush(5s);
  spdlog::info("relay {}: stopped", m.cfg.name);
}

RelayStats Relay::stats() const {
  return m_impl->health.snapshot();
}

std::string Relay::metrics_text() const {
  return m_impl->health.metrics_text();
}

}  // namespace txbox

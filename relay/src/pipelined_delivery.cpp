#include "pipelined_delivery.hpp"

#include <spdlog/spdlog.h>

#include "pipeline_pacing.hpp"

namespace txbox::relay {

using namespace std::chrono_literals;

namespace {
// What becomes of acknowledged rows a shard's new owner took over.
constexpr std::string_view k_fenced_fate = "they will be re-sent; the inbox absorbs them";
}  // namespace

PipelinedDelivery::PipelinedDelivery(RoundContext& ctx)
    : m_ctx(ctx),
      m_stop_grace(producer_options(ctx.cfg).stop_grace),
      m_publisher(producer_options(ctx.cfg)) {}

void PipelinedDelivery::replace_failed_producer() {
  if (m_flight.empty() && m_publisher.replace_if_fatal()) m_ctx.health.on_producer_replaced();
}

std::int64_t PipelinedDelivery::queue_length() const {
  return m_publisher.queue_length();
}

// Settle what Kafka acknowledged, claim the next round while earlier ones are in flight,
// and wait only when there is nothing to claim.
void PipelinedDelivery::step(const std::stop_token& stop) {
  settle_ready(0ms);
  give_up_if_fatal();
  if (claim_round(stop)) return;
  if (m_flight.empty()) {
    wait_for_work(stop);
    return;
  }
  settle_ready(5ms);
  if (pacing::abandon_due(m_gave_up, clock::now())) m_flight.abandon();  // a report never came
}

void PipelinedDelivery::give_up_if_fatal() {
  if (m_publisher.fatal() && !m_flight.empty() && !m_gave_up) {
    m_publisher.give_up();  // its reports fail the rows: settled as transient failures
    m_gave_up = clock::now();
  }
}

bool PipelinedDelivery::claim_round(const std::stop_token& stop) {
  if (!may_claim()) return false;
  // Only shards with nothing in flight: a claim takes a shard's head, so a shard's next
  // rows never overtake one of its rows still in flight (nor one that committed late).
  // Nor draining ones: held beyond the fair share only until their rows have settled.
  const LeaseView view = claimable(m_ctx.leases.view(), m_flight.shards());
  if (view.empty()) return false;
  auto rows = m_ctx.store.claim(m_ctx.db(), view, m_ctx.cfg.max_batch_bytes - m_flight.bytes());
  m_ctx.session().claimed(!rows.empty());
  if (rows.empty()) {
    if (!m_idle_since) m_idle_since = clock::now();
    return false;
  }
  m_idle_since.reset();
  if (m_ctx.standbys_have(rows, stop)) stream(std::move(rows));
  return true;
}

// Room in the pipeline, a producer that can deliver, Kafka there, lease time, and (after an
// empty claim) signs of new rows: the wake-up is asked last, as it may block for one probe.
bool PipelinedDelivery::may_claim() {
  return pacing::room_for_round(m_flight.rows(), m_flight.bytes(), round_rows(),
                                m_ctx.cfg.max_batch_bytes) &&
         !m_gave_up && !m_publisher.fatal() && m_ctx.round_possible() &&
         pacing::claim_due(m_idle_since, [this] { return m_ctx.session().work_due(); });
}

void PipelinedDelivery::wait_for_work(const std::stop_token& stop) {
  m_gave_up.reset();
  if (m_ctx.round_possible_or_pause(stop)) m_ctx.idle(stop);
  m_idle_since.reset();  // waited for work: claim again
}

// Hands a claimed round to Kafka and books it in flight; its rows are settled as their
// reports come in (settle_ready), while the next rounds are claimed.
void PipelinedDelivery::stream(std::vector<Row> rows) {
  const LeaseView view = m_ctx.leases.view();  // the round's claim and settle run under it
  m_ctx.check_durability(rows);
  const RoundGates gates = m_ctx.round_gates(view, rows);
  auto sent = m_publisher.stream(std::move(rows), gates);
  m_ctx.lease_short(sent.lease_short);
  m_flight.add(sent.round, std::move(sent.rows), view, std::move(sent.outcomes));
}

// Books the reports that came within `wait`, then settles every row whose shard's earlier
// rows are settled too. A row waits for its report as long as it takes (librdkafka retries
// until Kafka answers); only a stop gives up, after the grace.
void PipelinedDelivery::settle_ready(std::chrono::milliseconds wait) {
  const bool came = book_reports(wait) > 0;
  const auto now = clock::now();
  m_last_report = pacing::report_mark(m_last_report, came, m_flight.pending(), now);
  if (pacing::reports_stalled(m_last_report, now, m_ctx.cfg.lease_ttl)) {
    m_ctx.on_slow(m_flight.topics());
    m_last_report = now;
  }
  if (!pacing::settle_due(m_flight.rows(), m_flight.pending(), round_rows(), now, m_last_settle)) {
    return;
  }
  const auto busy = m_flight.shard_count();
  auto ready = m_flight.take_ready();
  if (ready.rows.empty()) return;
  if (m_flight.shard_count() < busy) m_idle_since.reset();  // shards to claim again
  m_last_settle = now;
  m_ctx.health.on_late_reports(m_publisher.late_reports());
  m_ctx.settle(ready.rows, ready.outcomes, ready.view, k_fenced_fate);
}

// Books the delivery reports that came within `wait` in the pipeline's book; how many.
std::size_t PipelinedDelivery::book_reports(std::chrono::milliseconds wait) {
  auto reports = m_publisher.reports(wait);
  for (auto& r : reports) m_flight.report(r.round, r.index, std::move(r.outcome));
  return reports.size();
}

std::size_t PipelinedDelivery::round_rows() const {
  return pacing::round_rows(m_ctx.cfg.batch_size, m_ctx.leases.view().epochs.size());
}

// At stop: the rows in flight get the stop grace for their reports, then are given up; what
// came is settled (when the database is there).
void PipelinedDelivery::finish() {
  if (m_flight.empty()) return;
  const auto until = clock::now() + m_stop_grace;
  while (pacing::stop_grace_left(m_flight.pending(), clock::now(), until)) book_reports(50ms);
  if (m_flight.pending() > 0) {
    spdlog::warn("stopping: giving up on {} unacknowledged message(s) after {} ms",
                 m_flight.pending(), m_stop_grace.count());
    m_publisher.give_up();
    book_reports(100ms);
    m_flight.abandon();
  }
  if (!m_ctx.connected()) return;
  auto ready = m_flight.take_ready();
  if (!ready.rows.empty()) m_ctx.settle(ready.rows, ready.outcomes, ready.view, k_fenced_fate);
}

void PipelinedDelivery::flush(std::chrono::milliseconds wait) {
  m_publisher.flush(wait);
}

}  // namespace txbox::relay

// txboxctl status: the report as text and JSON (see status_render.hpp).
#include "status_render.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <utility>

#include "output.hpp"

namespace txbox::ctl {
namespace {

using json = nlohmann::json;

// "relay-x", "relay-x (expired)", or "" when nobody owns the shard.
std::string holder(const std::map<int, Lease>& leases, int shard) {
  const auto it = leases.find(shard);
  if (it == leases.end() || it->second.owner.empty()) return "";
  return it->second.expires_in > 0 ? it->second.owner : it->second.owner + " (expired)";
}

// ---- text, one section each ----

void backlog_text(std::ostream& out, const StatusReport& r) {
  const Backlog& b = r.backlog;
  if (b.total == 0) {
    out << "Outbox backlog: empty\n";
    return;
  }
  if (b.exact) {
    out << fmt::format("Outbox backlog: {} pending in {} shard(s), {} retrying, oldest {}\n",
                       b.total, b.shards.size(), b.retrying, duration(b.oldest));
  } else {
    out << fmt::format(
        "Outbox backlog: about {} pending (estimated) in {} shard(s), oldest {}\n"
        "  (rows are counted up to {}, above that PostgreSQL's statistics are shown; per shard "
        "the first {} are counted, \"+\": more; {} of them retrying)\n",
        b.total, b.shards.size(), duration(b.oldest), k_exact_up_to, k_shard_sample, b.retrying);
  }
  Table t({"shard", "pending", "retrying", "oldest", "lease owner"},
          {true, true, true, true, false});
  for (const ShardBacklog& sb : b.shards) {
    const std::string owner = holder(r.leases, sb.shard);
    t.add({std::to_string(sb.shard), std::to_string(sb.pending) + (sb.exact ? "" : "+"),
           std::to_string(sb.retrying), duration(sb.oldest_age), owner.empty() ? "-" : owner});
  }
  t.print(out);
}

void leases_text(std::ostream& out, const StatusReport& r) {
  const LeaseSummary summary = summarize_leases(r.leases);
  out << fmt::format("\nLeases: {} of {} shards held", summary.held, r.leases.size());
  if (!summary.unowned.empty()) out << fmt::format("; free: {}", ranges(summary.unowned));
  out << '\n';
  Table t({"owner", "state", "shards", "expires in", "shard list"},
          {false, false, true, false, false});
  for (const LeaseGroup& g : summary.groups) {
    const std::string expiry =
        g.expired ? duration(-g.max_in) + " ago"
                  : (g.min_in == g.max_in ? duration(g.min_in)
                                          : duration(g.min_in) + " - " + duration(g.max_in));
    t.add({g.owner, g.expired ? "expired" : "held", std::to_string(g.shards.size()), expiry,
           ranges(g.shards)});
  }
  if (!t.empty()) t.print(out);
}

void relays_text(std::ostream& out, const StatusReport& r) {
  const auto live = std::count_if(r.relays.begin(), r.relays.end(),
                                  [](const RelaySeen& relay) { return relay.live; });
  out << fmt::format("\nRelays: {} live (seen within {})\n", live,
                     duration(static_cast<double>(r.lease_ttl_ms) / 1000.0));
  Table t({"relay", "last seen", "live"}, {false, true, false});
  for (const RelaySeen& relay : r.relays) {
    t.add({relay.name, duration(relay.seen_age) + " ago", relay.live ? "yes" : "no"});
  }
  if (!t.empty()) t.print(out);
}

template <typename Row>
std::int64_t total_count(const std::vector<Row>& rows) {
  std::int64_t n = 0;
  for (const Row& row : rows) n += row.count;
  return n;
}

void dead_text(std::ostream& out, const StatusReport& r) {
  out << fmt::format("\nDead letters: outbox {}, inbox {}\n", total_count(r.outbox_dead),
                     total_count(r.inbox_dead));
  Table outbox({"topic", "dead", "last failed"}, {false, true, false});
  for (const OutboxDeadTopic& d : r.outbox_dead) {
    outbox.add({d.topic, std::to_string(d.count), d.last_failed_at});
  }
  if (!outbox.empty()) outbox.print(out);
  Table inbox({"consumer", "dead", "requeued", "last failed"}, {false, true, true, false});
  for (const InboxDeadConsumer& d : r.inbox_dead) {
    inbox.add({d.consumer, std::to_string(d.count), std::to_string(d.requeued), d.last_failed_at});
  }
  if (!inbox.empty()) inbox.print(out);
}

void offsets_text(std::ostream& out, const StatusReport& r) {
  out << "\nInbox offsets:";
  if (r.inbox_offsets.empty()) {
    out << " none stored\n";
    return;
  }
  out << '\n';
  Table t({"consumer", "topic", "partition", "next offset", "updated"},
          {false, false, true, true, true});
  for (const InboxOffset& o : r.inbox_offsets) {
    t.add({o.consumer, o.topic, std::to_string(o.partition), std::to_string(o.next_offset),
           duration(o.updated_age) + " ago"});
  }
  t.print(out);
}

// ---- JSON, one part each ----

json outbox_json(const StatusReport& r) {
  const Backlog& b = r.backlog;
  json shards = json::array();
  for (const ShardBacklog& sb : b.shards) {
    const auto lease = r.leases.find(sb.shard);
    const bool owned = !holder(r.leases, sb.shard).empty();
    shards.push_back({{"shard", sb.shard},
                      {"pending", sb.pending},
                      {"pending_exact", sb.exact},
                      {"retrying", sb.retrying},
                      {"oldest_age_s", sb.oldest_age},
                      {"owner", owned ? json(lease->second.owner) : json(nullptr)}});
  }
  return {{"pending", b.total},
          {"pending_exact", b.exact},
          {"exact_up_to", k_exact_up_to},
          {"retrying", b.retrying},
          {"oldest_pending_age_s", std::isnan(b.oldest) ? json(nullptr) : json(b.oldest)},
          {"shards", shards}};
}

json leases_json(const StatusReport& r) {
  const LeaseSummary summary = summarize_leases(r.leases);
  json owners = json::array();
  for (const LeaseGroup& g : summary.groups) {
    owners.push_back({{"owner", g.owner},
                      {"state", g.expired ? "expired" : "held"},
                      {"shards", g.shards},
                      {"expires_in_s_min", g.min_in},
                      {"expires_in_s_max", g.max_in}});
  }
  return {{"held_shards", summary.held}, {"unowned_shards", summary.unowned}, {"owners", owners}};
}

json relays_json(const StatusReport& r) {
  json rows = json::array();
  std::size_t live = 0;
  for (const RelaySeen& relay : r.relays) {
    live += relay.live;
    rows.push_back({{"name", relay.name},
                    {"seen_at", relay.seen_at},
                    {"seen_age_s", relay.seen_age},
                    {"live", relay.live}});
  }
  return {{"live", live}, {"lease_ttl_ms", r.lease_ttl_ms}, {"rows", rows}};
}

json dead_json(const StatusReport& r) {
  json by_topic = json::array();
  for (const OutboxDeadTopic& d : r.outbox_dead) {
    by_topic.push_back(
        {{"topic", d.topic}, {"count", d.count}, {"last_failed_at", d.last_failed_at}});
  }
  json by_consumer = json::array();
  for (const InboxDeadConsumer& d : r.inbox_dead) {
    by_consumer.push_back({{"consumer", d.consumer},
                           {"count", d.count},
                           {"requeued", d.requeued},
                           {"last_failed_at", d.last_failed_at}});
  }
  return {{"outbox", total_count(r.outbox_dead)},
          {"outbox_by_topic", by_topic},
          {"inbox", total_count(r.inbox_dead)},
          {"inbox_by_consumer", by_consumer}};
}

json offsets_json(const StatusReport& r) {
  json rows = json::array();
  for (const InboxOffset& o : r.inbox_offsets) {
    rows.push_back({{"consumer", o.consumer},
                    {"topic", o.topic},
                    {"partition", o.partition},
                    {"next_offset", o.next_offset},
                    {"updated_at", o.updated_at},
                    {"updated_age_s", o.updated_age}});
  }
  return rows;
}

}  // namespace

LeaseSummary summarize_leases(const std::map<int, Lease>& leases) {
  std::map<std::pair<std::string, bool>, LeaseGroup> groups;  // (owner, expired)
  LeaseSummary summary;
  for (const auto& [shard, lease] : leases) {
    if (lease.owner.empty()) {
      summary.unowned.push_back(shard);
      continue;
    }
    const bool expired = lease.expires_in <= 0;
    LeaseGroup& g = groups[{lease.owner, expired}];
    if (g.shards.empty()) {
      g.owner = lease.owner;
      g.expired = expired;
      g.min_in = g.max_in = lease.expires_in;
    } else {
      g.min_in = std::min(g.min_in, lease.expires_in);
      g.max_in = std::max(g.max_in, lease.expires_in);
    }
    g.shards.push_back(shard);
  }
  for (auto& entry : groups) {
    if (!entry.second.expired) summary.held += entry.second.shards.size();
    summary.groups.push_back(std::move(entry.second));
  }
  return summary;
}

std::string status_text(const StatusReport& report) {
  std::ostringstream out;
  out << fmt::format("txbox status: database {}, schema {} (version {}), at {}\n\n", report.dbname,
                     report.schema, report.schema_version, report.at);
  out << describe(report.replication) << "\n\n";
  backlog_text(out, report);
  leases_text(out, report);
  relays_text(out, report);
  dead_text(out, report);
  offsets_text(out, report);
  return out.str();
}

json status_json(const StatusReport& report) {
  return {{"schema", report.schema},
          {"schema_version", report.schema_version},
          {"at", report.at},
          {"outbox", outbox_json(report)},
          {"leases", leases_json(report)},
          {"relays", relays_json(report)},
          {"dead", dead_json(report)},
          {"inbox_offsets", offsets_json(report)},
          {"server", to_json(report.replication)}};
}

}  // namespace txbox::ctl

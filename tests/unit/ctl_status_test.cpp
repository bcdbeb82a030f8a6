// txboxctl status's renderers (ctl/src/status_render.hpp) on report values: no database.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "status_render.hpp"

namespace {

using txbox::ctl::Lease;
using txbox::ctl::StatusReport;
using json = nlohmann::json;

// A schema with nothing in it: 64 free shards, as `txboxctl status` reads it.
StatusReport empty_report() {
  StatusReport r;
  r.dbname = "orders";
  r.schema = "txbox";
  r.schema_version = 7;
  r.at = "2025-05-01T09:30:12.004211Z";
  r.lease_ttl_ms = 10'000;
  r.replication.server = "127.0.0.1:5432";
  for (int shard = 0; shard < 64; ++shard) r.leases[shard] = Lease{"", -1};
  return r;
}

// Two relays (one gone), a backlog in three shards, dead letters and offsets.
StatusReport busy_report() {
  StatusReport r = empty_report();
  r.replication.standbys = std::vector<txbox::ctl::StandbyRow>{};
  r.leases[4] = Lease{"relay-x", 300.0};
  r.leases[10] = Lease{"relay-x", 360.0};
  r.leases[11] = Lease{"relay-x", 330.0};
  r.leases[20] = Lease{"relay-gone", -7200.0};
  r.backlog.shards = {{4, 3, 0, 11'000.0, true}, {11, 5, 2, 185.0, true}, {20, 1, 0, 0.25, true}};
  r.backlog.total = 9;
  r.backlog.retrying = 2;
  r.backlog.oldest = 11'000.0;
  r.relays = {{"relay-gone", "2025-05-01T08:30:12.000000Z", 3600.0, false},
              {"relay-x", "2025-05-01T09:30:11.500000Z", 0.5, true}};
  r.outbox_dead = {{"orders", 1, "2021-01-01T00:00:00.000000Z"},
                   {"payments", 12, "2021-02-01T00:00:00.000000Z"}};
  r.inbox_dead = {{"audit", 1, 0, "2022-01-03T00:00:00.000000Z"},
                  {"projector", 2, 1, "2022-01-02T00:00:00.000000Z"}};
  r.inbox_offsets = {{"projector", "orders", 0, 42, "2025-05-01T07:30:12.000000Z", 7200.0},
                     {"projector", "orders", 1, 7, "2025-05-01T04:30:12.000000Z", 18'000.0}};
  return r;
}

TEST(CtlStatus, EmptySchemaText) {
  EXPECT_EQ(txbox::ctl::status_text(empty_report()),
            "txbox status: database orders, schema txbox (version 7), at "
            "2025-05-01T09:30:12.004211Z\n"
            "\n"
            "Server: 127.0.0.1:5432, primary; standbys: not shown (GRANT pg_monitor to see them)\n"
            "\n"
            "Outbox backlog: empty\n"
            "\n"
            "Leases: 0 of 64 shards held; free: 0-63\n"
            "\n"
            "Relays: 0 live (seen within 10.0s)\n"
            "\n"
            "Dead letters: outbox 0, inbox 0\n"
            "\n"
            "Inbox offsets: none stored\n");
}

TEST(CtlStatus, BusySchemaText) {
  EXPECT_EQ(txbox::ctl::status_text(busy_report()),
            "txbox status: database orders, schema txbox (version 7), at "
            "2025-05-01T09:30:12.004211Z\n"
            "\n"
            "Server: 127.0.0.1:5432, primary; standbys: none\n"
            "\n"
            "Outbox backlog: 9 pending in 3 shard(s), 2 retrying, oldest 3h03m\n"
            "  shard  pending  retrying  oldest  lease owner\n"
            "      4        3         0   3h03m  relay-x\n"
            "     11        5         2   3m05s  relay-x\n"
            "     20        1         0   250ms  relay-gone (expired)\n"
            "\n"
            "Leases: 3 of 64 shards held; free: 0-3, 5-9, 12-19, 21-63\n"
            "  owner       state    shards  expires in     shard list\n"
            "  relay-gone  expired       1  2h00m ago      20\n"
            "  relay-x     held          3  5m00s - 6m00s  4, 10-11\n"
            "\n"
            "Relays: 1 live (seen within 10.0s)\n"
            "  relay       last seen  live\n"
            "  relay-gone  1h00m ago  no\n"
            "  relay-x     500ms ago  yes\n"
            "\n"
            "Dead letters: outbox 13, inbox 3\n"
            "  topic     dead  last failed\n"
            "  orders       1  2021-01-01T00:00:00.000000Z\n"
            "  payments    12  2021-02-01T00:00:00.000000Z\n"
            "  consumer   dead  requeued  last failed\n"
            "  audit         1         0  2022-01-03T00:00:00.000000Z\n"
            "  projector     2         1  2022-01-02T00:00:00.000000Z\n"
            "\n"
            "Inbox offsets:\n"
            "  consumer   topic   partition  next offset    updated\n"
            "  projector  orders          0           42  2h00m ago\n"
            "  projector  orders          1            7  5h00m ago\n");
}

TEST(CtlStatus, EstimatedBacklogSaysHowItCounted) {
  StatusReport r = empty_report();
  r.backlog.exact = false;
  r.backlog.shards = {{7, 1000, 10, 90.0, false}, {8, 12, 0, 30.0, true}};
  r.backlog.total = 2'500'000;
  r.backlog.retrying = 10;
  r.backlog.oldest = 90.0;
  const std::string text = txbox::ctl::status_text(r);
  EXPECT_NE(text.find("Outbox backlog: about 2500000 pending (estimated) in 2 shard(s), oldest "
                      "1m30s\n  (rows are counted up to 100000, above that PostgreSQL's "
                      "statistics are shown; per shard the first 1000 are counted, \"+\": "
                      "more; 10 of them retrying)\n"
                      "  shard  pending  retrying  oldest  lease owner\n"
                      "      7    1000+        10   1m30s  -\n"
                      "      8       12         0   30.0s  -\n"),
            std::string::npos)
      << text;
}

TEST(CtlStatus, EmptySchemaJson) {
  const json j = txbox::ctl::status_json(empty_report());
  EXPECT_EQ(j["schema"], "txbox");
  EXPECT_EQ(j["schema_version"], 7);
  EXPECT_EQ(j["at"], "2025-05-01T09:30:12.004211Z");
  EXPECT_EQ(j["outbox"]["pending"], 0);
  EXPECT_EQ(j["outbox"]["pending_exact"], true);
  EXPECT_EQ(j["outbox"]["exact_up_to"], 100'000);
  EXPECT_TRUE(j["outbox"]["oldest_pending_age_s"].is_null());
  EXPECT_EQ(j["outbox"]["shards"], json::array());
  EXPECT_EQ(j["leases"]["held_shards"], 0);
  EXPECT_EQ(j["leases"]["unowned_shards"].size(), 64u);
  EXPECT_EQ(j["leases"]["owners"], json::array());
  EXPECT_EQ(j["relays"], (json{{"live", 0}, {"lease_ttl_ms", 10'000}, {"rows", json::array()}}));
  EXPECT_EQ(j["dead"], (json{{"outbox", 0},
                             {"outbox_by_topic", json::array()},
                             {"inbox", 0},
                             {"inbox_by_consumer", json::array()}}));
  EXPECT_EQ(j["inbox_offsets"], json::array());
  EXPECT_EQ(j["server"],
            (json{{"address", "127.0.0.1:5432"}, {"in_recovery", false}, {"standbys", nullptr}}));
  EXPECT_EQ(j.size(), 9u);
}

TEST(CtlStatus, BusySchemaJson) {
  const json j = txbox::ctl::status_json(busy_report());
  EXPECT_EQ(j["outbox"]["pending"], 9);
  EXPECT_EQ(j["outbox"]["retrying"], 2);
  EXPECT_EQ(j["outbox"]["oldest_pending_age_s"], 11'000.0);
  ASSERT_EQ(j["outbox"]["shards"].size(), 3u);
  EXPECT_EQ(j["outbox"]["shards"][1], (json{{"shard", 11},
                                            {"pending", 5},
                                            {"pending_exact", true},
                                            {"retrying", 2},
                                            {"oldest_age_s", 185.0},
                                            {"owner", "relay-x"}}));
  // An expired lease's owner is named as stored (the text adds "(expired)").
  EXPECT_EQ(j["outbox"]["shards"][2]["owner"], "relay-gone");
  EXPECT_EQ(j["leases"]["held_shards"], 3);
  EXPECT_EQ(j["leases"]["owners"][1], (json{{"owner", "relay-x"},
                                            {"state", "held"},
                                            {"shards", {4, 10, 11}},
                                            {"expires_in_s_min", 300.0},
                                            {"expires_in_s_max", 360.0}}));
  EXPECT_EQ(j["leases"]["owners"][0]["state"], "expired");
  EXPECT_EQ(j["relays"]["live"], 1);
  EXPECT_EQ(j["relays"]["rows"][1], (json{{"name", "relay-x"},
                                          {"seen_at", "2025-05-01T09:30:11.500000Z"},
                                          {"seen_age_s", 0.5},
                                          {"live", true}}));
  EXPECT_EQ(j["dead"]["outbox"], 13);
  EXPECT_EQ(j["dead"]["inbox"], 3);
  EXPECT_EQ(j["dead"]["inbox_by_consumer"][1],
            (json{{"consumer", "projector"},
                  {"count", 2},
                  {"requeued", 1},
                  {"last_failed_at", "2022-01-02T00:00:00.000000Z"}}));
  EXPECT_EQ(j["inbox_offsets"][0], (json{{"consumer", "projector"},
                                         {"topic", "orders"},
                                         {"partition", 0},
                                         {"next_offset", 42},
                                         {"updated_at", "2025-05-01T07:30:12.000000Z"},
                                         {"updated_age_s", 7200.0}}));
  EXPECT_EQ(j["server"]["standbys"], json::array());
}

TEST(CtlStatus, LeasesGroupByOwnerAndState) {
  std::map<int, Lease> leases;
  leases[0] = Lease{"b", 5.0};
  leases[1] = Lease{"a", -2.0};
  leases[2] = Lease{"", -1};
  leases[3] = Lease{"a", 9.0};
  leases[4] = Lease{"a", 1.0};
  leases[5] = Lease{"a", -1.0};  // never expires (infinity): shown as expired, as stored
  const auto summary = txbox::ctl::summarize_leases(leases);
  EXPECT_EQ(summary.unowned, std::vector<int>{2});
  EXPECT_EQ(summary.held, 3u);
  ASSERT_EQ(summary.groups.size(), 3u);
  EXPECT_EQ(summary.groups[0].owner, "a");
  EXPECT_FALSE(summary.groups[0].expired);
  EXPECT_EQ(summary.groups[0].shards, (std::vector<int>{3, 4}));
  EXPECT_EQ(summary.groups[0].min_in, 1.0);
  EXPECT_EQ(summary.groups[0].max_in, 9.0);
  EXPECT_EQ(summary.groups[1].owner, "a");
  EXPECT_TRUE(summary.groups[1].expired);
  EXPECT_EQ(summary.groups[1].shards, (std::vector<int>{1, 5}));
  EXPECT_EQ(summary.groups[1].min_in, -2.0);
  EXPECT_EQ(summary.groups[1].max_in, -1.0);
  EXPECT_EQ(summary.groups[2].owner, "b");
}

}  // namespace

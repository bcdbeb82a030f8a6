// txboxctl's dead-letter commands against a real PostgreSQL (outbox and inbox: requeue, show,
// list): the built binary, run as an operator runs it. See also txboxctl_pgtest.cpp.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <string>
#include <thread>

#include "harness.hpp"
#include "txbox/outbox.hpp"
#include "txbox/uuid.hpp"

#include "txbox/detail/pq.hpp"
#include "txboxctl_fixture.hpp"

namespace pq = txbox::pq;

namespace {

using namespace txbox::test::ctl;

// ---------------------------------------------------------------- outbox dead letters

TEST_F(Txboxctl, OutboxDeadRequeueMovesTheRowBackWithItsMessageId) {
  const std::string payload("bin\0ary\xff\x01", 9);
  const std::string mid = txbox::uuid_v7().str();
  const long id = add_outbox_dead(mid, "orders", "alpha", payload);
  const long other = add_outbox_dead(txbox::uuid_v7().str(), "orders", std::nullopt, "{\"a\":1}");

  // show: binary payload as base64, text as text, headers as JSON.
  json j;
  ASSERT_EQ(run_json("outbox dead show " + std::to_string(id), &j), 0);
  EXPECT_EQ(j["message_id"], mid);
  EXPECT_EQ(j["key"], "alpha");
  EXPECT_EQ(j["payload_encoding"], "base64");
  EXPECT_EQ(j["payload"], "YmluAGFyef8B");
  EXPECT_EQ(j["payload_size"], 9);
  EXPECT_EQ(j["headers"][0], json::array({"ce_type", "OrderPlaced"}));
  ASSERT_EQ(run_json("outbox dead show " + std::to_string(other), &j), 0);
  EXPECT_EQ(j["payload_encoding"], "utf-8");
  EXPECT_EQ(j["payload"], "{\"a\":1}");
  EXPECT_TRUE(j["key"].is_null());
  std::string out;
  ASSERT_EQ(run("outbox dead show " + std::to_string(id), &out), 0) << out;
  EXPECT_NE(out.find("binary"), std::string::npos) << out;
  EXPECT_NE(out.find("traceparent"), std::string::npos) << out;

  ASSERT_EQ(run_json("outbox dead list", &j), 0);
  EXPECT_EQ(j["total"], 2);
  EXPECT_EQ(j["rows"][0]["id"], id);
  EXPECT_EQ(j["rows"][0]["error"], "Broker: Message size too large");

  ASSERT_EQ(run("outbox dead requeue " + std::to_string(id), &out), 0) << out;
  EXPECT_NE(out.find("requeued 1 message"), std::string::npos) << out;

  auto n = std::make_unique<pqxx::nontransaction>(*conn_);
  const auto r = pq::exec1(
      *n,
      "SELECT message_id::text, topic, key, payload, headers::text, "
      "created_at = '2020-01-02T03:04:05Z', attempts, shard = hashtext('alpha') & 63 FROM " +
          schema_ + ".outbox");
  EXPECT_EQ(r[0].as<std::string>(), mid);
  EXPECT_EQ(r[1].as<std::string>(), "orders");
  EXPECT_EQ(r[2].as<std::string>(), "alpha");
  EXPECT_EQ(pq::bytes_of(r[3]), payload);
  EXPECT_EQ(json::parse(r[4].as<std::string>()),
            json::parse(R"([["ce_type","OrderPlaced"],["traceparent","00-ab-cd-01"]])"));
  EXPECT_TRUE(r[5].as<bool>()) << "created_at kept";
  EXPECT_EQ(r[6].as<int>(), 0) << "a fresh start for the relay";
  EXPECT_TRUE(r[7].as<bool>());
  n.reset();
  EXPECT_EQ(
      count("SELECT count(*) FROM " + schema_ + ".outbox_dead WHERE id = " + std::to_string(id)),
      0);
  EXPECT_EQ(count("SELECT count(*) FROM " + schema_ + ".outbox_dead"), 1);

  // --all --topic moves only that topic, in batches.
  add_outbox_dead(txbox::uuid_v7().str(), "payments", "p", "1");
  add_outbox_dead(txbox::uuid_v7().str(), "payments", "p", "2");
  ASSERT_EQ(run_json("outbox dead requeue --all --topic payments", &j), 0);
  EXPECT_EQ(j["requeued"], 2);
  EXPECT_EQ(count("SELECT count(*) FROM " + schema_ + ".outbox WHERE topic = 'payments'"), 2);
  EXPECT_EQ(count("SELECT count(*) FROM " + schema_ + ".outbox_dead"), 1);
  // Requeued in dead-letter order: the key's messages keep their order.
  EXPECT_EQ(count("SELECT count(*) FROM " + schema_ + ".outbox a, " + schema_ +
                  ".outbox b WHERE a.payload = '1' AND b.payload = '2' AND a.id < b.id"),
            1);
  ASSERT_EQ(run_json("outbox dead requeue --all", &j), 0);
  EXPECT_EQ(j["requeued"], 1);
  EXPECT_EQ(count("SELECT count(*) FROM " + schema_ + ".outbox_dead"), 0);
  EXPECT_EQ(run("outbox dead requeue", &out), 3) << out;
  EXPECT_EQ(run("outbox dead requeue 1 --all", &out), 3) << out;
}

TEST_F(Txboxctl, OutboxDeadRequeueOfAMissingIdFailsAndChangesNothing) {
  const long a = add_outbox_dead(txbox::uuid_v7().str(), "orders", "k", "a");
  const long b = add_outbox_dead(txbox::uuid_v7().str(), "orders", "k", "b");
  std::string out;
  EXPECT_EQ(
      run("outbox dead requeue " + std::to_string(a) + " 987654321 " + std::to_string(b), &out), 1)
      << out;
  EXPECT_NE(out.find("987654321"), std::string::npos) << out;
  EXPECT_NE(out.find("nothing was requeued"), std::string::npos) << out;
  EXPECT_EQ(count("SELECT count(*) FROM " + schema_ + ".outbox"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM " + schema_ + ".outbox_dead"), 2);
  EXPECT_EQ(run("outbox dead show 987654321", &out), 1) << out;
  EXPECT_NE(out.find("987654321"), std::string::npos) << out;
}

TEST_F(Txboxctl, OutboxDeadRequeueWaitsForAWriterOfTheSameKey) {
  const long id = add_outbox_dead(txbox::uuid_v7().str(), "orders", "busy-key", "dead");
  // A writer's transaction holds the key's lock (enqueue took it) and has not committed yet.
  pqxx::connection writer_conn(endpoints().pg);
  auto writer = std::make_unique<pqxx::work>(writer_conn);
  txbox::Outbox({.schema = schema_})
      .enqueue(*writer, {.topic = "orders", .key = "busy-key", .payload = "live"});
  txbox::test::Process requeue(
      {txbox::test::program("txboxctl"), "--database-url", endpoints().pg, "--schema", schema_,
       "outbox", "dead", "requeue", std::to_string(id)},
      "/tmp/" + schema_ + "_requeue.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  EXPECT_TRUE(requeue.running()) << "requeue should wait for the writer's key lock: "
                                 << requeue.output();
  writer->commit();
  EXPECT_EQ(requeue.wait(std::chrono::seconds(20)), 0) << requeue.output();
  // Commit order = id order for the key: the writer committed first, so its row comes first.
  EXPECT_EQ(count("SELECT count(*) FROM " + schema_ + ".outbox a, " + schema_ +
                  ".outbox b WHERE a.payload = 'live' AND b.payload = 'dead' AND a.id < b.id"),
            1);
  std::filesystem::remove("/tmp/" + schema_ + "_requeue.log");
}

// ---------------------------------------------------------------- inbox dead letters

TEST_F(Txboxctl, InboxDeadRequeueSetsRequeuedAt) {
  const long a1 = add_inbox_dead("projector", "m1", 10);
  const long a2 = add_inbox_dead("projector", "m2", 11);
  const long b1 = add_inbox_dead("audit", "m1", 10);
  auto requeued = [&](long id) {
    return count("SELECT count(*) FROM " + schema_ +
                 ".inbox_dead WHERE requeued_at IS NOT NULL "
                 "AND id = " +
                 std::to_string(id)) == 1;
  };
  std::string out;
  ASSERT_EQ(run("inbox dead requeue " + std::to_string(a1), &out), 0) << out;
  EXPECT_NE(out.find("requeued 1 message"), std::string::npos) << out;
  EXPECT_TRUE(requeued(a1));
  EXPECT_FALSE(requeued(a2));
  EXPECT_FALSE(requeued(b1));

  // --all needs --consumer and takes only that consumer's rows.
  EXPECT_EQ(run("inbox dead requeue --all", &out), 3) << out;
  json j;
  ASSERT_EQ(run_json("inbox dead requeue --all --consumer audit", &j), 0);
  EXPECT_EQ(j["requeued"], 1);
  EXPECT_TRUE(requeued(b1));
  EXPECT_FALSE(requeued(a2));

  // An id of another consumer, or a missing one, fails and changes nothing.
  EXPECT_EQ(run("inbox dead requeue --consumer audit " + std::to_string(a2), &out), 1) << out;
  EXPECT_NE(out.find(std::to_string(a2)), std::string::npos) << out;
  EXPECT_EQ(run("inbox dead requeue " + std::to_string(a2) + " 987654321", &out), 1) << out;
  EXPECT_NE(out.find("987654321"), std::string::npos) << out;
  EXPECT_FALSE(requeued(a2));

  ASSERT_EQ(run_json("inbox dead list --consumer projector", &j), 0);
  EXPECT_EQ(j["total"], 2);
  EXPECT_FALSE(j["rows"][0]["requeued_at"].is_null());
  EXPECT_TRUE(j["rows"][1]["requeued_at"].is_null());
  ASSERT_EQ(run_json("inbox dead show " + std::to_string(a2), &j), 0);
  EXPECT_EQ(j["consumer"], "projector");
  EXPECT_EQ(j["offset"], 11);
  EXPECT_EQ(j["key"], "k");
  EXPECT_EQ(j["payload"], "p");
}

}  // namespace

// The exactly_once progress record (relay/src/progress_log.hpp) and the lane of a shard: what
// a lane's next owner reads back is exactly what the last transaction published.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "progress_log.hpp"
#include "round.hpp"

namespace {

using txbox::relay::decode_progress;
using txbox::relay::encode_progress;
using txbox::relay::PublishedRow;

TEST(RelayProgress, ARecordReadsBackAsTheRowsItNamed) {
  const std::vector<PublishedRow> rows = {{1, "018f0000-0000-7000-8000-000000000001"},
                                          {9'007'199'254'740'993, "018f-b"}};
  const std::string v = encode_progress(3, "relay-a", rows);
  EXPECT_EQ(decode_progress(v), rows);
  EXPECT_NE(v.find("\"lane\":3"), std::string::npos) << v;
  EXPECT_NE(v.find("\"relay\":\"relay-a\""), std::string::npos) << v;
  EXPECT_TRUE(decode_progress(encode_progress(0, "r", {})).empty());
}

TEST(RelayProgress, AnUnreadableRecordThrowsRatherThanNamingNoRows) {
  for (const char* bad : {"", "{}", "not json", R"({"v":2,"rows":[]})", R"({"v":1,"rows":[[1]]})",
                          R"({"v":1,"rows":[["x","y"]]})"}) {
    EXPECT_THROW(decode_progress(bad), std::runtime_error) << bad;
  }
}

// Issue 25, defect 5: outboxes sharing a progress topic (relay.progress_topic). The reader
// took a partition's last record whatever its key: another outbox's.
TEST(RelayProgress, AScanOfASharedTopicFindsThisOutboxsLastRecordNotAnothers) {
  using txbox::relay::lane_key;
  using txbox::relay::legacy_progress_key;
  using txbox::relay::ProgressScan;
  EXPECT_EQ(lane_key("txbox-0190", 3), "txbox-0190-lane-3");  // the lane's transactional id
  ProgressScan scan(lane_key("txbox-a", 3), legacy_progress_key(3),
                    ProgressScan::legacy::maybe_own);
  EXPECT_FALSE(scan.found());
  scan.add(lane_key("txbox-a", 3), encode_progress(3, "r", {{1, "a1"}}));
  scan.add(lane_key("txbox-a", 3), encode_progress(3, "r", {{2, "a2"}}));
  scan.add(lane_key("txbox-b", 3), encode_progress(3, "r", {{2, "b2"}}));
  scan.add(lane_key("txbox-b", 3), "not even json: never read");
  EXPECT_TRUE(scan.found());
  EXPECT_EQ(scan.rows(), (std::vector<PublishedRow>{{2, "a2"}}));
  // A record of the previous version after it may be this outbox's: its rows are added.
  scan.add("lane-3", encode_progress(3, "r", {{3, "x3"}, {2, "a2"}}));
  EXPECT_EQ(scan.rows(), (std::vector<PublishedRow>{{2, "a2"}, {3, "x3"}}));
  EXPECT_THROW(scan.add("lane-3", "{}"), std::runtime_error);
}

TEST(RelayProgress, InItsOwnTopicARecordOfThePreviousVersionIsThisOutboxs) {
  using txbox::relay::ProgressScan;
  ProgressScan scan("txbox-a-lane-0", "lane-0", ProgressScan::legacy::own);
  scan.add("lane-0", encode_progress(0, "old relay", {{5, "a5"}}));
  EXPECT_TRUE(scan.found());
  EXPECT_EQ(scan.rows(), (std::vector<PublishedRow>{{5, "a5"}}));
  scan.add("txbox-a-lane-0", encode_progress(0, "new relay", {{6, "a6"}}));
  EXPECT_EQ(scan.rows(), (std::vector<PublishedRow>{{6, "a6"}}));
}

TEST(RelayProgress, EightLanesOfEightShards) {
  EXPECT_EQ(txbox::relay::k_lanes, 8);
  EXPECT_EQ(txbox::relay::lane_of(0), 0);
  EXPECT_EQ(txbox::relay::lane_of(7), 0);
  EXPECT_EQ(txbox::relay::lane_of(8), 1);
  EXPECT_EQ(txbox::relay::lane_of(63), 7);
}

}  // namespace

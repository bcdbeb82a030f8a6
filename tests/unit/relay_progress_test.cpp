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

TEST(RelayProgress, EightLanesOfEightShards) {
  EXPECT_EQ(txbox::relay::k_lanes, 8);
  EXPECT_EQ(txbox::relay::lane_of(0), 0);
  EXPECT_EQ(txbox::relay::lane_of(7), 0);
  EXPECT_EQ(txbox::relay::lane_of(8), 1);
  EXPECT_EQ(txbox::relay::lane_of(63), 7);
}

}  // namespace

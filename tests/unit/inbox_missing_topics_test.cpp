// When a consumer says again that a subscribed topic does not exist (issue 30): 30 s after
// librdkafka's report, then every 5 minutes, until the topic is found. The clock is passed in.
#include <gtest/gtest.h>

#include "missing_topics.hpp"

namespace {

using namespace std::chrono_literals;
using txbox::inbox::missing_topics;

TEST(InboxMissingTopics, SaidOnceThenAfter30sThenEvery5Minutes) {
  missing_topics m;
  const auto t0 = missing_topics::clock::time_point{} + 1000h;
  EXPECT_TRUE(m.reported("orders", t0));
  EXPECT_FALSE(m.reported("orders", t0 + 10s)) << "librdkafka's second report is no news";
  EXPECT_TRUE(m.due(t0 + 29s).empty());
  const auto first = m.due(t0 + 30s);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].topic, "orders");
  EXPECT_EQ(first[0].missing_for, 30s);
  EXPECT_TRUE(m.due(t0 + 31s).empty());
  EXPECT_TRUE(m.due(t0 + 329s).empty());
  const auto second = m.due(t0 + 330s);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].missing_for, 330s);
  EXPECT_TRUE(m.due(t0 + 629s).empty());
  EXPECT_EQ(m.due(t0 + 630s).size(), 1u);
  // Rounds are not exact: the next reminder counts from when this one was said.
  EXPECT_EQ(m.due(t0 + 1000s).size(), 1u);
  EXPECT_TRUE(m.due(t0 + 1299s).empty());
  EXPECT_EQ(m.due(t0 + 1300s).size(), 1u);
}

TEST(InboxMissingTopics, FoundEndsTheRemindersAndAReportIsNewsAgain) {
  missing_topics m;
  const auto t0 = missing_topics::clock::time_point{} + 1000h;
  EXPECT_FALSE(m.found("orders")) << "never missing";
  m.reported("orders", t0);
  m.reported("payments", t0 + 20s);
  EXPECT_TRUE(m.found("orders"));
  EXPECT_FALSE(m.found("orders"));
  const auto due = m.due(t0 + 50s);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].topic, "payments");
  EXPECT_TRUE(m.reported("orders", t0 + 60s)) << "deleted again: news";
  EXPECT_FALSE(m.empty());
}

TEST(InboxMissingTopics, DurationText) {
  using txbox::inbox::missing_for_text;
  EXPECT_EQ(missing_for_text(30s), "30 s");
  EXPECT_EQ(missing_for_text(119s), "119 s");
  EXPECT_EQ(missing_for_text(330s), "5 min");
  EXPECT_EQ(missing_for_text(3600s), "1 h");
  EXPECT_EQ(missing_for_text(3900s + 59s), "1 h 5 min");
}

}  // namespace

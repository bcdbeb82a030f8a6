// The Prometheus text format's label escaping: a consumer group or topic name from config
// must not break the exposition.
#include <gtest/gtest.h>

#include "txbox/detail/prometheus.hpp"

namespace {

using txbox::detail::prom_label;

TEST(PromLabel, EscapesBackslashQuoteAndNewline) {
  EXPECT_EQ(prom_label("plain-topic.v1"), "plain-topic.v1");
  EXPECT_EQ(prom_label(R"(a\b)"), R"(a\\b)");
  EXPECT_EQ(prom_label(R"(say "hi")"), R"(say \"hi\")");
  EXPECT_EQ(prom_label("two\nlines"), R"(two\nlines)");
}

}  // namespace

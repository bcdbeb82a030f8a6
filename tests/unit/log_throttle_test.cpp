#include "txbox/detail/log_throttle.hpp"

#include <gtest/gtest.h>

namespace {

using namespace std::chrono_literals;
using txbox::detail::LogThrottle;

TEST(LogThrottle, LetsALineThroughOncePerWindowAndCountsTheRest) {
  LogThrottle t(60s);
  const auto t0 = LogThrottle::clock::time_point{} + 1000s;
  EXPECT_EQ(t.admit("broker down (after 14ms in state CONNECT)", t0),
            "broker down (after 14ms in state CONNECT)");
  // The same line with other numbers, within the window: held back.
  EXPECT_FALSE(t.admit("broker down (after 3ms in state CONNECT)", t0 + 5s));
  EXPECT_FALSE(t.admit("broker down (after 140ms in state CONNECT)", t0 + 30s));
  // A different line is a state change: through at once.
  EXPECT_EQ(t.admit("broker up", t0 + 31s), "broker up");
  // After the window the line comes back, saying how many were held.
  EXPECT_EQ(t.admit("broker down (after 9ms in state CONNECT)", t0 + 61s),
            "broker down (after 9ms in state CONNECT) (2 similar line(s) held back)");
  EXPECT_FALSE(t.admit("broker down (after 1ms in state CONNECT)", t0 + 62s));
}

}  // namespace

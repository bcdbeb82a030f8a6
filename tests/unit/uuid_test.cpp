#include "txbox/uuid.hpp"

#include <gtest/gtest.h>

#include <set>
#include <thread>
#include <vector>

#include "txbox/error.hpp"

namespace {

using namespace std::chrono;

TEST(UuidV7, HasVersion7AndRfcVariant) {
  for (int i = 0; i < 1000; ++i) {
    const auto u = txbox::uuid_v7();
    EXPECT_EQ(u.version(), 7) << u.str();
    EXPECT_TRUE(u.rfc_variant()) << u.str();
    EXPECT_EQ(u.str()[14], '7');
  }
}

TEST(UuidV7, CarriesTheUnixMillisecondsItWasMadeAt) {
  const auto at = system_clock::time_point(milliseconds(1'700'000'000'123));
  // A fresh thread: this thread may already have made ids at the current time, and ids
  // never go backwards within a thread.
  txbox::Uuid u;
  std::thread([&] { u = txbox::uuid_v7_at(at); }).join();
  EXPECT_GE(u.unix_ms(), 1'700'000'000'123u);
  EXPECT_LT(u.unix_ms(), 1'700'000'000'123u + 5);  // may step ahead to stay monotonic
  const auto now_ms = duration_cast<milliseconds>(system_clock::now().time_since_epoch());
  const auto fresh = txbox::uuid_v7();
  EXPECT_NEAR(static_cast<double>(fresh.unix_ms()), static_cast<double>(now_ms.count()), 1000);
}

TEST(UuidV7, IsStrictlyIncreasingWithinAThreadEvenWhenTheClockStandsStill) {
  const auto now = system_clock::now() + hours(1);
  txbox::Uuid prev = txbox::uuid_v7_at(now);
  for (int i = 0; i < 10'000; ++i) {
    const auto next = txbox::uuid_v7_at(now);  // same instant every time
    ASSERT_LT(prev, next) << prev.str() << " !< " << next.str();
    prev = next;
  }
  // And text order matches byte order (the database sorts the text/uuid form).
  const auto a = txbox::uuid_v7();
  const auto b = txbox::uuid_v7();
  EXPECT_LT(a.str(), b.str());
}

TEST(UuidV7, ClockSteppingBackDoesNotBreakOrder) {
  const auto now = system_clock::now() + hours(2);
  const auto a = txbox::uuid_v7_at(now);
  const auto b = txbox::uuid_v7_at(now - seconds(5));
  EXPECT_LT(a, b);
}

TEST(UuidV7, IsUniqueAcrossThreads) {
  constexpr int k_threads = 4;
  constexpr int k_each = 20'000;
  std::vector<std::vector<txbox::Uuid>> out(k_threads);
  std::vector<std::thread> threads;
  for (int t = 0; t < k_threads; ++t) {
    threads.emplace_back([&out, t] {
      for (int i = 0; i < k_each; ++i) out[t].push_back(txbox::uuid_v7());
    });
  }
  for (auto& th : threads) th.join();
  std::set<txbox::Uuid> all;
  for (auto& v : out) all.insert(v.begin(), v.end());
  EXPECT_EQ(all.size(), static_cast<std::size_t>(k_threads * k_each));
}

TEST(UuidV7, RandomBitsDiffer) {
  // 62 random bits: two ids made at the same instant differ beyond the time fields.
  const auto now = system_clock::now() + hours(3);
  const auto a = txbox::uuid_v7_at(now);
  const auto b = txbox::uuid_v7_at(now);
  EXPECT_NE(std::vector<std::uint8_t>(a.bytes.begin() + 8, a.bytes.end()),
            std::vector<std::uint8_t>(b.bytes.begin() + 8, b.bytes.end()));
}

TEST(Uuid, ParsesItsOwnTextForm) {
  const auto u = txbox::uuid_v7();
  EXPECT_EQ(txbox::Uuid::parse(u.str()), u);
  EXPECT_EQ(txbox::Uuid::parse("0192F0C3-6B1E-7A3C-8D2E-0F1A2B3C4D5E").str(),
            "0192f0c3-6b1e-7a3c-8d2e-0f1a2b3c4d5e");
}

TEST(Uuid, RejectsMalformedText) {
  EXPECT_THROW(txbox::Uuid::parse(""), txbox::error);
  EXPECT_THROW(txbox::Uuid::parse("0192f0c3-6b1e-7a3c-8d2e-0f1a2b3c4d5"), txbox::error);
  EXPECT_THROW(txbox::Uuid::parse("0192f0c3x6b1e-7a3c-8d2e-0f1a2b3c4d5e"), txbox::error);
  EXPECT_THROW(txbox::Uuid::parse("0192f0c3-6b1e-7a3c-8d2e-0f1a2b3c4d5g"), txbox::error);
}

}  // namespace

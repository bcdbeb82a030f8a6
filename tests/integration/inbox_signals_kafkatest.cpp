// Consumer::run() and signals: handlers restored whatever way run() ends; one SIGTERM stops
// every consumer of the process.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <iostream>
#include <thread>

#include "inbox_support.hpp"

namespace {

using namespace std::chrono_literals;
using txbox::test::InboxFixture;

std::atomic<int> g_test_handler_calls{0};
extern "C" void test_handler(int) {
  g_test_handler_calls.fetch_add(1);
}

// Installs test_handler for SIGTERM and SIGINT for the test's duration (a stray signal then
// cannot end the test binary), restoring what was there before.
class InboxSignals : public InboxFixture {
 protected:
  void SetUp() override {
    InboxFixture::SetUp();
    struct sigaction act {};
    act.sa_handler = &test_handler;
    sigemptyset(&act.sa_mask);
    sigaction(SIGTERM, &act, &old_term_);
    sigaction(SIGINT, &act, &old_int_);
  }
  void TearDown() override {
    sigaction(SIGTERM, &old_term_, nullptr);
    sigaction(SIGINT, &old_int_, nullptr);
  }
  static void (*current(int sig))(int) {
    struct sigaction now {};
    sigaction(sig, nullptr, &now);
    return now.sa_handler;
  }
  struct sigaction old_term_ {};
  struct sigaction old_int_ {};
};

TEST_F(InboxSignals, RunRestoresTheHandlersWhenItThrows) {
  txbox::Consumer c(config(), record_effect());
  std::stop_source stopped;
  stopped.request_stop();
  c.run(stopped.get_token());  // closes the consumer: the next poll throws
  EXPECT_THROW(c.run(), txbox::error);
  EXPECT_EQ(current(SIGTERM), &test_handler) << "run() left its SIGTERM handler installed";
  EXPECT_EQ(current(SIGINT), &test_handler) << "run() left its SIGINT handler installed";
}

TEST_F(InboxSignals, OneSigtermStopsTwoConsumersInTwoThreads) {
  std::atomic<int> started = 0, finished = 0;
  auto worker = [&] {
    txbox::Consumer c(config(), record_effect());
    ++started;
    c.run();
    ++finished;
  };
  std::jthread a(worker), b(worker);
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (started < 2 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(started, 2);
  std::this_thread::sleep_for(1s);  // both inside run()
  const auto sent = std::chrono::steady_clock::now();
  kill(getpid(), SIGTERM);
  while (finished < 2 && std::chrono::steady_clock::now() < sent + 15s) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(finished, 2) << "a consumer did not stop on SIGTERM";
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - sent);
  std::cout << "SIGTERM to both consumers stopped: " << took.count() << " ms\n";
  EXPECT_LT(took, 3s) << "idle consumers must stop within a poll tick plus leaving the group";
  if (finished < 2) {
    kill(getpid(), SIGTERM);  // second chance so that the threads can be joined
  }
  a.join();
  b.join();
  EXPECT_EQ(g_test_handler_calls.load(), 0) << "the signal reached the previous handler";
  EXPECT_EQ(current(SIGTERM), &test_handler) << "a run() left its SIGTERM handler installed";
  EXPECT_EQ(current(SIGINT), &test_handler);
}

}  // namespace

// The outbox tests' fixture: a fresh schema with the migrations applied, per test.
#pragma once

#include <gtest/gtest.h>

#include <pqxx/pqxx>
#include <string>

#include "harness.hpp"
#include "txbox/detail/pq.hpp"
#include "txbox/outbox.hpp"

namespace txbox::test {

class OutboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    schema_ = txbox::test::unique_name("ob");
    txbox::test::create_schema(schema_);
  }
  long count(pqxx::connection& c) {
    pqxx::nontransaction n(c);
    return pq::exec1(n, "SELECT count(*) FROM " + schema_ + ".outbox")[0].as<long>();
  }
  txbox::Outbox outbox() const { return txbox::Outbox({.schema = schema_}); }
  std::string schema_;
};

}  // namespace txbox::test

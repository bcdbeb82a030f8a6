// Test harness: the servers a test run uses, and helpers that give each test its own state.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <string_view>

namespace txbox::test {

/// Where the servers are. Read from the environment (TXBOX_TEST_PG, TXBOX_TEST_KAFKA, ...),
/// else from the file named by TXBOX_TEST_ENV_FILE that scripts/servers.sh wrote.
struct Endpoints {
  std::string pg;        ///< libpq conninfo of the database owner (CREATEROLE, no superuser)
  std::string pg_admin;  ///< libpq conninfo of a superuser (maintenance database)
  std::string kafka;     ///< bootstrap.servers
  std::map<std::string, std::string> all;  ///< every TXBOX_TEST_* value
};

/// The endpoints; throws std::runtime_error naming what is missing.
const Endpoints& endpoints();

/// A name unique to this process and call: prefix + pid + counter, lowercase [a-z0-9_].
std::string unique_name(std::string_view prefix);

/// Creates schema `name` by applying every migration rendered for it (migrations/render.sh
/// piped to psql as the database owner). Throws on failure.
void create_schema(const std::string& name);

/// Runs a shell command; returns its exit status and, through `output`, stdout+stderr.
int run_command(const std::string& command, std::string* output = nullptr);

/// Creates a Kafka topic with the admin API and waits until its leaders are known.
void create_topic(const std::string& topic, int partitions = 1);

/// Source tree root (for migrations and scripts).
std::string source_dir();

/// GoogleTest environment for integration tests: checks that PostgreSQL answers and the
/// broker serves metadata (waiting up to 60 s), else ends the process with an error.
class ServersEnvironment : public ::testing::Environment {
 public:
  void SetUp() override;
};

}  // namespace txbox::test

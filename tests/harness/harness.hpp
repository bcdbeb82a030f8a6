// Test harness: the servers a test run uses, and helpers that give each test its own state.
#pragma once

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

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

namespace txbox::test {

/// A child process with stdout+stderr captured to a file; killed (SIGKILL) when destroyed.
class Process {
 public:
  Process(const std::vector<std::string>& argv, const std::string& log_path);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  void signal(int sig);
  /// Waits up to `timeout` for exit; returns the exit code (128+signal), or -1 on timeout.
  int wait(std::chrono::milliseconds timeout);
  [[nodiscard]] bool running();
  [[nodiscard]] std::string output() const;
  [[nodiscard]] int pid() const { return m_pid; }

 private:
  int m_pid = -1;
  int m_status = -1;
  std::string m_log;
};

/// Path of a built program (txbox-relay, ...), from the TXBOX_BIN_DIR the build defines.
std::string program(const std::string& name);

/// A record read back from Kafka.
struct Record {
  std::string topic, key, value;
  int partition = 0;
  std::int64_t offset = 0;
  std::map<std::string, std::string> headers;
};

/// A consumed message of `topic` as a Record (key, value, partition, offset, headers).
Record record_of(rd_kafka_message_t& m, const std::string& topic);

/// Polls `consumer` (assigned or subscribed to `topic`) until `count` records arrived or
/// `timeout` passed, closes it, and returns them in partition order, then offset order.
std::vector<Record> collect_records(rd_kafka_t* consumer, const std::string& topic,
                                    std::size_t count, std::chrono::milliseconds timeout);

/// Reads every partition of `topic` from the beginning until `count` records arrived or
/// `timeout` passed; returns them in partition order, then offset order.
std::vector<Record> read_topic(const std::string& topic, std::size_t count,
                               std::chrono::milliseconds timeout);

}  // namespace txbox::test

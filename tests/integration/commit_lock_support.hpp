// The commit-lock tests' PostgreSQL (its fixture's endpoints.env) and schemas at a chosen
// migration (tests/integration/commit_lock_pgtest.cpp). Stands alone: the test harness's main
// wants a Kafka broker, which these tests neither start nor need.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace txbox::test::commit_lock {

namespace fs = std::filesystem;

/// A name unique to this process and call: prefix, pid, counter.
inline std::string unique_name(std::string_view prefix) {
  static std::atomic<int> counter{0};
  return std::string(prefix) + "_" + std::to_string(::getpid()) + "_" + std::to_string(++counter);
}

/// Runs a shell command; its exit status, and its stdout and stderr through `output`.
inline int run_command(const std::string& command, std::string& output) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("popen failed for: " + command);
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) output.append(buf.data(), n);
  const int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// ---- the servers ---------------------------------------------------------------------------

struct Servers {
  std::string owner;  ///< the database owner (not superuser): schemas, A, B, the monitor
  std::string admin;  ///< a superuser: ALTER SYSTEM
};

inline std::map<std::string, std::string> read_env_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read the test servers' endpoints from " + path);
  std::map<std::string, std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string value = line.substr(eq + 1);
    if (value.size() >= 2 && value.front() == '\'' && value.back() == '\'') {
      value = value.substr(1, value.size() - 2);
    }
    out[line.substr(0, eq)] = value;
  }
  return out;
}

/// This executable's PostgreSQL, from its fixture's endpoints.env (TXBOX_TEST_ENV_FILE). Not
/// txbox::test::endpoints(), which also wants a broker. Throws (the test fails) without it.
inline const Servers& servers() {
  static const Servers s = [] {
    const char* file = std::getenv("TXBOX_TEST_ENV_FILE");
    if (file == nullptr || *file == '\0') {
      throw std::runtime_error(
          "TXBOX_TEST_ENV_FILE is not set: run these tests through ctest, whose fixture "
          "commit_lock.servers starts their PostgreSQL");
    }
    auto env = read_env_file(file);
    Servers out{env["TXBOX_TEST_PG"], env["TXBOX_TEST_PG_ADMIN"]};
    if (out.owner.empty() || out.admin.empty() || out.owner == out.admin) {
      throw std::runtime_error(std::string(file) +
                               " names no PostgreSQL of this test's own (owner and superuser)");
    }
    return out;
  }();
  return s;
}

// ---- migrations ----------------------------------------------------------------------------

inline std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

inline void run_or_throw(const std::string& command) {
  std::string output;
  if (run_command(command, output) != 0) {
    throw std::runtime_error("failed: " + command + "\n" + output);
  }
}

/// "V12__name.sql" -> 12; 0 for any other name.
inline int migration_version(const std::string& file) {
  const auto sep = file.find("__");
  if (file.size() < 2 || file[0] != 'V' || sep == std::string::npos) return 0;
  int v = 0;
  const auto [end, ec] = std::from_chars(file.data() + 1, file.data() + sep, v);
  return ec == std::errc() && end == file.data() + sep ? v : 0;
}

/// A directory of this process's own under the temporary directory, removed with the object.
struct TempDir {
  fs::path path = fs::temp_directory_path() / unique_name("commit_lock");
  TempDir() { fs::create_directories(path); }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

/// Schema `schema` with migrations V1..V`max_version`: migrations/render.sh SCHEMA --out DIR,
/// then each rendered file in version order through psql as the database owner.
inline void apply_migrations(const std::string& schema, int max_version) {
  const TempDir dir;
  run_or_throw(shell_quote(std::string(TXBOX_SOURCE_DIR) + "/migrations/render.sh") + " " + schema +
               " --out " + shell_quote(dir.path.string()));
  std::vector<std::pair<int, fs::path>> files;
  for (const auto& entry : fs::directory_iterator(dir.path)) {
    const int v = migration_version(entry.path().filename().string());
    if (v > 0 && v <= max_version) files.emplace_back(v, entry.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& [version, file] : files) {
    run_or_throw("psql -q -v ON_ERROR_STOP=1 -f " + shell_quote(file.string()) + " " +
                 shell_quote(servers().owner));
  }
}

}  // namespace txbox::test::commit_lock

// The relay benchmark's child processes: txbox-relay, and /proc's figures.
#include "relay_bench_process.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <sstream>
#include <vector>

#include "relay_bench_support.hpp"

namespace bench {

Child start_relay(const std::string& name, bool notify) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    (void)std::freopen("/dev/null", "w", stdout);
    (void)std::freopen(("/tmp/bench-" + name + ".log").c_str(), "w", stderr);
    std::vector<const char*> argv = {
        g_relay.c_str(), "--database-url", g_pg.c_str(), "--kafka-bootstrap-servers",
        g_kafka.c_str(), "--name",         name.c_str()};
    if (!notify) argv.push_back("--no-notify");
    argv.push_back(nullptr);
    ::execv(argv[0], const_cast<char* const*>(argv.data()));
    ::_exit(127);
  }
  return {pid};
}

void stop(Child c) {
  ::kill(c.pid, SIGTERM);
  ::waitpid(c.pid, nullptr, 0);
}

long rss_kib(pid_t pid) {
  FILE* f = std::fopen(fmt::format("/proc/{}/status", pid).c_str(), "r");
  if (!f) return -1;
  char line[256];
  long kib = -1;
  while (std::fgets(line, sizeof line, f)) {
    if (std::sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
  }
  std::fclose(f);
  return kib;
}

// CPU seconds (user + system) used so far by `pid`.
double cpu_seconds(pid_t pid) {
  FILE* f = std::fopen(fmt::format("/proc/{}/stat", pid).c_str(), "r");
  if (!f) return 0;
  char buf[1024];
  const std::size_t len = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[len] = 0;
  const char* p = std::strrchr(buf, ')');
  if (!p) return 0;
  std::istringstream in(p + 2);
  std::string field;
  double ut = 0, st = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) ut = std::stod(field);
    if (i == 15) st = std::stod(field);
  }
  return (ut + st) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

}  // namespace bench

// The relay benchmark's child processes: txbox-relay, and /proc's figures.
#include "relay_bench_process.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "bench_metrics.hpp"
#include "relay_bench_support.hpp"

namespace bench {

void install_notify_trigger(pqxx::connection& c, bool on) {
  pqxx::nontransaction n(c);
  if (!on) {
    n.exec("DROP TRIGGER IF EXISTS outbox_notify ON txbox.outbox");
    return;
  }
  n.exec(
      "CREATE OR REPLACE FUNCTION txbox.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS "
      "$fn$ BEGIN PERFORM pg_notify(TG_TABLE_SCHEMA || '.outbox', ''); RETURN NULL; END $fn$");
  n.exec(
      "CREATE OR REPLACE TRIGGER outbox_notify AFTER INSERT ON txbox.outbox "
      "FOR EACH STATEMENT EXECUTE FUNCTION txbox.outbox_notify()");
}

Child start_relay(const std::string& name, Wakeup wakeup, Delivery delivery, int http_port) {
  const std::string listen = fmt::format("127.0.0.1:{}", http_port);
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (wakeup == Wakeup::notify) {
      ::setenv("TXBOX_RELAY_LISTEN_NOTIFY", "true", 1);
      ::setenv("TXBOX_RELAY_PROBE_INTERVAL_MS", "0", 1);
    }
    (void)std::freopen("/dev/null", "w", stdout);
    (void)std::freopen(("/tmp/bench-" + name + ".log").c_str(), "w", stderr);
    std::vector<const char*> argv = {
        g_relay.c_str(), "--database-url", g_pg.c_str(), "--kafka-bootstrap-servers",
        g_kafka.c_str(), "--name",         name.c_str()};
    if (delivery == Delivery::exactly_once) argv.push_back("--exactly-once");
    if (http_port > 0) {
      argv.push_back("--http-listen");
      argv.push_back(listen.c_str());
    }
    argv.push_back(nullptr);
    ::execv(argv[0], const_cast<char* const*>(argv.data()));
    ::_exit(127);
  }
  return {pid};
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(fd);
  if (!ok) throw std::runtime_error("no free port on 127.0.0.1");
  return ntohs(a.sin_port);
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

namespace {

// A process's name (comm) and CPU seconds (user + system) from /proc/PID/stat; false when it
// is gone.
bool read_stat(const std::string& pid, std::string& comm, double& seconds) {
  FILE* f = std::fopen(("/proc/" + pid + "/stat").c_str(), "r");
  if (!f) return false;
  char buf[1024];
  const std::size_t len = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[len] = 0;
  const char* open = std::strchr(buf, '(');
  const char* p = std::strrchr(buf, ')');
  if (!open || !p) return false;
  comm.assign(open + 1, p);
  std::istringstream in(p + 2);
  std::string field;
  double ut = 0, st = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) ut = std::stod(field);
    if (i == 15) st = std::stod(field);
  }
  seconds = (ut + st) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  return true;
}

}  // namespace

double cpu_seconds(pid_t pid) {
  std::string comm;
  double s = 0;
  return read_stat(std::to_string(pid), comm, s) ? s : 0;
}

CpuSplit cpu_split() {
  CpuSplit c;
  const std::string self = std::to_string(::getpid());
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string pid = e.path().filename();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string comm;
    double s = 0;
    if (!read_stat(pid, comm, s)) continue;
    if (pid == self)
      c.bench += s;
    else if (comm == "postgres")
      c.postgres += s;
    else if (comm == "java")
      c.broker += s;
    else if (comm == "txbox-relay")
      c.relay += s;
  }
  // The first line of /proc/stat: cpu user nice system idle iowait irq softirq steal ...
  std::ifstream stat("/proc/stat");
  std::string cpu;
  stat >> cpu;
  double ticks[8] = {};
  for (double& t : ticks) stat >> t;
  const double hz = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double idle = ticks[3] + ticks[4];
  double all = 0;
  for (const double t : ticks) all += t;
  c.busy = (all - idle) / hz;
  c.total = all / hz;
  return c;
}

CpuSplit operator-(const CpuSplit& a, const CpuSplit& b) {
  return {a.postgres - b.postgres, a.broker - b.broker, a.relay - b.relay,
          a.bench - b.bench,       a.busy - b.busy,     a.total - b.total};
}

}  // namespace bench

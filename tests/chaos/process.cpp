#include "process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <deque>
#include <fstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace chaos {
namespace {

int exit_code(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The argument and environment arrays execve wants, built before fork.
struct ExecArrays {
  std::vector<char*> argv, envp;
  ExecArrays(const std::vector<std::string>& args, const std::vector<std::string>& env) {
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
  }
};

int open_log(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot open log " + path);
  return fd;
}

// Forks and execs; in the child: death signal, output to `fd`, default signal mask.
pid_t spawn(const ExecArrays& a, int fd, bool die_with_parent) {
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    if (die_with_parent) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(126);  // the driver is already gone
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execve(a.argv[0], a.argv.data(), a.envp.data());
    ::_exit(127);
  }
  return pid;
}

}  // namespace

std::vector<std::string> environment(const std::vector<std::string>& drop,
                                     const std::vector<std::string>& extra) {
  std::vector<std::string> out;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    const std::string name = kv.substr(0, kv.find('='));
    bool dropped = false;
    for (const auto& d : drop) {
      dropped |= d.ends_with('*') ? name.starts_with(d.substr(0, d.size() - 1)) : name == d;
    }
    for (const auto& x : extra) dropped |= x.substr(0, x.find('=')) == name;
    if (!dropped) out.push_back(kv);
  }
  out.insert(out.end(), extra.begin(), extra.end());
  return out;
}

int run_logged(const std::vector<std::string>& argv, const std::vector<std::string>& env,
               const std::string& log) {
  const ExecArrays a(argv, env);
  const int fd = open_log(log);
  pid_t pid = -1;
  try {
    pid = spawn(a, fd, false);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw std::runtime_error("waitpid failed for " + argv[0]);
  }
  return exit_code(status);
}

std::string tail_file(const std::string& path, int lines) {
  std::ifstream in(path);
  std::deque<std::string> last;
  std::string line;
  while (std::getline(in, line)) {
    last.push_back(line);
    if (static_cast<int>(last.size()) > lines) last.pop_front();
  }
  std::string out;
  for (const auto& l : last) out += "    " + l + "\n";
  return out;
}

Child::Child(std::string name, std::vector<std::string> argv, std::vector<std::string> env,
             std::string log)
    : m_name(std::move(name)),
      m_argv(std::move(argv)),
      m_env(std::move(env)),
      m_log(std::move(log)) {}

Child::~Child() {
  if (m_state != State::down) kill_now();
}

void Child::start(const std::string& note) {
  if (m_state != State::down) throw std::logic_error(m_name + " is already running");
  const ExecArrays a(m_argv, m_env);
  const int fd = open_log(m_log);
  const std::string banner = "\n===== chaos: " + m_name + " start #" +
                             std::to_string(m_starts + 1) + " (" + note + ") =====\n";
  if (::write(fd, banner.data(), banner.size()) < 0) {
    // The banner only helps reading the log; the child writes its own lines anyway.
  }
  try {
    m_pid = spawn(a, fd, true);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  m_state = State::running;
  ++m_starts;
}

void Child::signal(int sig) {
  if (m_state == State::down) return;
  ::kill(m_pid, sig);
  if (sig == SIGSTOP) m_state = State::stopped;
  if (sig == SIGCONT) m_state = State::running;
}

void Child::kill_now() {
  if (m_state == State::down) return;
  ::kill(m_pid, SIGKILL);
  int status = 0;
  while (::waitpid(m_pid, &status, 0) < 0 && errno == EINTR) {
  }
  m_state = State::down;
  m_pid = -1;
}

std::optional<int> Child::reap() {
  if (m_state == State::down) return std::nullopt;
  int status = 0;
  if (::waitpid(m_pid, &status, WNOHANG) != m_pid) return std::nullopt;
  m_state = State::down;
  m_pid = -1;
  return exit_code(status);
}

int Child::terminate(std::chrono::milliseconds grace) {
  if (m_state == State::down) return 0;
  if (m_state == State::stopped) signal(SIGCONT);
  ::kill(m_pid, SIGTERM);
  const auto until = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < until) {
    if (auto code = reap()) return *code;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill_now();
  return 128 + SIGKILL;
}

}  // namespace chaos

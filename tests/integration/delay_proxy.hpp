// A TCP proxy on 127.0.0.1 that holds everything the upstream sends for a set delay before
// passing it on (what the client sends goes through at once): a replication link whose
// standby confirms each WAL position that much later, as a WAN standby does. The delay can
// change while connections are open; it applies to the bytes read after the change.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace txbox::test {

class DelayProxy {
 public:
  /// Listens on a free port of 127.0.0.1 (port()) and forwards each connection to
  /// 127.0.0.1:`upstream_port`. Throws std::runtime_error when it cannot listen.
  explicit DelayProxy(int upstream_port) : m_upstream(upstream_port) {
    m_listener = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = address(0);
    socklen_t len = sizeof a;
    if (::bind(m_listener, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(m_listener, 8) != 0 ||
        ::getsockname(m_listener, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ::close(m_listener);
      throw std::runtime_error("delay proxy: cannot listen on 127.0.0.1");
    }
    m_port = ntohs(a.sin_port);
    m_accept = std::jthread([this](std::stop_token stop) { accept_loop(stop); });
  }
  /// Stops accepting, closes every connection (the client sees its connection drop).
  ~DelayProxy() {
    m_accept.request_stop();
    m_accept.join();
    m_pumps.clear();  // joins each pump (they poll with a short timeout)
    for (const int fd : m_fds) ::close(fd);
    ::close(m_listener);
  }
  DelayProxy(const DelayProxy&) = delete;
  DelayProxy& operator=(const DelayProxy&) = delete;

  [[nodiscard]] int port() const { return m_port; }

  /// What the upstream sends from now on is held this long.
  void set_delay(std::chrono::milliseconds d) { m_delay_ms = d.count(); }

 private:
  using steady = std::chrono::steady_clock;

  static sockaddr_in address(int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
  }

  void accept_loop(const std::stop_token& stop) {
    while (!stop.stop_requested()) {
      pollfd p{m_listener, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int client = ::accept(m_listener, nullptr, nullptr);
      if (client < 0) continue;
      const int server = ::socket(AF_INET, SOCK_STREAM, 0);
      const sockaddr_in a = address(m_upstream);
      if (::connect(server, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
        ::close(client);
        ::close(server);
        continue;
      }
      std::lock_guard lock(m_mutex);
      m_fds.push_back(client);
      m_fds.push_back(server);
      m_pumps.emplace_back(
          [this, client, server](std::stop_token s) { pump(s, client, server, false); });
      m_pumps.emplace_back(
          [this, client, server](std::stop_token s) { pump(s, server, client, true); });
    }
    std::lock_guard lock(m_mutex);
    for (auto& t : m_pumps) t.request_stop();
  }

  // Copies `from` to `to`; with `delayed`, each chunk leaves the set delay after it arrived.
  void pump(const std::stop_token& stop, int from, int to, bool delayed) {
    struct Chunk {
      steady::time_point due;
      std::string bytes;
    };
    std::deque<Chunk> queue;
    bool open = true;
    char buf[65536];
    while (!stop.stop_requested() && (open || !queue.empty())) {
      int wait_ms = 50;
      if (!queue.empty()) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(queue.front().due -
                                                                                steady::now());
        wait_ms = static_cast<int>(std::clamp<long>(left.count(), 0, 50));
      }
      pollfd p{from, POLLIN, 0};
      if (open && ::poll(&p, 1, wait_ms) > 0) {
        const ssize_t n = ::recv(from, buf, sizeof buf, 0);
        if (n <= 0) {
          open = false;
        } else {
          const auto delay = std::chrono::milliseconds(delayed ? m_delay_ms.load() : 0);
          queue.push_back({steady::now() + delay, std::string(buf, static_cast<std::size_t>(n))});
        }
      } else if (!open) {
        std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
      }
      while (!queue.empty() && queue.front().due <= steady::now()) {
        const std::string& b = queue.front().bytes;
        std::size_t sent = 0;
        while (sent < b.size()) {
          const ssize_t n = ::send(to, b.data() + sent, b.size() - sent, MSG_NOSIGNAL);
          if (n <= 0) return;  // the other side is gone
          sent += static_cast<std::size_t>(n);
        }
        queue.pop_front();
      }
    }
    ::shutdown(to, SHUT_WR);
  }

  int m_upstream;
  int m_listener = -1;
  int m_port = 0;
  std::atomic<long> m_delay_ms{0};
  std::mutex m_mutex;
  std::vector<int> m_fds;
  std::vector<std::jthread> m_pumps;
  std::jthread m_accept;
};

}  // namespace txbox::test

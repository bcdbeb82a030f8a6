// The relay's HTTP endpoints as the tests read them (/metrics, /readyz).
#pragma once

#include <httplib.h>

#include <string>

namespace txbox::test {

/// The /metrics value of `name` (an unlabelled sample) at 127.0.0.1:`port`; -1 when absent.
inline double metric(int port, const std::string& name) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(2);
  const auto res = c.Get("/metrics");
  if (!res) return -1;
  const std::string key = "\n" + name + " ";
  const auto at = ("\n" + res->body).find(key);
  if (at == std::string::npos) return -1;
  return std::stod(("\n" + res->body).substr(at + key.size()));
}

inline int readyz(int port) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(2);
  const auto res = c.Get("/readyz");
  return res ? res->status : -1;
}

}  // namespace txbox::test

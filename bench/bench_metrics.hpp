// The relay's /metrics as the benchmarks read them.
#pragma once

#include <httplib.h>

#include <sstream>
#include <string>

namespace bench {

/// The sum of every sample of metric `name` in /metrics at 127.0.0.1:`port`; -1 without an
/// answer.
inline double metric_sum(int port, const std::string& name) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(2);
  const auto res = c.Get("/metrics");
  if (!res || res->status != 200) return -1;
  double sum = 0;
  std::istringstream in(res->body);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name, 0) != 0) continue;
    const char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != ' ' && next != '{') continue;
    sum += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return sum;
}

}  // namespace bench

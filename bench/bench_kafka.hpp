// A librdkafka client for the benchmarks (relay_bench, inbox_bench). Header-only.
#pragma once

#include <librdkafka/rdkafka.h>

#include <map>
#include <stdexcept>
#include <string>

#include "txbox/detail/rdkafka.hpp"

namespace bench {

/// A producer or consumer on `bootstrap` with `extra` settings. Throws std::runtime_error.
inline txbox::detail::kafka_ptr make_kafka_client(const std::string& bootstrap,
                                                  rd_kafka_type_t type,
                                                  std::map<std::string, std::string> extra) {
  txbox::detail::conf_ptr conf(rd_kafka_conf_new());
  char err[512];
  extra["bootstrap.servers"] = bootstrap;
  for (const auto& [k, v] : extra) {
    if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      throw std::runtime_error(err);
    }
  }
  txbox::detail::kafka_ptr rk(rd_kafka_new(type, conf.get(), err, sizeof err));
  if (!rk) throw std::runtime_error(err);
  (void)conf.release();  // rd_kafka_new took the conf on success
  return rk;
}

}  // namespace bench

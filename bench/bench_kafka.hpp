// A librdkafka client and topic creation for the benchmarks (relay_bench, inbox_bench).
// Header-only.
#pragma once

#include <librdkafka/rdkafka.h>

#include <cstddef>
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

/// Creates `topic` with `partitions` partitions (replication factor 1) through client `rk`'s
/// Admin API, so its partition count does not depend on the broker's num.partitions; a topic
/// that already exists is left as it is. Throws std::runtime_error.
inline void create_kafka_topic(rd_kafka_t* rk, const std::string& topic, int partitions) {
  using namespace txbox::detail;
  char err[512];
  new_topic_ptr nt(rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, err, sizeof err));
  if (!nt) throw std::runtime_error(err);
  admin_options_ptr opts(rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS));
  rd_kafka_AdminOptions_set_operation_timeout(opts.get(), 30000, err, sizeof err);
  queue_ptr q(rd_kafka_queue_new(rk));
  rd_kafka_NewTopic_t* topics[] = {nt.get()};
  rd_kafka_CreateTopics(rk, topics, 1, opts.get(), q.get());
  event_ptr ev(rd_kafka_queue_poll(q.get(), 60000));
  if (!ev) throw std::runtime_error("creating topic " + topic + ": no answer within 60 s");
  if (rd_kafka_event_error(ev.get())) {
    throw std::runtime_error("creating topic " + topic + ": " +
                             rd_kafka_event_error_string(ev.get()));
  }
  std::size_t n = 0;
  const auto* const* results =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev.get()), &n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto code = rd_kafka_topic_result_error(results[i]);
    if (code && code != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      throw std::runtime_error("creating topic " + topic + ": " +
                               rd_kafka_topic_result_error_string(results[i]));
    }
  }
}

}  // namespace bench

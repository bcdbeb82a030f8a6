// librdkafka client set-up shared by the publisher and the durability gate. Internal.
#pragma once

#include <librdkafka/rdkafka.h>

#include <map>
#include <string>

#include "txbox/detail/rdkafka.hpp"

namespace txbox::relay {

/// Sets one property; throws config_error naming `kafka.<key>` and librdkafka's reason.
void set_conf(rd_kafka_conf_t* conf, const std::string& key, const std::string& value);

/// librdkafka's warnings and errors through spdlog; a line that repeats (one per reconnect
/// attempt while a broker is down) and only differs in its numbers is logged once a minute.
void log_rdkafka(const rd_kafka_t* rk, int level, const char* fac, const char* buf);

/// A client handle (a producer unless `type` says otherwise) from `conf` (taken on success);
/// throws config_error saying `what`.
detail::kafka_ptr make_client(detail::conf_ptr conf, const char* what,
                              rd_kafka_type_t type = RD_KAFKA_PRODUCER);

/// The properties of `kafka` that say how to reach and authenticate to the brokers (for a
/// client of another kind than the producer they were written for).
std::map<std::string, std::string> connection_settings(
    const std::map<std::string, std::string>& kafka);

}  // namespace txbox::relay

// The failure classifier's Kafka half (librdkafka error codes). Internal, header-only.
#pragma once

#include <librdkafka/rdkafka.h>

#include "txbox/detail/failure.hpp"

namespace txbox::detail {

/// Sorts a delivery or client error: permanent when retrying the same message cannot
/// succeed, fatal when the client must be replaced, transient otherwise.
inline failure_kind classify_kafka(rd_kafka_resp_err_t err, bool client_fatal = false) {
  if (client_fatal || err == RD_KAFKA_RESP_ERR__FATAL) return failure_kind::kafka_fatal;
  switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
      return failure_kind::kafka_permanent;
    default:
      return failure_kind::kafka_transient;
  }
}

}  // namespace txbox::detail

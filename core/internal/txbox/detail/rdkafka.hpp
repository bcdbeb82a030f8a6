// Owning handles for librdkafka's C objects. Internal: never included by a public header.
#pragma once

#include <librdkafka/rdkafka.h>

#include <memory>

namespace txbox::detail {

struct kafka_deleter {
  // rd_kafka_destroy may block while it flushes or leaves a consumer group.
  void operator()(rd_kafka_t* p) const noexcept { rd_kafka_destroy(p); }
  void operator()(rd_kafka_conf_t* p) const noexcept { rd_kafka_conf_destroy(p); }
  void operator()(rd_kafka_topic_partition_list_t* p) const noexcept {
    rd_kafka_topic_partition_list_destroy(p);
  }
  void operator()(rd_kafka_headers_t* p) const noexcept { rd_kafka_headers_destroy(p); }
  void operator()(rd_kafka_message_t* p) const noexcept { rd_kafka_message_destroy(p); }
  void operator()(rd_kafka_error_t* p) const noexcept { rd_kafka_error_destroy(p); }
  void operator()(rd_kafka_event_t* p) const noexcept { rd_kafka_event_destroy(p); }
  void operator()(rd_kafka_queue_t* p) const noexcept { rd_kafka_queue_destroy(p); }
  void operator()(rd_kafka_AdminOptions_t* p) const noexcept { rd_kafka_AdminOptions_destroy(p); }
  void operator()(rd_kafka_NewTopic_t* p) const noexcept { rd_kafka_NewTopic_destroy(p); }
  void operator()(rd_kafka_ConfigResource_t* p) const noexcept {
    rd_kafka_ConfigResource_destroy(p);
  }
  void operator()(const rd_kafka_metadata_t* p) const noexcept { rd_kafka_metadata_destroy(p); }
  void operator()(rd_kafka_topic_t* p) const noexcept { rd_kafka_topic_destroy(p); }
};

using kafka_ptr = std::unique_ptr<rd_kafka_t, kafka_deleter>;
using conf_ptr = std::unique_ptr<rd_kafka_conf_t, kafka_deleter>;
using partition_list_ptr = std::unique_ptr<rd_kafka_topic_partition_list_t, kafka_deleter>;
using headers_ptr = std::unique_ptr<rd_kafka_headers_t, kafka_deleter>;
using message_ptr = std::unique_ptr<rd_kafka_message_t, kafka_deleter>;
using error_ptr = std::unique_ptr<rd_kafka_error_t, kafka_deleter>;
using event_ptr = std::unique_ptr<rd_kafka_event_t, kafka_deleter>;
using queue_ptr = std::unique_ptr<rd_kafka_queue_t, kafka_deleter>;
using admin_options_ptr = std::unique_ptr<rd_kafka_AdminOptions_t, kafka_deleter>;
using new_topic_ptr = std::unique_ptr<rd_kafka_NewTopic_t, kafka_deleter>;
using config_resource_ptr = std::unique_ptr<rd_kafka_ConfigResource_t, kafka_deleter>;
using metadata_ptr = std::unique_ptr<const rd_kafka_metadata_t, kafka_deleter>;
using topic_ptr = std::unique_ptr<rd_kafka_topic_t, kafka_deleter>;

}  // namespace txbox::detail

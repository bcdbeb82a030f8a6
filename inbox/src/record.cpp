// Record decoding: rd_kafka_message_t -> ReceivedMessage, the dedupe key, storable text.
#include "record.hpp"

#include <fmt/format.h>

#include "txbox/validate.hpp"

namespace txbox {

const std::string* ReceivedMessage::header(std::string_view name) const {
  for (const auto& h : headers) {
    if (h.name == name) return &h.value;
  }
  return nullptr;
}

namespace inbox {

std::string tp_text(const TopicPartition& tp) {
  return fmt::format("{}/{}", tp.topic, tp.partition);
}

std::string dedupe_id(const ReceivedMessage& r) {
  const std::string* id = r.header(headers::id);
  std::string key;
  if (id && !id->empty()) {
    if (is_valid_utf8(*id) && id->find('\0') == std::string::npos) {
      key = *id;
    } else {
      key = "ce_id-hex:";
      for (unsigned char c : *id) key += fmt::format("{:02x}", c);
    }
  }
  if (key.empty() || key.size() > max_id_bytes) {
    key = fmt::format("kafka:{}/{}/{}", r.topic, r.partition, r.offset);
  }
  return key;
}

std::string storable_text(std::string_view text) {
  if (is_valid_utf8(text) && text.find('\0') == std::string_view::npos) return std::string(text);
  std::string out;
  for (unsigned char c : text) {
    if (c == 0 || c >= 0x80) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

ReceivedMessage decode_record(const rd_kafka_message_t& m) {
  ReceivedMessage r;
  r.topic = m.rkt ? rd_kafka_topic_name(m.rkt) : "";
  r.partition = m.partition;
  r.offset = m.offset;
  if (m.key) r.key.emplace(static_cast<const char*>(m.key), m.key_len);
  if (m.payload) r.payload.assign(static_cast<const char*>(m.payload), m.len);
  rd_kafka_timestamp_type_t tstype;
  const std::int64_t ts = rd_kafka_message_timestamp(&m, &tstype);
  if (ts >= 0) r.timestamp = std::chrono::system_clock::time_point(std::chrono::milliseconds(ts));
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(&m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name = nullptr;
    const void* value = nullptr;
    std::size_t size = 0;
    for (std::size_t i = 0;
         rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i) {
      r.headers.push_back(
          {name, value ? std::string(static_cast<const char*>(value), size) : std::string()});
    }
  }
  r.id = dedupe_id(r);
  return r;
}

}  // namespace inbox
}  // namespace txbox

// The message a service hands to the outbox, and the header names txbox puts on the wire.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace txbox {

/// One Kafka record header (name and value). Values are UTF-8 text in the outbox.
struct Header {
  std::string name{};
  std::string value{};
  friend bool operator==(const Header&, const Header&) = default;
};

/// An outgoing message. Example:
///   txbox::Message m{.topic = "orders", .key = "order-42", .payload = json, .type =
///   "OrderPlaced"};
struct Message {
  std::string topic{};               ///< Kafka topic: [a-zA-Z0-9._-], 1..249 chars.
  std::optional<std::string> key{};  ///< Ordering key; messages with one key keep commit order.
  std::string payload{};             ///< Bytes, at most OutboxConfig::max_payload_bytes.
  std::vector<Header> headers{};     ///< Extra headers (e.g. traceparent); names are not ce_*.
  std::string type{};                ///< CloudEvents type, sent as ce_type (optional).
};

/// Header names (CloudEvents Kafka binding, binary mode, plus W3C trace context).
namespace headers {
inline constexpr const char* id = "ce_id";
inline constexpr const char* type = "ce_type";
inline constexpr const char* source = "ce_source";
inline constexpr const char* specversion = "ce_specversion";
inline constexpr const char* time = "ce_time";
inline constexpr const char* traceparent = "traceparent";
}  // namespace headers

}  // namespace txbox

// txbox error hierarchy: the exception type answers "retry or not".
#pragma once

#include <stdexcept>
#include <string>

namespace txbox {

/// Base of every exception txbox throws; what() says what failed and what to do.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Invalid configuration (bad value, unknown key, unsafe setting). Fix the config; never retry.
class config_error : public error {
 public:
  using error::error;
};

/// The database schema is missing or at the wrong version. Apply the named migration.
class schema_error : public error {
 public:
  using error::error;
};

/// A message was refused before it reached the database or Kafka (bad topic, too large, ...).
/// Retrying the same message fails the same way.
class message_rejected : public error {
 public:
  using error::error;
};

/// A temporary failure (connection lost, broker unreachable); retry with backoff.
class transient_error : public error {
 public:
  using error::error;
};

}  // namespace txbox

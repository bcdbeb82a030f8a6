// What the Kafka log itself holds, read by a plain librdkafka consumer (not txbox): no group,
// isolation.level=read_committed, every partition of a topic assigned from the beginning up
// to its end. It counts each message id (the ce_id header) and checks per key the order of
// the workload's sequence numbers (payload "KEY SEQ"): what a consumer that is not a txbox
// inbox would see. Used by the chaos driver after every run, and while it waits for the drain
// in exactly-once mode (where transaction markers take offsets that carry no record).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace chaos {

/// The log of one topic as a read_committed consumer sees it.
struct LogAudit {
  std::int64_t records = 0;           ///< records delivered (committed, not control records)
  std::int64_t distinct_ids = 0;      ///< distinct ce_id values
  std::int64_t duplicate_copies = 0;  ///< records whose ce_id came before: records - distinct
  std::int64_t stale_copies = 0;      ///< a key's seq after a higher seq of that key
  /// The stale copies that leave their key behind (stale_copies.hpp): not a replay that
  /// catches up. Each with the CreateTime (ms) of its first copy and of the newer message
  /// it landed after, so that a fault letting leases expire in between can explain it.
  struct Behind {
    std::int64_t copies = 0, created_ms = 0, newer_created_ms = 0;
    std::string example;
  };
  std::vector<Behind> behind;
  std::int64_t without_id = 0;  ///< records with no ce_id header
  int open_partitions = 0;      ///< partitions whose last stable offset stayed below the end
  /// Per partition: the offset after its last record (0 when empty). The inbox's stored next
  /// offset must reach it; in exactly-once mode the end offset lies past it (the markers).
  std::vector<std::int64_t> data_end;
  /// Per partition: the end offset the read went to (the last stable offset).
  std::vector<std::int64_t> end;
  std::vector<std::string> details;  ///< examples of duplicates and stale copies
};

/// Reads every partition of `topic` (`partitions` of them) on `bootstrap` from the beginning
/// to its end offset. Waits first, up to `settle_s`, for the last stable offset to reach the
/// high watermark (an open transaction holds it back; LogAudit::details says so if one
/// stays open). Throws std::runtime_error when the broker does not answer or the read does
/// not reach the end within `timeout_s`.
LogAudit audit_log(const std::string& bootstrap, const std::string& topic, int partitions,
                   double settle_s, double timeout_s);

/// The records a read_committed consumer gets at or after `from[p]` on each partition of
/// `topic`, up to the end: 0 when the only offsets left are transaction markers or aborted
/// records. nullopt when the broker did not answer within `timeout_ms`.
std::optional<std::int64_t> records_after(const std::string& bootstrap, const std::string& topic,
                                          const std::vector<std::int64_t>& from, int timeout_ms);

/// The log line of the report: "log: N records, D duplicate copies, S stale copies (...)".
std::string log_line(const LogAudit& a);

}  // namespace chaos

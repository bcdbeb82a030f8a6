#!/usr/bin/env bash
# Kafka's own producer limit: Apache Kafka's ProducerPerformance (the tool behind
# kafka-producer-perf-test.sh) against a broker, at txbox-relay's producer settings.
#   bench/producer_perf.sh KAFKA_BOOTSTRAP RECORDS PARTITIONS
# Prints records/sec of the tool's final summary line on stdout; the tool's output on stderr.
#
# The topic (producer-perf-<P>p-<pid>) is created first with PARTITIONS partitions. The producer
# matches the relay's librdkafka producer: acks=all, enable.idempotence=true, linger.ms=5 (the
# relay's), batch.size=1000000 (librdkafka's default batch.size; its batch.num.messages=10000
# caps a batch at 10,000 records, which at this record size is under 1 MB anyway), no
# compression, 5 requests in flight per connection (librdkafka's idempotent maximum).
# Records are 300 B values without key or headers: the bench's relay messages carry a 200 B
# payload, a key of about 7 B and about 90 B of CloudEvents headers (ce_id, ce_source,
# ce_specversion, ce_type). The tool gives no key, so Java's default (sticky) partitioner spreads
# the records over the partitions a batch at a time.
# The tools' jars (org.apache.kafka:kafka-tools 3.9.1 and its runtime dependencies) are resolved
# with mvn from bench/producer_perf/pom.xml into ~/.cache/txbox/kafka-tools-3.9.1 once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
(($# == 3)) || { echo "usage: bench/producer_perf.sh KAFKA_BOOTSTRAP RECORDS PARTITIONS" >&2; exit 2; }
kafka=$1 records=$2 partitions=$3
version=3.9.1
record_size=300
cache=${TXBOX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/txbox}
jars=$cache/kafka-tools-$version

if [[ ! -f $jars/.complete ]]; then
  command -v mvn >/dev/null || { echo "producer_perf: mvn not found" >&2; exit 1; }
  echo "producer_perf: resolving org.apache.kafka:kafka-tools:$version into $jars" >&2
  rm -rf "$jars.tmp"
  mvn -q -B -f "$here/producer_perf/pom.xml" dependency:copy-dependencies \
    -Dkafka.version="$version" -DincludeScope=runtime -DoutputDirectory="$jars.tmp" >&2
  touch "$jars.tmp/.complete"
  rm -rf "$jars"
  mv "$jars.tmp" "$jars"
fi

java=(java -Xms256m -Xmx1g -Dlog4j.configuration="file:$here/producer_perf/log4j.properties"
  -cp "$jars/*")
topic=producer-perf-${partitions}p-$$
"${java[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "$kafka" --create \
  --topic "$topic" --partitions "$partitions" --replication-factor 1 >&2

out=$(mktemp)
trap 'rm -f "$out"' EXIT
"${java[@]}" org.apache.kafka.tools.ProducerPerformance --topic "$topic" \
  --num-records "$records" --record-size "$record_size" --throughput -1 \
  --producer-props bootstrap.servers="$kafka" acks=all enable.idempotence=true linger.ms=5 \
  batch.size=1000000 compression.type=none max.in.flight.requests.per.connection=5 \
  | tee "$out" >&2
# The final summary: "N records sent, R records/sec (M MB/sec), A ms avg latency, ..., P ms 50th,
# ..." (the periodic lines have no percentiles).
rate=$(awk '/records sent,/ && /50th/ {r = $4} END {print r}' "$out")
[[ -n $rate ]] || { echo "producer_perf: no summary line from ProducerPerformance" >&2; exit 1; }
printf '%.0f\n' "$rate"

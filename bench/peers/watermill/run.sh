#!/usr/bin/env bash
# Runs the Watermill peer: bench/peers/watermill/run.sh PG KAFKA MESSAGES [SUBSCRIBE_BATCH]
# Prints msgs/s. The forwarder sends one message per synchronous Kafka round trip, so it is
# given at most 20,000 messages (a steady rate: more would only make the run longer).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
n=$3
((n > 20000)) && n=20000
"$here/watermill-bench" "$1" "$2" "$n" "${4:-100}"

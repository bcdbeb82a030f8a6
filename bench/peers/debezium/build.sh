#!/usr/bin/env bash
# Builds the Debezium peer (Maven Central; not part of CI): target/debezium-bench.jar and its
# dependencies in target/lib/. Maven's local repository is its default (~/.m2).
set -euo pipefail
cd "$(dirname "$0")"
mvn -B -q -DskipTests package

#!/usr/bin/env bash
# Builds the Watermill peer (Go modules from the Go module proxy; not part of CI).
set -euo pipefail
cd "$(dirname "$0")"
export PATH=$PATH:/usr/local/go/bin
go mod tidy >/dev/null 2>&1 || go mod tidy
go build -o watermill-bench .

#!/usr/bin/env bash
# Builds the pg-transactional-outbox peer: installs the locked npm packages (npm registry; not
# part of CI). Needs Node >= 20 and npm.
set -euo pipefail
cd "$(dirname "$0")"
command -v node >/dev/null || { echo "pg-transactional-outbox peer: node not found" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error >&2
node -e "require('pg-transactional-outbox'); require('kafkajs'); require('pg')"

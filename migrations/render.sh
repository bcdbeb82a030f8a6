#!/usr/bin/env bash
# Prints txbox's migrations for a schema other than "txbox", for a DBA to review and apply:
#   migrations/render.sh billing_txbox | psql -v ON_ERROR_STOP=1
#   migrations/render.sh billing_txbox --out DIR   # one renamed file per migration (Flyway)
# Only schema references change; role names (txbox_writer, ...) stay as they are.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
schema=${1:-}
if [[ ! $schema =~ ^[a-z_][a-z0-9_]{0,62}$ ]]; then
  echo "usage: $0 SCHEMA [--out DIR]  (SCHEMA: 1-63 characters of [a-z0-9_], not starting with a digit)" >&2
  exit 2
fi
out=
if [[ ${2:-} == --out ]]; then out=${3:?--out needs a directory}; mkdir -p "$out"; fi
for f in "$here"/V*__*.sql; do
  rendered=$(sed -E "s/\btxbox([.;[:space:]])/${schema}\1/g" "$f")
  if [[ -n $out ]]; then printf '%s\n' "$rendered" > "$out/$(basename "$f")"; else printf '%s\n' "$rendered"; fi
done

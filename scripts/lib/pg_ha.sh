# PostgreSQL primary + streaming standby for the failover tests; sourced by scripts/servers.sh
# (uses its log, die, free_port, as_pg, env_value and pg_user).
#
# With TXBOX_TEST_PG_STANDBY=1, `servers.sh start DIR` also starts a standby of the cluster
# start_pg made (node 0): node 1, a pg_basebackup -R copy streaming through a physical
# replication slot (so a standby cut off for a while can catch up). Asynchronous by default;
# TXBOX_TEST_PG_SYNC=1 makes the primary wait for it (synchronous_standby_names = '*').
# The two nodes keep their ports when their roles swap: after pg-promote and pg-attach-standby
# node 1 is the primary and node 0 its new standby. State lives in DIR/pg_ha:
#   node<N>.data, node<N>.port, node<N>.pid, primary (the primary's node number), standby
#   (the standby's node number, absent when there is none), node<N>.conninfo (primary_conninfo
#   of a standby that was cut off, to restore it).
# endpoints.env gains TXBOX_TEST_PG_MULTI (both nodes, target_session_attrs=read-write: what
# an application on a failover pair uses), TXBOX_TEST_PG_MULTI_ADMIN, and per node
# TXBOX_TEST_PG_NODE<N> / TXBOX_TEST_PG_NODE<N>_ADMIN.

pg_ha_state() { echo "$1/pg_ha"; }

pg_ha_node_opts() {  # DIR NODE: the node's postgres options (node 0's are DIR/pg.opts)
  local dir=$1 node=$2 port
  port=$(cat "$(pg_ha_state "$dir")/node$node.port")
  sed -e "s/ -p [0-9]* / -p $port /" "$dir/pg.opts" | sed -e "s/$/ -c cluster_name=node$node/"
}

pg_ha_admin() {  # DIR NODE: the superuser conninfo of a node
  echo "host=127.0.0.1 port=$(cat "$(pg_ha_state "$1")/node$2.port") dbname=postgres user=postgres"
}

pg_ha_start_node() {  # DIR NODE
  local dir=$1 node=$2 st data
  st=$(pg_ha_state "$dir")
  data=$(cat "$st/node$node.data")
  as_pg "$(cat "$dir/pg.bindir")/pg_ctl" -D "$data" -l "$data.log" -w -t 120 start \
    -o "$(pg_ha_node_opts "$dir" "$node")" >/dev/null \
    || die "PostgreSQL node $node did not start: $(tail -5 "$data.log")"
  head -1 "$data/postmaster.pid" > "$st/node$node.pid"
}

# Makes node NODE a fresh standby of the current primary: base backup with -R (recovery
# settings) and -C -S (a new physical slot named after the node on the primary), then starts it
# and waits until it streams.
pg_ha_make_standby() {  # DIR NODE
  local dir=$1 node=$2 st primary data i
  st=$(pg_ha_state "$dir")
  primary=$(cat "$st/primary")
  data=$(cat "$st/node$node.data")
  rm -rf "$data"
  psql "$(pg_ha_admin "$dir" "$primary")" -qAt -c \
    "SELECT pg_drop_replication_slot('node$node') FROM pg_replication_slots WHERE slot_name = 'node$node'" \
    >/dev/null || die "could not drop the old slot node$node on node $primary"
  log "PostgreSQL: base backup of node $primary into node $node (port $(cat "$st/node$node.port"))"
  as_pg "$(cat "$dir/pg.bindir")/pg_basebackup" -h 127.0.0.1 -p "$(cat "$st/node$primary.port")" \
    -U postgres -D "$data" -R -C -S "node$node" -X stream -c fast >"$st/basebackup.log" 2>&1 \
    || die "pg_basebackup failed: $(tail -5 "$st/basebackup.log")"
  rm -f "$st/node$node.conninfo"
  pg_ha_start_node "$dir" "$node"
  echo "$node" > "$st/standby"
  if [[ ${TXBOX_TEST_PG_SYNC:-0} == 1 ]]; then
    psql "$(pg_ha_admin "$dir" "$primary")" -qAt -v ON_ERROR_STOP=1 >/dev/null \
      -c "ALTER SYSTEM SET synchronous_standby_names = '*'" -c "SELECT pg_reload_conf()" \
      || die "could not make node $primary wait for its standby"
  fi
  for i in $(seq 1 200); do
    if [[ $(psql "$(pg_ha_admin "$dir" "$primary")" -qAt -c \
      "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") -ge 1 ]]; then
      return 0
    fi
    sleep 0.1
  done
  die "the standby (node $node) does not stream from node $primary after 20 s"
}

# After start_pg: node 0 is the primary; sets up node 1 as its standby.
pg_ha_start() {  # DIR
  local dir=$1 st pgdir owner admin n
  st=$(pg_ha_state "$dir")
  rm -rf "$st"
  mkdir -p "$st"
  pgdir=$(cat "$dir/pg.dir")
  echo "$pgdir/data" > "$st/node0.data"
  echo "$pgdir/node1" > "$st/node1.data"
  sed -n 's/.* -p \([0-9]*\) .*/\1/p' "$dir/pg.opts" > "$st/node0.port"
  free_port > "$st/node1.port"
  cp "$dir/pg.pid" "$st/node0.pid"
  echo 0 > "$st/primary"
  pg_ha_make_standby "$dir" 1
  local p0 p1
  p0=$(cat "$st/node0.port")
  p1=$(cat "$st/node1.port")
  owner="dbname=txbox user=txbox_owner"
  admin="dbname=postgres user=postgres"
  {
    echo "TXBOX_TEST_PG_MULTI='host=127.0.0.1,127.0.0.1 port=$p0,$p1 $owner target_session_attrs=read-write connect_timeout=2'"
    echo "TXBOX_TEST_PG_MULTI_ADMIN='host=127.0.0.1,127.0.0.1 port=$p0,$p1 $admin target_session_attrs=read-write connect_timeout=2'"
    for n in 0 1; do
      echo "TXBOX_TEST_PG_NODE$n='host=127.0.0.1 port=$(cat "$st/node$n.port") $owner'"
      echo "TXBOX_TEST_PG_NODE${n}_ADMIN='host=127.0.0.1 port=$(cat "$st/node$n.port") $admin'"
    done
    echo "TXBOX_TEST_PG_HA_DIR='$st'"
  } >> "$dir/endpoints.env"
  log "PostgreSQL: standby (node 1) streaming on 127.0.0.1:$p1 ($([[ ${TXBOX_TEST_PG_SYNC:-0} == 1 ]] && echo sync || echo async))"
}

pg_ha_need() {  # DIR ROLE: the node number of the primary or standby, or die
  local st
  st=$(pg_ha_state "$1")
  [[ -f $st/node1.port ]] || die "no primary/standby pair was set up in $1 (TXBOX_TEST_PG_STANDBY=1)"
  [[ -f $st/$2 ]] || die "there is no $2 in $1"
  cat "$st/$2"
}

pg_ha_load() {  # DIR: the server user and binaries of DIR
  pg_user=$(env_value "$1" TXBOX_TEST_PG_USER)
}

# Stops the standby's replication (primary_conninfo = '', reloaded: the walreceiver exits; the
# standby stays up and readable, and keeps what it has). Its slot keeps the primary's WAL.
pg_ha_cut_standby() {  # DIR
  local dir=$1 st node
  node=$(pg_ha_need "$dir" standby)
  st=$(pg_ha_state "$dir")
  [[ -f $st/node$node.conninfo ]] && die "the standby (node $node) is already cut off"
  psql "$(pg_ha_admin "$dir" "$node")" -qAt -c "SHOW primary_conninfo" > "$st/node$node.conninfo" \
    || die "cannot read the standby's primary_conninfo"
  psql "$(pg_ha_admin "$dir" "$node")" -qAt -v ON_ERROR_STOP=1 >/dev/null \
    -c "ALTER SYSTEM SET primary_conninfo = ''" -c "SELECT pg_reload_conf()" \
    || die "cannot cut the standby off"
  local primary i
  primary=$(cat "$st/primary")
  for i in $(seq 1 100); do
    if [[ $(psql "$(pg_ha_admin "$dir" "$primary")" -qAt -c \
      "SELECT count(*) FROM pg_stat_replication") == 0 ]]; then
      log "PostgreSQL: standby (node $node) cut off"
      return 0
    fi
    sleep 0.1
  done
  die "the standby (node $node) still replicates 10 s after it was cut off"
}

# Undoes pg-cut-standby: the standby reconnects and catches up through its slot.
pg_ha_reconnect_standby() {  # DIR
  local dir=$1 st node conninfo
  node=$(pg_ha_need "$dir" standby)
  st=$(pg_ha_state "$dir")
  [[ -f $st/node$node.conninfo ]] || die "the standby (node $node) is not cut off"
  conninfo=$(cat "$st/node$node.conninfo")
  psql "$(pg_ha_admin "$dir" "$node")" -qAt -v ON_ERROR_STOP=1 -v c="$conninfo" >/dev/null \
    <<'SQL' || die "cannot reconnect the standby"
ALTER SYSTEM SET primary_conninfo = :'c';
SELECT pg_reload_conf();
SQL
  rm -f "$st/node$node.conninfo"
  log "PostgreSQL: standby (node $node) reconnecting"
}

# A crash of the primary: pg_ctl stop -m immediate (no shutdown checkpoint, nothing flushed to
# the standby any more).
pg_ha_kill_primary() {  # DIR
  local dir=$1 st node data
  pg_ha_load "$dir"
  node=$(pg_ha_need "$dir" primary)
  st=$(pg_ha_state "$dir")
  data=$(cat "$st/node$node.data")
  as_pg "$(cat "$dir/pg.bindir")/pg_ctl" -D "$data" -m immediate -w -t 60 stop >/dev/null \
    || die "could not stop the primary (node $node)"
  rm -f "$st/node$node.pid"
  [[ $node == 0 ]] && rm -f "$dir/pg.pid"
  rm -f "$st/primary"
  log "PostgreSQL: primary (node $node) killed"
}

# Promotes the standby (the primary must be gone: pg-kill-primary first).
pg_ha_promote() {  # DIR
  local dir=$1 st node
  pg_ha_load "$dir"
  st=$(pg_ha_state "$dir")
  [[ -f $st/primary ]] && die "node $(cat "$st/primary") is still the primary (pg-kill-primary first)"
  node=$(pg_ha_need "$dir" standby)
  as_pg "$(cat "$dir/pg.bindir")/pg_ctl" -D "$(cat "$st/node$node.data")" -w -t 60 promote \
    >/dev/null || die "pg_ctl promote of node $node failed"
  # A cut-off standby keeps primary_conninfo = '' in postgresql.auto.conf: harmless on a
  # primary, but reset it so the node is clean.
  if [[ -f $st/node$node.conninfo ]]; then
    psql "$(pg_ha_admin "$dir" "$node")" -qAt >/dev/null -c "ALTER SYSTEM RESET primary_conninfo"
    rm -f "$st/node$node.conninfo"
  fi
  echo "$node" > "$st/primary"
  rm -f "$st/standby"
  log "PostgreSQL: node $node promoted"
}

# Makes the node that is neither primary nor standby (the killed old primary) a new standby of
# the current primary (a fresh base backup, as Patroni does without pg_rewind).
pg_ha_attach_standby() {  # DIR
  local dir=$1 st primary node
  pg_ha_load "$dir"
  st=$(pg_ha_state "$dir")
  primary=$(pg_ha_need "$dir" primary)
  [[ -f $st/standby ]] && die "node $(cat "$st/standby") is already the standby"
  node=$((1 - primary))
  pg_ha_make_standby "$dir" "$node"
  log "PostgreSQL: node $node is the standby of node $primary"
}

pg_ha_status() {  # DIR: "primary N standby M|none"
  local st
  st=$(pg_ha_state "$1")
  echo "primary $(cat "$st/primary" 2>/dev/null || echo none) standby $(cat "$st/standby" 2>/dev/null || echo none)"
}

# Stops every node of DIR's pair (by pid; fast shutdown, then SIGKILL).
pg_ha_stop() {  # DIR
  local st f pid i
  st=$(pg_ha_state "$1")
  [[ -d $st ]] || return 0
  for f in "$st"/node*.pid; do
    [[ -f $f ]] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      log "PostgreSQL: stopping pid $pid ($(basename "$f" .pid))"
      kill -INT "$pid" 2>/dev/null || true
      for i in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

# Kafka cluster mode of scripts/servers.sh (sourced by it; uses its log, die, free_port,
# kafka_jars, kafka_log_config, kafka_select_of, running and env_value; the broker version is
# servers.sh's, TXBOX_TEST_KAFKA_VERSION). With TXBOX_TEST_KAFKA_BROKERS=3, `start DIR` runs:
#   - one KRaft controller (node 0, controller only: the quorum the faults never touch), and
#   - brokers 1..3 (broker only), each in DIR/kafka-N with its own data, log and DIR/kafka-N.pid.
# Cluster defaults: replication factor 3, min.insync.replicas 2, unclean leader election off,
# internal topics (offsets, transactions) RF 3 / min ISR 2; Kafka's own failure-detection
# timings (broker.session.timeout.ms 9 s, replica.lag.time.max.ms 30 s), so the stall a
# test measures is the one a default cluster shows. Small heaps: four JVMs fit on 2 cores.
#
# endpoints.env gets TXBOX_TEST_KAFKA (all three brokers), TXBOX_TEST_KAFKA_BROKERS (3),
# TXBOX_TEST_KAFKA_NODE_N (broker N's address) and TXBOX_TEST_KAFKA_DIR.
# Per-node faults (N = 1..3):
#   node-kill DIR N [SIGNAL]   kill it (default SIGKILL, a crash) and wait until it is gone
#   node-pause DIR N           SIGSTOP: it stops answering, fetching and heartbeating
#   node-resume DIR N          SIGCONT
#   node-start DIR N           run it again (same config, port and data)
#   node-wipe DIR N            crash it, lose its disk (data and metadata), format it empty
#                              with the same cluster and node id, and start it: it rejoins
#                              and re-replicates from the others
#   leader DIR TOPIC [P]       the node id leading partition P (default 0), -1 when none

# Sets the array jvm to the java command line for the node in $1 with heap $2.
cluster_jvm() {
  local log_flag="-Dlog4j.configuration=file:$1/log4j.properties"
  [[ $KAFKA_MAJOR == 3 ]] || log_flag="-Dlog4j2.configurationFile=$1/log4j2.properties"
  jvm=(java -Xms64m "-Xmx$2" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 "$log_flag" -cp "$jars/*")
}

cluster_log4j() {
  local kafka_log_flag
  kafka_log_config "$1" state.change.logger WARN
}

# Writes DIR/kafka-N/server.properties for node N (0: the controller).
cluster_node_config() {
  local dir=$1 n=$2 cport=$3 port=${4:-} node_dir=$1/kafka-$2
  mkdir -p "$node_dir/data"
  cluster_log4j "$node_dir"
  if [[ $n == 0 ]]; then
    cat > "$node_dir/server.properties" <<PROPS
process.roles=controller
node.id=0
controller.quorum.voters=0@127.0.0.1:$cport
listeners=CONTROLLER://127.0.0.1:$cport
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT
log.dirs=$node_dir/data
# Kafka 4.1 enables eligible leader replicas (KIP-966) on a new cluster, and with them a
# broker-level min.insync.replicas is dropped: the cluster-level one, the active controller's,
# applies (without this line the topics get 1 on 4.1; on 3.9 it changes nothing).
min.insync.replicas=2
PROPS
    return
  fi
  cat > "$node_dir/server.properties" <<PROPS
process.roles=broker
node.id=$n
controller.quorum.voters=0@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$node_dir/data
num.partitions=${TXBOX_TEST_KAFKA_PARTITIONS:-1}
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=3
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
auto.create.topics.enable=true
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
background.threads=2
PROPS
}

# Starts node N of DIR in its own session; waits until it logs a new "started" line.
cluster_launch() {
  local dir=$1 n=$2 node_dir=$1/kafka-$2 before i heap=384m marker="Kafka Server started"
  [[ $n == 0 ]] && heap=256m
  before=$(grep -c "$marker" "$node_dir/server.log" 2>/dev/null || true)
  local jvm
  cluster_jvm "$node_dir" "$heap"
  setsid "${jvm[@]}" kafka.Kafka "$node_dir/server.properties" \
    >>"$node_dir/stdout.log" 2>&1 </dev/null &
  echo $! > "$dir/kafka-$n.pid"
  for i in $(seq 1 480); do
    if (( $(grep -c "$marker" "$node_dir/server.log" 2>/dev/null || true) > ${before:-0} )); then
      return 0
    fi
    running "$(cat "$dir/kafka-$n.pid")" \
      || die "Kafka node $n exited at start: $(tail -5 "$node_dir/stdout.log" "$node_dir/server.log" 2>/dev/null)"
    sleep 0.25
  done
  die "Kafka node $n did not start within 120 s"
}

cluster_format() {
  local node_dir=$1 cluster_id=$2
  local jvm
  cluster_jvm "$node_dir" 256m
  "${jvm[@]}" kafka.tools.StorageTool format -t "$cluster_id" \
    -c "$node_dir/server.properties" >"$node_dir/format.log" 2>&1 \
    || die "formatting $node_dir failed: $(tail -5 "$node_dir/format.log")"
}

start_kafka_cluster() {
  local dir=$1 brokers=$2 cport cluster_id n bootstrap="" pids=()
  [[ $brokers == 3 ]] || die "TXBOX_TEST_KAFKA_BROKERS must be 1 or 3 (got '$brokers')"
  command -v java >/dev/null || die "java not found (scripts/install-deps.sh installs openjdk-17)"
  kafka_jars
  cport=$(free_port)
  cluster_node_config "$dir" 0 "$cport"
  for n in 1 2 3; do
    local port
    port=$(free_port)
    cluster_node_config "$dir" "$n" "$cport" "$port"
    bootstrap+="${bootstrap:+,}127.0.0.1:$port"
    echo "TXBOX_TEST_KAFKA_NODE_$n='127.0.0.1:$port'" >> "$dir/endpoints.env"
  done
  local jvm
  cluster_jvm "$dir/kafka-0" 256m
  cluster_id=$("${jvm[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
  [[ -n $cluster_id ]] || die "kafka.tools.StorageTool random-uuid gave no cluster id"
  echo "$cluster_id" > "$dir/kafka-cluster.id"
  for n in 0 1 2 3; do cluster_format "$dir/kafka-$n" "$cluster_id" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || die "formatting the cluster's storage failed"; done
  log "Kafka $KAFKA_VERSION cluster: controller on 127.0.0.1:$cport, brokers $bootstrap"
  cluster_launch "$dir" 0
  pids=()
  for n in 1 2 3; do cluster_launch "$dir" "$n" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || die "a broker of the cluster did not start"; done
  {
    echo "TXBOX_TEST_KAFKA='$bootstrap'"
    echo "TXBOX_TEST_KAFKA_BROKERS='3'"
    echo "TXBOX_TEST_KAFKA_DIR='$dir'"
    echo "TXBOX_TEST_KAFKA_JARS='$jars'"
    echo "TXBOX_TEST_KAFKA_VERSION='$KAFKA_VERSION'"
  } >> "$dir/endpoints.env"
}

cluster_node_arg() {
  local dir=$1 n=$2
  [[ $n =~ ^[1-3]$ ]] || die "node must be 1, 2 or 3 (got '$n')"
  [[ -f $dir/kafka-$n/server.properties ]] || die "no Kafka cluster was set up in $dir"
}

node_kill() {
  local dir=$1 n=$2 sig=${3:-KILL} pid i
  cluster_node_arg "$dir" "$n"
  [[ -f $dir/kafka-$n.pid ]] || die "Kafka node $n of $dir is not running"
  pid=$(cat "$dir/kafka-$n.pid")
  kill -CONT "$pid" 2>/dev/null || true   # a paused node must be able to die
  kill -"$sig" "$pid" 2>/dev/null || true
  for i in $(seq 1 300); do running "$pid" || break; sleep 0.1; done
  running "$pid" && die "Kafka node $n (pid $pid) did not stop on SIG$sig within 30 s"
  rm -f "$dir/kafka-$n.pid"
}

node_signal() {
  local dir=$1 n=$2 sig=$3
  cluster_node_arg "$dir" "$n"
  [[ -f $dir/kafka-$n.pid ]] && running "$(cat "$dir/kafka-$n.pid")" \
    || die "Kafka node $n of $dir is not running"
  kill -"$sig" "$(cat "$dir/kafka-$n.pid")"
}

node_start() {
  local dir=$1 n=$2
  cluster_node_arg "$dir" "$n"
  [[ -f $dir/kafka-$n.pid ]] && running "$(cat "$dir/kafka-$n.pid")" \
    && die "Kafka node $n of $dir is running"
  kafka_select_of "$dir"
  kafka_jars
  cluster_launch "$dir" "$n"
}

node_wipe() {
  local dir=$1 n=$2
  cluster_node_arg "$dir" "$n"
  [[ -f $dir/kafka-$n.pid ]] && node_kill "$dir" "$n" KILL
  kafka_select_of "$dir"
  rm -rf "$dir/kafka-$n/data"
  mkdir -p "$dir/kafka-$n/data"
  cluster_format "$dir/kafka-$n" "$(cat "$dir/kafka-cluster.id")"
  cluster_launch "$dir" "$n"
}

# The leader of TOPIC's partition P, from the brokers' metadata (kcat), -1 when none.
partition_leader() {
  local dir=$1 topic=$2 p=${3:-0}
  command -v kcat >/dev/null || die "kcat not found (scripts/install-deps.sh installs it)"
  kcat -L -J -m 5 -b "$(env_value "$dir" TXBOX_TEST_KAFKA)" -t "$topic" 2>/dev/null |
    jq -r --argjson p "$p" \
      '[.topics[0].partitions[] | select(.partition == $p) | .leader][0] // -1'
}

# The cluster is throwaway: its brokers are killed at once (a controlled shutdown moves every
# partition's leadership away first, which took up to 50 s after a test's faults); the
# controller, which leads nothing, stops on SIGTERM.
stop_kafka_cluster() {
  local dir=$1 n pid i
  for n in 3 2 1 0; do
    [[ -f $dir/kafka-$n.pid ]] || continue
    pid=$(cat "$dir/kafka-$n.pid")
    if kill -0 "$pid" 2>/dev/null; then
      if ((n > 0)); then
        kill -KILL "$pid" 2>/dev/null || true
      else
        kill -CONT "$pid" 2>/dev/null || true
        kill -TERM "$pid" 2>/dev/null || true
      fi
    fi
  done
  for n in 3 2 1 0; do
    [[ -f $dir/kafka-$n.pid ]] || continue
    pid=$(cat "$dir/kafka-$n.pid")
    for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$dir/kafka-$n.pid"
  done
}

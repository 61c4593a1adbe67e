#!/usr/bin/env bash
# The local stack for developing and testing tor: MariaDB (binlog source),
# Redis (lease and checkpoint) and Apache Kafka (KRaft, one node or three;
# DESIGN.md §9), all as plain background processes of this user, everything
# under one run directory.  The development broker (bin/tor-devbroker,
# librdkafka's mock cluster) stands in for Kafka with TOR_KAFKA=dev, or runs
# beside it as the service "devbroker".
#
#   stack.sh start|stop|status|restart [mariadb|mariadb-replica|redis|kafka|devbroker|sentinel|redis-cluster ...]   (default: all)
#   stack.sh destroy                     stop all and remove the run directory
#   stack.sh kafka-ctl kill|start|stop|pause|resume N
#                                        kill -9, restart on its data, SIGTERM,
#                                        SIGSTOP or SIGCONT Kafka node N
#   stack.sh broker-ctl <command...>     the dev broker's, e.g. `broker-ctl down 1`
#   stack.sh mysql-ctl promote|reset-replica
#                                        promote: the replica stops replicating
#                                        and becomes writable; reset-replica:
#                                        stop it and drop its datadir
#   stack.sh env                         print the env file
#   stack.sh tor-config                  print a tor.cfg (the sample) pointed at this stack
#
# Environment:
#   TOR_RUN_DIR        run directory (default <repo>/run/local)
#   TOR_MYSQL_PORT     MariaDB port (default 3307)
#   TOR_REDIS_PORT     Redis port (default 6380)
#   TOR_MYSQL_EXTRA    extra mariadbd options, e.g. "--binlog-format=STATEMENT"
#   TOR_KAFKA          "kafka" (default): "all" is Apache Kafka; "dev": the
#                      dev broker instead (no JVM)
#   TOR_KAFKA_NODES    Kafka nodes, 1 (default) or 3 (replication factor 3,
#                      min.insync.replicas 2); storage is formatted again
#                      when it changes
#   TOR_KAFKA_PORT     node 1's client port (default 9192); node i listens on
#                      +i-1 for clients, +10+i-1 for its controller, +30+i-1
#                      for clients that reach it through a test's proxy on
#                      +40+i-1 (the address that listener advertises); a
#                      stack's Kafka takes the 50 ports from TOR_KAFKA_PORT
#   TOR_KAFKA_HEAP     each node's heap (default 384m)
#   TOR_KAFKA_SASL_SSL a directory with ca.pem and server.pem (the key, in
#                      PKCS#8, and its certificate): every node also listens
#                      for SASL_SSL on +20+i-1, mechanisms SCRAM-SHA-512 and
#                      PLAIN; users TOR_KAFKA_SCRAM_USERS ("name:password
#                      ...") are made for both when the storage is formatted
#                      (librdkafka before 2.6.1 cannot authenticate with SCRAM
#                      to Kafka 4.x, which checks the nonce strictly: PLAIN
#                      over TLS serves such clients)
#   TOR_BROKER_TOPICS  topics made at start (unset: "order:3 invoice:3 dlq:1"; "": none);
#                      others are made on first use with 4 partitions.  tor
#                      makes its checkpoint topic itself on Kafka; the dev
#                      broker cannot CreateTopics (DESIGN.md §9), so there
#                      __tor_checkpoints:1 is always added
#   TOR_SENTINEL       1: "all" includes the sentinel service (default: off)
#   TOR_MYSQL_REPLICA_PORT  the port of the optional service mariadb-replica
#                      (default TOR_MYSQL_PORT+1)
#
# The mariadb-replica service is optional and never part of "all": a second
# MariaDB (server_id 2, the primary's binlog settings, log_slave_updates) in
# $TOR_RUN_DIR/mariadb-replica that replicates from the main one by GTID
# (MASTER_USE_GTID=slave_pos) as user tor.  At its first start it begins at
# the primary's gtid_binlog_pos: it holds what is written after (the stack's
# users and database are provisioned on it apart).  While it runs, the env
# file also holds TOR_MYSQL_REPLICA_PORT.  `mysql-ctl promote` makes it a
# primary (the main MariaDB is left as it is: stop it for a failover).
#
# The sentinel service is optional and never part of "all" unless
# TOR_SENTINEL=1: a Redis replica on TOR_REDIS_PORT+1 (replicaof the main
# Redis) and three redis-sentinel processes on TOR_REDIS_PORT+100..+102
# that monitor the main Redis as master "mymaster" (quorum 2, down after
# 1000 ms, failover timeout 3000 ms).  Its start waits until every Sentinel
# sees the master, the replica and the two other Sentinels; its stop (also
# part of a plain `stop`) ends them and makes the main Redis a master again,
# whatever a failover did to it.  While it runs, the env file also holds
# TOR_SENTINEL_MASTER, TOR_SENTINEL_NODES ("127.0.0.1:p1,127.0.0.1:p2,...")
# and TOR_SENTINEL_REPLICA_PORT.
#
# The redis-cluster service is optional too and never part of "all": a
# Redis Cluster of three masters with one replica each on TOR_REDIS_PORT+200
# ..+205 (cluster-node-timeout 1000 ms, no persistence, a fresh cluster at
# every start: made by `redis-cli --cluster create --cluster-replicas 1`).
# Its start waits until every node says cluster_state:ok and knows all six,
# and every replica has synced with its master;
# its stop (also part of a plain `stop`) ends them and forgets the cluster.
# While it runs, the env file also holds TOR_REDIS_CLUSTER_NODES
# ("127.0.0.1:p1,...", all six) and TOR_REDIS_CLUSTER_DIR (node-<port>.conf
# starts a node again on its cluster state after a test killed it).
#
# TOR_SENTINEL_ACL=1 (at start): the Sentinels take no unauthenticated
# client (user default off): ACL user "stack" (password "stack-secret", all
# commands: this script and the Sentinels among themselves) and "tor"
# (password "tor-sentinel-secret", AUTH, PING and SENTINEL
# get-master-addr-by-name only).
#
# After start, $TOR_RUN_DIR/env holds TOR_MYSQL_HOST, TOR_MYSQL_PORT,
# TOR_MYSQL_SOCKET, TOR_REDIS_PORT and TOR_KAFKA_BROKERS (Kafka's, or the dev
# broker's with TOR_KAFKA=dev) in shell syntax: `. run/local/env`; with
# Kafka also TOR_KAFKA_NODES (and TOR_KAFKA_SASL_SSL_BROKERS), with the dev
# broker TOR_DEVBROKER_BROKERS and TOR_BROKER_CONTROL (its control socket).
#
# MariaDB users made at the first start: tor/tor (replication and SELECT on
# *.*), app/app (ALL on shop.*), root without password from 127.0.0.1 and
# through the socket.  The datadirs (MariaDB's, Kafka's) survive
# stop/restart; `destroy` drops them.
set -u

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# Absolute: mariadbd resolves the paths of its my.cnf from its own working
# directory, not ours.
RUN_DIR=$(realpath -m "${TOR_RUN_DIR:-$repo/run/local}")
MYSQL_PORT=${TOR_MYSQL_PORT:-3307}
REDIS_PORT=${TOR_REDIS_PORT:-6380}
MYSQL_EXTRA=${TOR_MYSQL_EXTRA:-}
BROKER_TOPICS=${TOR_BROKER_TOPICS-order:3 invoice:3 dlq:1}
DEVBROKER=$repo/bin/tor-devbroker
KAFKA_MODE=${TOR_KAFKA:-kafka}
KAFKA_NODES=${TOR_KAFKA_NODES:-1}
KAFKA_PORT=${TOR_KAFKA_PORT:-9192}
KAFKA_HEAP=${TOR_KAFKA_HEAP:-384m}
KAFKA_SASL_SSL=${TOR_KAFKA_SASL_SSL:-}
KAFKA_SCRAM_USERS=${TOR_KAFKA_SCRAM_USERS:-}
KAFKA_LIB=${TOR_KAFKA_LIB:-$repo/build/kafka/lib}
KAFKA_STOP_TIMEOUT=${TOR_KAFKA_STOP_TIMEOUT:-10}
case "$KAFKA_NODES" in 1 | 3) ;; *) printf 'stack: TOR_KAFKA_NODES must be 1 or 3, not %s\n' "$KAFKA_NODES" >&2; exit 2 ;; esac
case "$KAFKA_MODE" in kafka | dev) ;; *) printf 'stack: TOR_KAFKA must be kafka or dev, not %s\n' "$KAFKA_MODE" >&2; exit 2 ;; esac

MY_DIR=$RUN_DIR/mariadb
MYR_PORT=${TOR_MYSQL_REPLICA_PORT:-$((MYSQL_PORT + 1))}
MYR_DIR=$RUN_DIR/mariadb-replica
MYR_CNF=$MYR_DIR/my.cnf
MYR_PID=$MYR_DIR/mysqld.pid
MY_CNF=$MY_DIR/my.cnf
MY_SOCK=$MY_DIR/mysqld.sock
MY_PID=$MY_DIR/mysqld.pid
REDIS_DIR=$RUN_DIR/redis
REDIS_PID=$REDIS_DIR/redis.pid
BROKER_DIR=$RUN_DIR/broker
BROKER_PID=$BROKER_DIR/broker.pid
BROKER_CTL=$BROKER_DIR/control.sock
BROKER_BOOTSTRAP=$BROKER_DIR/bootstrap
KAFKA_DIR=$RUN_DIR/kafka
SENTINEL_DIR=$RUN_DIR/sentinel
SENTINEL_MASTER=mymaster
REPLICA_PORT=$((REDIS_PORT + 1))
SENTINEL_PORTS=($((REDIS_PORT + 100)) $((REDIS_PORT + 101)) $((REDIS_PORT + 102)))
CLUSTER_DIR=$RUN_DIR/redis-cluster
CLUSTER_PORTS=()
for ((i = 200; i <= 205; i++)); do CLUSTER_PORTS+=($((REDIS_PORT + i))); done

ALL_SERVICES=(mariadb redis kafka)
[ "$KAFKA_MODE" = dev ] && ALL_SERVICES=(mariadb redis devbroker)
# Sentinels watch Redis: they go up after it and down before it, or they
# would fail over a Redis that is only being stopped.
[ "${TOR_SENTINEL:-0}" = 1 ] && ALL_SERVICES+=(sentinel)
STOP_TIMEOUT=${TOR_STOP_TIMEOUT:-30}

say() { printf 'stack: %s\n' "$*"; }
die() { printf 'stack: %s\n' "$*" >&2; exit 1; }

# Copies a template to the run directory with its @NAME@ placeholders filled.
render() {
	sed -e "s|@RUN_DIR@|$RUN_DIR|g" \
	    -e "s|@MYSQL_PORT@|$MYSQL_PORT|g" \
	    -e "s|@REDIS_PORT@|$REDIS_PORT|g" "$1" >"$2.tmp" && mv "$2.tmp" "$2"
}

# shellcheck source=deploy/local/proc.sh
. "$here/proc.sh"

# True when some Kafka node of this run directory runs.
kafka_running() {
	local i
	for ((i = 1; i <= 3; i++)); do
		kafka_node_pid "$i" >/dev/null && return 0
	done
	return 1
}

write_env() {
	local brokers="" dev=""
	[ -s "$BROKER_BOOTSTRAP" ] && dev=$(head -n 1 "$BROKER_BOOTSTRAP")
	if [ "$KAFKA_MODE" = dev ]; then
		brokers=$dev
	elif kafka_running || [ -f "$KAFKA_DIR/.formatted" ]; then
		brokers=$(kafka_bootstrap)
	fi
	mkdir -p "$RUN_DIR"
	cat >"$RUN_DIR/env.tmp" <<EOF
# Written by deploy/local/stack.sh; source it: . $RUN_DIR/env
TOR_RUN_DIR='$RUN_DIR'
TOR_MYSQL_HOST='127.0.0.1'
TOR_MYSQL_PORT='$MYSQL_PORT'
TOR_MYSQL_SOCKET='$MY_SOCK'
TOR_REDIS_PORT='$REDIS_PORT'
TOR_KAFKA_BROKERS='$brokers'
export TOR_RUN_DIR TOR_MYSQL_HOST TOR_MYSQL_PORT TOR_MYSQL_SOCKET TOR_REDIS_PORT TOR_KAFKA_BROKERS
EOF
	if [ "$KAFKA_MODE" = kafka ] && [ -n "$brokers" ]; then
		cat >>"$RUN_DIR/env.tmp" <<EOF
TOR_KAFKA_NODES='$KAFKA_NODES'
TOR_KAFKA_PORT='$KAFKA_PORT'
TOR_KAFKA_PROXIED_BROKERS='$(kafka_proxied_bootstrap)'
export TOR_KAFKA_NODES TOR_KAFKA_PORT TOR_KAFKA_PROXIED_BROKERS
EOF
		[ -n "$KAFKA_SASL_SSL" ] && cat >>"$RUN_DIR/env.tmp" <<EOF
TOR_KAFKA_SASL_SSL_BROKERS='$(kafka_secure_bootstrap)'
export TOR_KAFKA_SASL_SSL_BROKERS
EOF
	fi
	if [ -n "$dev" ]; then
		cat >>"$RUN_DIR/env.tmp" <<EOF
TOR_DEVBROKER_BROKERS='$dev'
TOR_BROKER_CONTROL='$BROKER_CTL'
export TOR_DEVBROKER_BROKERS TOR_BROKER_CONTROL
EOF
	fi
	sentinel_up && sentinel_env >>"$RUN_DIR/env.tmp"
	cluster_up && cluster_env >>"$RUN_DIR/env.tmp"
	live_pid "$MYR_PID" mariadbd >/dev/null && cat >>"$RUN_DIR/env.tmp" <<EOF
TOR_MYSQL_REPLICA_PORT='$MYR_PORT'
export TOR_MYSQL_REPLICA_PORT
EOF
	mv "$RUN_DIR/env.tmp" "$RUN_DIR/env"
}

# ---- MariaDB ---------------------------------------------------------------

mariadb_answers() {
	mariadb-admin --defaults-file="$MY_CNF" -uroot --connect-timeout=2 ping >/dev/null 2>&1
}

mariadb_fail() {
	say "mariadb: $1; last lines of $MY_DIR/error.log:"
	tail -n 30 "$MY_DIR/error.log" 2>/dev/null | sed 's/^/    /'
	exit 1
}

# Creates the datadir once; a half-done install (no marker) is redone.
mariadb_install() {
	[ -f "$MY_DIR/.installed" ] && return 0
	say "mariadb: creating datadir $MY_DIR/data (first start)"
	rm -rf "$MY_DIR/data"
	mkdir -p "$MY_DIR/data"
	if ! mariadb-install-db --defaults-file="$MY_CNF" --user=root \
	    --auth-root-authentication-method=socket --skip-test-db \
	    >"$MY_DIR/install.log" 2>&1; then
		say "mariadb: mariadb-install-db failed:"
		tail -n 30 "$MY_DIR/install.log" | sed 's/^/    /'
		exit 1
	fi
	touch "$MY_DIR/.installed"
}

# Users and database, once, after the server answers.  Idempotent SQL, and the
# marker is set only when all of it ran, so a failed first start is retried.
mariadb_provision() {
	local dir=${1:-$MY_DIR}
	[ -f "$dir/.provisioned" ] && return 0
	mariadb --defaults-file="$dir/my.cnf" -uroot <<'EOF' || mariadb_fail "provisioning SQL failed"
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS 'tor'@'%' IDENTIFIED BY 'tor';
CREATE USER IF NOT EXISTS 'tor'@'localhost' IDENTIFIED BY 'tor';
GRANT REPLICATION SLAVE, BINLOG MONITOR, REPLICATION CLIENT, SELECT ON *.* TO 'tor'@'%';
GRANT REPLICATION SLAVE, BINLOG MONITOR, REPLICATION CLIENT, SELECT ON *.* TO 'tor'@'localhost';
CREATE DATABASE IF NOT EXISTS shop;
CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'app';
CREATE USER IF NOT EXISTS 'app'@'localhost' IDENTIFIED BY 'app';
GRANT ALL ON shop.* TO 'app'@'%';
GRANT ALL ON shop.* TO 'app'@'localhost';
FLUSH PRIVILEGES;
EOF
	touch "$dir/.provisioned"
}

start_mariadb() {
	local pid i
	mkdir -p "$MY_DIR/tmp"
	render "$here/my.cnf.in" "$MY_CNF"
	if pid=$(live_pid "$MY_PID" mariadbd) && mariadb_answers; then
		say "mariadb: already up (pid $pid, port $MYSQL_PORT)"
		mariadb_provision
		return 0
	fi
	if [ -z "${pid:-}" ]; then
		mariadb_install
		rm -f "$MY_PID"
		# Own session, fds to files: the caller (a test runner capturing
		# our output) must not wait for the server.
		# shellcheck disable=SC2086  # TOR_MYSQL_EXTRA is a list of options
		setsid mariadbd --defaults-file="$MY_CNF" --user=root $MYSQL_EXTRA \
		    </dev/null >>"$MY_DIR/mariadbd.out" 2>&1 &
		pid=$!
	fi
	for ((i = 0; i < 300; i++)); do
		mariadb_answers && break
		kill -0 "$pid" 2>/dev/null || mariadb_fail "mariadbd exited during start"
		sleep 0.1
	done
	mariadb_answers || mariadb_fail "no answer to ping after 30s (pid $pid)"
	mariadb_provision
	say "mariadb: up (pid $(live_pid "$MY_PID" mariadbd || echo "$pid"), port $MYSQL_PORT, socket $MY_SOCK)"
}

# stop_mysqld <pid file> <service name>
stop_mysqld() {
	local pid
	if pid=$(live_pid "$1" mariadbd); then
		stop_pid "$pid" "$2"
		say "$2: stopped"
	else
		say "$2: not running"
	fi
	rm -f "$1"
}

# status_mysqld <pid file> <service name> <port> <answers function>
status_mysqld() {
	local pid
	if pid=$(live_pid "$1" mariadbd) && "$4"; then
		say "$2: up (pid $pid, port $3)"
	else
		say "$2: down"
		return 1
	fi
}

stop_mariadb() { stop_mysqld "$MY_PID" mariadb; }
status_mariadb() { status_mysqld "$MY_PID" mariadb "$MYSQL_PORT" mariadb_answers; }

# ---- MariaDB replica (optional) --------------------------------------------

myr_sql() {
	mariadb --defaults-file="$MYR_CNF" -uroot -N -e "$1"
}

myr_answers() {
	mariadb-admin --defaults-file="$MYR_CNF" -uroot --connect-timeout=2 ping >/dev/null 2>&1
}

# The primary's my.cnf with the replica's directory, port and server_id.
myr_render() {
	mkdir -p "$MYR_DIR/tmp"
	render "$here/my.cnf.in" "$MYR_CNF.in"
	sed -e "s|$RUN_DIR/mariadb/|$MYR_DIR/|g" \
	    -e "s|^\(port *= *\).*|\1$MYR_PORT|" \
	    -e "s|^server_id *= .*|server_id          = 2|" "$MYR_CNF.in" >"$MYR_CNF"
	rm -f "$MYR_CNF.in"
}

start_mariadb_replica() {
	local pid i at first=0
	myr_render
	if pid=$(live_pid "$MYR_PID" mariadbd) && myr_answers; then
		say "mariadb-replica: already up (pid $pid, port $MYR_PORT)"
		return 0
	fi
	mariadb_answers || die "mariadb-replica: the primary (port $MYSQL_PORT) is not up"
	if [ ! -f "$MYR_DIR/.installed" ]; then
		first=1
		rm -rf "$MYR_DIR/data"
		mkdir -p "$MYR_DIR/data"
		mariadb-install-db --defaults-file="$MYR_CNF" --user=root \
		    --auth-root-authentication-method=socket --skip-test-db \
		    >"$MYR_DIR/install.log" 2>&1 || die "mariadb-replica: install failed (see $MYR_DIR/install.log)"
		touch "$MYR_DIR/.installed"
	fi
	rm -f "$MYR_PID"
	# shellcheck disable=SC2086  # TOR_MYSQL_EXTRA is a list of options
	setsid mariadbd --defaults-file="$MYR_CNF" --user=root $MYSQL_EXTRA \
	    </dev/null >>"$MYR_DIR/mariadbd.out" 2>&1 &
	pid=$!
	for ((i = 0; i < 300; i++)); do
		myr_answers && break
		kill -0 "$pid" 2>/dev/null || die "mariadb-replica: mariadbd exited during start (see $MYR_DIR/error.log)"
		sleep 0.1
	done
	myr_answers || die "mariadb-replica: no answer to ping after 30s"
	if [ "$first" = 1 ]; then
		mariadb_provision "$MYR_DIR"
		# Provisioning wrote the replica's own GTIDs; it then starts at
		# the primary's position, as a replica made from a backup would.
		at=$(mariadb --defaults-file="$MY_CNF" -uroot -N -e "SELECT @@global.gtid_binlog_pos")
		myr_sql "RESET MASTER; SET GLOBAL gtid_slave_pos='$at';
		    CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$MYSQL_PORT,
		    MASTER_USER='tor', MASTER_PASSWORD='tor', MASTER_USE_GTID=slave_pos,
		    MASTER_CONNECT_RETRY=1;
		    START SLAVE;" || die "mariadb-replica: setting up replication failed"
	fi
	say "mariadb-replica: up (pid $(live_pid "$MYR_PID" mariadbd || echo "$pid"), port $MYR_PORT)"
}

stop_mariadb_replica() { stop_mysqld "$MYR_PID" mariadb-replica; }
status_mariadb_replica() { status_mysqld "$MYR_PID" mariadb-replica "$MYR_PORT" myr_answers; }

mysql_ctl() {
	case "${1:-}" in
	promote)
		myr_answers || die "mariadb-replica is not up"
		myr_sql "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only=0;" || die "promote failed"
		say "mariadb-replica: promoted, gtid_binlog_pos $(myr_sql 'SELECT @@global.gtid_binlog_pos')"
		;;
	reset-replica)
		stop_mariadb_replica
		rm -rf "$MYR_DIR"
		say "mariadb-replica: removed $MYR_DIR"
		;;
	*) die "usage: stack.sh mysql-ctl promote|reset-replica" ;;
	esac
}

# ---- Redis -----------------------------------------------------------------

redis_answers() {
	[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
}

start_redis() {
	local pid i
	mkdir -p "$REDIS_DIR"
	render "$here/redis.conf.in" "$REDIS_DIR/redis.conf"
	if pid=$(live_pid "$REDIS_PID" redis-server) && redis_answers; then
		say "redis: already up (pid $pid, port $REDIS_PORT)"
		return 0
	fi
	if [ -z "${pid:-}" ]; then
		rm -f "$REDIS_PID"
		setsid redis-server "$REDIS_DIR/redis.conf" </dev/null \
		    >>"$REDIS_DIR/redis-server.out" 2>&1 ||
			die "redis: redis-server failed: $(tail -n 5 "$REDIS_DIR/redis.log" 2>/dev/null)"
	fi
	for ((i = 0; i < 100; i++)); do
		redis_answers && break
		sleep 0.1
	done
	if ! redis_answers; then
		say "redis: no PONG after 10s; last lines of $REDIS_DIR/redis.log:"
		tail -n 20 "$REDIS_DIR/redis.log" 2>/dev/null | sed 's/^/    /'
		exit 1
	fi
	# Redis writes its pid file a moment after it answers; a stop right
	# after start must find it, or the server would be left running.
	for ((i = 0; i < 50; i++)); do
		live_pid "$REDIS_PID" redis-server >/dev/null && break
		sleep 0.1
	done
	say "redis: up (pid $(live_pid "$REDIS_PID" redis-server), port $REDIS_PORT)"
}

stop_redis() {
	local pid
	if pid=$(live_pid "$REDIS_PID" redis-server); then
		stop_pid "$pid" redis
		say "redis: stopped"
	else
		say "redis: not running"
	fi
	rm -f "$REDIS_PID"
}

status_redis() {
	local pid
	if pid=$(live_pid "$REDIS_PID" redis-server) && redis_answers; then
		say "redis: up (pid $pid, port $REDIS_PORT)"
	else
		say "redis: down"
		return 1
	fi
}

# ---- Sentinel (optional): a replica and three Sentinels ----------------------

replica_answers() {
	[ "$(redis-cli -h 127.0.0.1 -p "$REPLICA_PORT" ping 2>/dev/null)" = PONG ]
}

# One field of `SENTINEL MASTER mymaster` as the Sentinel at port $1 sees it
# (the reply is name and value on alternate lines).
# redis-cli to the Sentinel at port $1, as user "stack" when they were
# started with TOR_SENTINEL_ACL=1 (the mark stays with their files).
sentinel_cli() {
	local p=$1
	shift
	if [ -f "$SENTINEL_DIR/acl" ]; then
		redis-cli -h 127.0.0.1 -p "$p" --user stack --pass stack-secret \
		    --no-auth-warning "$@"
	else
		redis-cli -h 127.0.0.1 -p "$p" "$@"
	fi
}

sentinel_field() {
	sentinel_cli "$1" sentinel master "$SENTINEL_MASTER" 2>/dev/null |
		awk -v f="$2" 'NR % 2 == 1 && $0 == f { getline; print; exit }'
}

# True when the replica and every Sentinel are alive (by their pid files).
sentinel_up() {
	local p
	live_pid "$SENTINEL_DIR/replica.pid" redis-server >/dev/null || return 1
	for p in "${SENTINEL_PORTS[@]}"; do
		live_pid "$SENTINEL_DIR/sentinel-$p.pid" redis-sentinel >/dev/null || return 1
	done
}

sentinel_env() {
	local nodes="" p
	for p in "${SENTINEL_PORTS[@]}"; do
		nodes="$nodes${nodes:+,}127.0.0.1:$p"
	done
	cat <<EOF
TOR_SENTINEL_MASTER='$SENTINEL_MASTER'
TOR_SENTINEL_NODES='$nodes'
TOR_SENTINEL_REPLICA_PORT='$REPLICA_PORT'
export TOR_SENTINEL_MASTER TOR_SENTINEL_NODES TOR_SENTINEL_REPLICA_PORT
EOF
}

# Written at every start: Sentinels rewrite their files with what they
# learnt (the other Sentinels, a failover), and a fresh start must not
# inherit the last run's view.
write_sentinel_confs() {
	local p
	cat >"$SENTINEL_DIR/replica.conf" <<EOF
# Generated by deploy/local/stack.sh; no persistence, like the main Redis.
bind 127.0.0.1
port $REPLICA_PORT
daemonize yes
pidfile $SENTINEL_DIR/replica.pid
logfile $SENTINEL_DIR/replica.log
dir $SENTINEL_DIR
save ""
appendonly no
replicaof 127.0.0.1 $REDIS_PORT
EOF
	for p in "${SENTINEL_PORTS[@]}"; do
		cat >"$SENTINEL_DIR/sentinel-$p.conf" <<EOF
# Generated by deploy/local/stack.sh; redis-sentinel rewrites it.
bind 127.0.0.1
port $p
daemonize yes
pidfile $SENTINEL_DIR/sentinel-$p.pid
logfile $SENTINEL_DIR/sentinel-$p.log
dir $SENTINEL_DIR
sentinel monitor $SENTINEL_MASTER 127.0.0.1 $REDIS_PORT 2
sentinel down-after-milliseconds $SENTINEL_MASTER 1000
sentinel failover-timeout $SENTINEL_MASTER 3000
sentinel parallel-syncs $SENTINEL_MASTER 1
EOF
		[ "${TOR_SENTINEL_ACL:-0}" = 1 ] &&
			cat >>"$SENTINEL_DIR/sentinel-$p.conf" <<EOF
user default off
user stack on >stack-secret ~* &* +@all
user tor on >tor-sentinel-secret -@all +auth +ping +sentinel|get-master-addr-by-name
sentinel sentinel-user stack
sentinel sentinel-pass stack-secret
EOF
	done
	if [ "${TOR_SENTINEL_ACL:-0}" = 1 ]; then
		touch "$SENTINEL_DIR/acl"
	else
		rm -f "$SENTINEL_DIR/acl"
	fi
}

# The Sentinel at port $1 sees the master, its replica and both others.
sentinel_ready() {
	[ "$(sentinel_field "$1" flags)" = master ] &&
		[ "$(sentinel_field "$1" num-slaves)" = 1 ] &&
		[ "$(sentinel_field "$1" num-other-sentinels)" = 2 ]
}

sentinel_fail() {
	local f
	say "sentinel: $1; last lines of the logs:"
	for f in "$SENTINEL_DIR"/*.log; do
		say "  $f:"
		tail -n 10 "$f" 2>/dev/null | sed 's/^/    /'
	done
	exit 1
}

start_sentinel() {
	local p i ready=0
	if sentinel_up; then
		say "sentinel: already up (replica port $REPLICA_PORT, sentinels ${SENTINEL_PORTS[*]})"
		return 0
	fi
	redis_answers || start_redis
	stop_sentinel >/dev/null        # half up: start over
	mkdir -p "$SENTINEL_DIR"
	write_sentinel_confs
	setsid redis-server "$SENTINEL_DIR/replica.conf" </dev/null \
	    >>"$SENTINEL_DIR/replica.out" 2>&1 ||
		sentinel_fail "redis-server (replica) failed"
	# Sentinels learn replicas from the master's INFO, which they ask at
	# once and then only every 10 s: start them after the replica synced.
	for ((i = 0; i < 100; i++)); do
		redis-cli -h 127.0.0.1 -p "$REPLICA_PORT" info replication 2>/dev/null |
			grep -q '^master_link_status:up' && break
		sleep 0.1
	done
	[ "$i" -lt 100 ] || sentinel_fail "the replica did not sync within 10s"
	for p in "${SENTINEL_PORTS[@]}"; do
		setsid redis-sentinel "$SENTINEL_DIR/sentinel-$p.conf" </dev/null \
		    >>"$SENTINEL_DIR/sentinel-$p.out" 2>&1 ||
			sentinel_fail "redis-sentinel on port $p failed"
	done
	# Sentinels find each other on the master's hello channel, every 2 s;
	# a failover needs a majority of them to know each other.
	for ((i = 0; i < 300; i++)); do
		ready=1
		for p in "${SENTINEL_PORTS[@]}"; do
			sentinel_ready "$p" || { ready=0; break; }
		done
		[ "$ready" = 1 ] && break
		sleep 0.1
	done
	[ "$ready" = 1 ] ||
		sentinel_fail "the Sentinels did not see master, replica and each other within 30s"
	say "sentinel: up (master $SENTINEL_MASTER at 127.0.0.1:$REDIS_PORT, replica port $REPLICA_PORT, sentinels ${SENTINEL_PORTS[*]})"
}

stop_sentinel() {
	local p pid any=0
	# Sentinels first, so that they fail over nothing we stop next.
	for p in "${SENTINEL_PORTS[@]}"; do
		if pid=$(live_pid "$SENTINEL_DIR/sentinel-$p.pid" redis-sentinel); then
			stop_pid "$pid" "sentinel $p"
			any=1
		fi
		rm -f "$SENTINEL_DIR/sentinel-$p.pid"
	done
	# A failover may have left the main Redis a replica of ours: make it
	# a master again before its master goes, for the tests that follow.
	if redis_answers && [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" role 2>/dev/null |
	    head -n 1)" != master ]; then
		if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" replicaof no one >/dev/null; then
			say "sentinel: redis on port $REDIS_PORT is a master again"
		else
			say "sentinel: cannot make redis on port $REDIS_PORT a master again"
		fi
	fi
	if pid=$(live_pid "$SENTINEL_DIR/replica.pid" redis-server); then
		stop_pid "$pid" "redis replica"
		any=1
	fi
	rm -f "$SENTINEL_DIR/replica.pid"
	[ -f "$RUN_DIR/env" ] && sed -i '/TOR_SENTINEL_/d' "$RUN_DIR/env"
	if [ "$any" = 1 ]; then
		say "sentinel: stopped"
	else
		say "sentinel: not running"
	fi
}

status_sentinel() {
	local master
	if sentinel_up && replica_answers; then
		master=$(sentinel_cli "${SENTINEL_PORTS[0]}" sentinel \
		    get-master-addr-by-name "$SENTINEL_MASTER" 2>/dev/null | paste -sd:)
		say "sentinel: up (master $SENTINEL_MASTER at ${master:-?}, sentinels ${SENTINEL_PORTS[*]})"
	else
		say "sentinel: down"
		return 1
	fi
}

# ---- Redis Cluster (optional): three masters, one replica each -------------

cluster_cli() {
	redis-cli -h 127.0.0.1 -p "$1" "${@:2}"
}

# True when every node is alive (by its pid file).
cluster_up() {
	local p
	for p in "${CLUSTER_PORTS[@]}"; do
		live_pid "$CLUSTER_DIR/node-$p.pid" redis-server >/dev/null || return 1
	done
}

cluster_env() {
	local nodes="" p
	for p in "${CLUSTER_PORTS[@]}"; do
		nodes="$nodes${nodes:+,}127.0.0.1:$p"
	done
	cat <<EOF
TOR_REDIS_CLUSTER_NODES='$nodes'
TOR_REDIS_CLUSTER_DIR='$CLUSTER_DIR'
export TOR_REDIS_CLUSTER_NODES TOR_REDIS_CLUSTER_DIR
EOF
}

# The node at port $1 serves and knows all six nodes; a replica has its
# master's data (a replica promoted before its first sync holds nothing).
cluster_node_ready() {
	local info
	info=$(cluster_cli "$1" cluster info 2>/dev/null | tr -d '\r')
	grep -q '^cluster_state:ok$' <<<"$info" &&
		grep -q "^cluster_known_nodes:${#CLUSTER_PORTS[@]}\$" <<<"$info" || return 1
	info=$(cluster_cli "$1" info replication 2>/dev/null | tr -d '\r')
	grep -q '^role:master$' <<<"$info" ||
		grep -q '^master_link_status:up$' <<<"$info"
}

cluster_fail() {
	local f
	say "redis-cluster: $1; last lines of the logs:"
	for f in "$CLUSTER_DIR"/*.log; do
		say "  $f:"
		tail -n 10 "$f" 2>/dev/null | sed 's/^/    /'
	done
	exit 1
}

start_redis-cluster() {
	local p i ready=0 nodes=()
	if cluster_up; then
		say "redis-cluster: already up (ports ${CLUSTER_PORTS[*]})"
		return 0
	fi
	stop_redis-cluster >/dev/null   # half up: start over
	mkdir -p "$CLUSTER_DIR"
	for p in "${CLUSTER_PORTS[@]}"; do
		cat >"$CLUSTER_DIR/node-$p.conf" <<EOF
# Generated by deploy/local/stack.sh; no persistence, like the main Redis.
bind 127.0.0.1
port $p
daemonize yes
pidfile $CLUSTER_DIR/node-$p.pid
logfile $CLUSTER_DIR/node-$p.log
dir $CLUSTER_DIR
save ""
appendonly no
dbfilename dump-$p.rdb
cluster-enabled yes
cluster-config-file nodes-$p.conf
cluster-node-timeout 1000
repl-diskless-sync-delay 0
EOF
		setsid redis-server "$CLUSTER_DIR/node-$p.conf" </dev/null \
		    >>"$CLUSTER_DIR/node-$p.out" 2>&1 ||
			cluster_fail "redis-server on port $p failed"
		nodes+=("127.0.0.1:$p")
	done
	for ((i = 0; i < 100; i++)); do
		ready=1
		for p in "${CLUSTER_PORTS[@]}"; do
			[ "$(cluster_cli "$p" ping 2>/dev/null)" = PONG ] || { ready=0; break; }
		done
		[ "$ready" = 1 ] && break
		sleep 0.1
	done
	[ "$ready" = 1 ] || cluster_fail "the nodes did not answer within 10s"
	redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 \
	    --cluster-yes >"$CLUSTER_DIR/create.out" 2>&1 ||
		cluster_fail "redis-cli --cluster create failed: $(tail -n 3 "$CLUSTER_DIR/create.out")"
	for ((i = 0; i < 300; i++)); do
		ready=1
		for p in "${CLUSTER_PORTS[@]}"; do
			cluster_node_ready "$p" || { ready=0; break; }
		done
		[ "$ready" = 1 ] && break
		sleep 0.1
	done
	[ "$ready" = 1 ] ||
		cluster_fail "the cluster was not ok on every node within 30s"
	say "redis-cluster: up (ports ${CLUSTER_PORTS[*]})"
}

stop_redis-cluster() {
	local p pid any=0
	for p in "${CLUSTER_PORTS[@]}"; do
		if pid=$(live_pid "$CLUSTER_DIR/node-$p.pid" redis-server); then
			stop_pid "$pid" "redis-cluster node $p"
			any=1
		fi
		# A replica's full sync leaves an RDB: a fresh cluster must
		# not load it.
		rm -f "$CLUSTER_DIR/node-$p.pid" "$CLUSTER_DIR/nodes-$p.conf" \
		    "$CLUSTER_DIR/dump-$p.rdb"
	done
	[ -f "$RUN_DIR/env" ] && sed -i '/TOR_REDIS_CLUSTER_/d' "$RUN_DIR/env"
	if [ "$any" = 1 ]; then
		say "redis-cluster: stopped"
	else
		say "redis-cluster: not running"
	fi
}

status_redis-cluster() {
	if cluster_up && cluster_node_ready "${CLUSTER_PORTS[0]}"; then
		say "redis-cluster: up (ports ${CLUSTER_PORTS[*]})"
	else
		say "redis-cluster: down"
		return 1
	fi
}

# ---- Apache Kafka (KRaft) ----------------------------------------------------
#
# TOR_KAFKA_NODES combined broker+controller nodes (1 or 3) of the Apache
# Kafka that deploy/kafka/pom.xml pins, run from the jars `make deps` copied
# to $KAFKA_LIB.  Node i (1-based) listens for clients on KAFKA_PORT+i-1
# and for its controller quorum on KAFKA_PORT+10+i-1; with
# TOR_KAFKA_SASL_SSL set also SASL_SSL (SCRAM-SHA-512) on KAFKA_PORT+20+i-1.
# The listener PROXIED on KAFKA_PORT+30+i-1 advertises KAFKA_PORT+40+i-1,
# where a test's TCP proxy forwards to it: a client bootstrapped there
# (TOR_KAFKA_PROXIED_BROKERS) reaches every node through the proxy, which
# can delay, stall or cut what it carries (tests/integration/proxy.py).
# Replication follows the node count: three nodes keep every topic, the
# offsets and the transaction state on all three with min.insync.replicas
# 2; one node keeps one copy.  Topics not named anywhere are created on
# first use with 4 partitions (like the dev broker's).

kafka_node_dir() { echo "$KAFKA_DIR/node$1"; }
kafka_client_port() { echo $((KAFKA_PORT + $1 - 1)); }
kafka_controller_port() { echo $((KAFKA_PORT + 10 + $1 - 1)); }
kafka_secure_port() { echo $((KAFKA_PORT + 20 + $1 - 1)); }
kafka_proxied_port() { echo $((KAFKA_PORT + 30 + $1 - 1)); }
kafka_proxy_port() { echo $((KAFKA_PORT + 40 + $1 - 1)); }

# "127.0.0.1:<port>,..." of every node, each port from function $1.
kafka_addresses() {
	local i list=""
	for ((i = 1; i <= KAFKA_NODES; i++)); do
		list="$list${list:+,}127.0.0.1:$("$1" "$i")"
	done
	echo "$list"
}

kafka_bootstrap() { kafka_addresses kafka_client_port; }
kafka_secure_bootstrap() { kafka_addresses kafka_secure_port; }
kafka_proxied_bootstrap() { kafka_addresses kafka_proxy_port; }

kafka_java() {
	if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
		echo "$JAVA_HOME/bin/java"
	else
		command -v java || die "kafka: no java on PATH (make deps installs a JDK)"
	fi
}

kafka_check_lib() {
	ls "$KAFKA_LIB"/kafka_2.13-*.jar >/dev/null 2>&1 ||
		die "kafka: no Kafka jars in $KAFKA_LIB (make deps resolves them from deploy/kafka/pom.xml)"
}

# Writes node $1's server.properties.  Written at every start, so a changed
# setting here reaches the node at its next start; the data stays.
kafka_write_config() {
	local i=$1 dir voters="" j rf=$KAFKA_NODES isr=1 listeners advertised map
	dir=$(kafka_node_dir "$i")
	[ "$KAFKA_NODES" -ge 3 ] && isr=2
	for ((j = 1; j <= KAFKA_NODES; j++)); do
		voters="$voters${voters:+,}$j@127.0.0.1:$(kafka_controller_port "$j")"
	done
	listeners="PLAINTEXT://127.0.0.1:$(kafka_client_port "$i"),CONTROLLER://127.0.0.1:$(kafka_controller_port "$i"),PROXIED://127.0.0.1:$(kafka_proxied_port "$i")"
	advertised="PLAINTEXT://127.0.0.1:$(kafka_client_port "$i"),PROXIED://127.0.0.1:$(kafka_proxy_port "$i")"
	map="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,PROXIED:PLAINTEXT"
	if [ -n "$KAFKA_SASL_SSL" ]; then
		listeners="$listeners,SASL_SSL://127.0.0.1:$(kafka_secure_port "$i")"
		advertised="$advertised,SASL_SSL://127.0.0.1:$(kafka_secure_port "$i")"
		map="$map,SASL_SSL:SASL_SSL"
	fi
	cat >"$dir/server.properties.tmp" <<PROPS
# Generated by deploy/local/stack.sh at every start; do not edit.
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$map
log.dirs=$dir/data
num.partitions=4
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=4
auto.create.topics.enable=true
unclean.leader.election.enable=false
group.initial.rebalance.delay.ms=0
# Tests wait on these: a timed-out transaction is aborted within a second of
# its timeout, a broker that died is out of the ISR within 6 s.
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
replica.lag.time.max.ms=6000
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000
# A laptop's broker: few threads, small segments, a day of retention.
num.network.threads=2
num.io.threads=4
num.replica.fetchers=1
background.threads=4
log.segment.bytes=67108864
log.retention.hours=24
log.cleaner.dedupe.buffer.size=8388608
PROPS
	if [ -n "$KAFKA_SASL_SSL" ]; then
		local u plain=""
		for u in $KAFKA_SCRAM_USERS; do
			plain="$plain user_${u%%:*}=\"${u#*:}\""
		done
		cat >>"$dir/server.properties.tmp" <<PROPS
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$plain;
ssl.keystore.type=PEM
ssl.keystore.location=$KAFKA_SASL_SSL/server.pem
ssl.truststore.type=PEM
ssl.truststore.location=$KAFKA_SASL_SSL/ca.pem
ssl.client.auth=none
PROPS
	fi
	mv "$dir/server.properties.tmp" "$dir/server.properties"
}

kafka_node_pid() {
	live_pid "$(kafka_node_dir "$1")/kafka.pid" "kafka.Kafka"
}

# The java command every node and tool runs with (into the array JVM):
# small heaps and a quick start (C1 only), which is what tests need; set
# TOR_KAFKA_JVM_OPTS for a broker that must go fast for long (make bench).
kafka_jvm_command() {
	local java
	java=$(kafka_java) || exit 1
	# shellcheck disable=SC2206  # the options are a list
	JVM=("$java" ${TOR_KAFKA_JVM_OPTS:--Xms64m -Xmx$KAFKA_HEAP -XX:+UseSerialGC -XX:TieredStopAtLevel=1}
	    -Djava.awt.headless=true
	    -Dlog4j2.configurationFile="$repo/deploy/kafka/log4j2.xml"
	    -Dkafka.log.file="$KAFKA_DIR/tools.log"
	    -cp "$KAFKA_LIB/*")
}

kafka_jvm() {
	kafka_jvm_command
	"${JVM[@]}" "$@"
}

# Formats the nodes' storage once (all with one cluster id, in parallel):
# the KRaft equivalent of mariadb-install-db.  A different node count than
# the one formatted starts over with empty storage.
kafka_format() {
	local i cid dir pids=() scram=()
	if [ -f "$KAFKA_DIR/.formatted" ] &&
	    [ "$(cat "$KAFKA_DIR/.formatted")" = "$KAFKA_NODES${KAFKA_SASL_SSL:+ sasl}" ]; then
		return 0
	fi
	say "kafka: formatting storage of $KAFKA_NODES node(s) in $KAFKA_DIR"
	for ((i = 1; i <= 3; i++)); do rm -rf "$(kafka_node_dir "$i")"; done
	rm -f "$KAFKA_DIR/.formatted"
	cid=$(kafka_jvm kafka.tools.StorageTool random-uuid 2>>"$KAFKA_DIR/format.log") ||
		die "kafka: StorageTool random-uuid failed (see $KAFKA_DIR/format.log)"
	if [ -n "$KAFKA_SASL_SSL" ]; then
		# SCRAM users exist from the start: "name:password ...".
		local u
		for u in $KAFKA_SCRAM_USERS; do
			scram+=(--add-scram "SCRAM-SHA-512=[name=${u%%:*},password=${u#*:}]")
		done
	fi
	for ((i = 1; i <= KAFKA_NODES; i++)); do
		dir=$(kafka_node_dir "$i")
		mkdir -p "$dir"
		kafka_write_config "$i"
		kafka_jvm -Dkafka.log.file="$dir/format.log" kafka.tools.StorageTool \
		    format -t "$cid" -c "$dir/server.properties" "${scram[@]}" \
		    >>"$dir/format.log" 2>&1 &
		pids+=($!)
	done
	for ((i = 1; i <= KAFKA_NODES; i++)); do
		wait "${pids[$((i - 1))]}" ||
			{ tail -n 20 "$(kafka_node_dir "$i")/format.log" | sed 's/^/    /'
			  die "kafka: formatting node $i failed"; }
	done
	echo "$KAFKA_NODES${KAFKA_SASL_SSL:+ sasl}" >"$KAFKA_DIR/.formatted"
}

# Starts node $1 (no wait).  Its own session; fds to files.
kafka_start_node() {
	local i=$1 dir pid
	dir=$(kafka_node_dir "$i")
	if pid=$(kafka_node_pid "$i"); then
		return 0
	fi
	kafka_write_config "$i"
	rm -f "$dir/kafka.pid"
	kafka_jvm_command
	# Where this start's log begins: kafka_node_started reads from there.
	if [ -f "$dir/server.log" ]; then wc -c <"$dir/server.log"; else echo 0; fi >"$dir/started"
	setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$dir/kafka.pid" \
	    "${JVM[@]}" -Dkafka.log.file="$dir/server.log" \
	    kafka.Kafka "$dir/server.properties" \
	    </dev/null >>"$dir/kafka.out" 2>&1 &
	for ((pid = 0; pid < 50; pid++)); do
		[ -s "$dir/kafka.pid" ] && break
		sleep 0.02
	done
}

# Node $1 has said it started since its last start.
kafka_node_started() {
	local dir from
	dir=$(kafka_node_dir "$1")
	from=$(cat "$dir/started" 2>/dev/null || echo 0)
	tail -c +$((from + 1)) "$dir/server.log" 2>/dev/null | grep -q 'Kafka Server started'
}

# Every node that should run answers a metadata request listing them all.
kafka_answers() {
	local want=${1:-$KAFKA_NODES} n
	n=$(timeout 10 kcat -L -b "$(kafka_bootstrap)" -m 3 2>/dev/null |
		grep -c '^  broker [0-9]* at ')
	[ "${n:-0}" -ge "$want" ]
}

kafka_fail() {
	local i
	say "kafka: $1"
	for ((i = 1; i <= KAFKA_NODES; i++)); do
		say "  node $i, last lines of $(kafka_node_dir "$i")/server.log and kafka.out:"
		tail -n 15 "$(kafka_node_dir "$i")/server.log" 2>/dev/null | sed 's/^/    /'
		tail -n 5 "$(kafka_node_dir "$i")/kafka.out" 2>/dev/null | sed 's/^/    /'
	done
	exit 1
}

# Waits until nodes $@ said they started and the cluster lists every node
# that runs.
kafka_wait() {
	local i n t0 ok up=0
	t0=$(date +%s%N)
	for ((n = 0; n < 1200; n++)); do
		ok=1
		for i in "$@"; do
			kafka_node_pid "$i" >/dev/null || kafka_fail "node $i exited during start"
			kafka_node_started "$i" || { ok=0; break; }
		done
		if [ "$ok" = 1 ]; then
			up=0
			for ((i = 1; i <= KAFKA_NODES; i++)); do
				kafka_node_pid "$i" >/dev/null && up=$((up + 1))
			done
			kafka_answers "$up" && break
		fi
		sleep 0.1
	done
	[ "$n" -lt 1200 ] || kafka_fail "not up after 120 s"
	KAFKA_WAITED_MS=$((($(date +%s%N) - t0) / 1000000))
}

# Partitions whose in-sync replicas are fewer than their replicas, by one
# metadata request (what an operator checks before the next step of a
# rolling restart).
kafka_under_replicated() {
	timeout 10 kcat -L -b "$(kafka_bootstrap)" -m 3 2>/dev/null | awk '
		/^    partition [0-9]+, leader/ {
			r = $0; sub(/.*replicas: /, "", r); sub(/, isrs:.*/, "", r)
			i = $0; sub(/.*isrs: /, "", i); sub(/[^0-9,].*/, "", i)
			if (split(r, a, ",") != split(i, b, ",")) n++
		}
		END { print n + 0 }'
}

# Waits up to 60 s until no partition is under-replicated.
kafka_wait_in_sync() {
	local n
	for ((n = 0; n < 600; n++)); do
		[ "$(kafka_under_replicated)" = 0 ] && return 0
		sleep 0.1
	done
	say "kafka: $(kafka_under_replicated) partition(s) still under-replicated after 60 s"
}

# Every node of the cluster has a process (paused ones too).
kafka_all_running() {
	local j
	for ((j = 1; j <= KAFKA_NODES; j++)); do
		kafka_node_pid "$j" >/dev/null || return 1
	done
}

# A node that runs but was stopped by SIGSTOP (kafka-ctl pause).
kafka_node_paused() {
	local pid
	pid=$(kafka_node_pid "$1") || return 1
	[ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" = T ]
}

# Starts the nodes that are down and resumes paused ones, then waits until
# all serve and, where some were not, every partition is in sync again.
start_kafka() {
	local i nodes=() woke=0
	mkdir -p "$KAFKA_DIR"
	kafka_check_lib
	kafka_format
	for ((i = 1; i <= KAFKA_NODES; i++)); do
		if kafka_node_paused "$i"; then
			kill -CONT "$(kafka_node_pid "$i")"
			woke=1
		elif ! kafka_node_pid "$i" >/dev/null; then
			kafka_start_node "$i"
			nodes+=("$i")
		fi
	done
	if [ ${#nodes[@]} -eq 0 ] && [ "$woke" = 0 ] && kafka_answers; then
		[ "$KAFKA_NODES" -gt 1 ] && kafka_wait_in_sync
		say "kafka: already up ($(kafka_bootstrap))"
		return 0
	fi
	kafka_wait "${nodes[@]}"
	[ "$KAFKA_NODES" -gt 1 ] && kafka_wait_in_sync
	kafka_create_topics
	say "kafka: up ($KAFKA_NODES node(s), $(kafka_bootstrap)${KAFKA_SASL_SSL:+, SASL_SSL $(kafka_secure_bootstrap)}) in ${KAFKA_WAITED_MS} ms"
}

# TOR_BROKER_TOPICS ("name:partitions ...") exist before any client asks:
# tests and benchmarks count on their partitions.
kafka_create_topics() {
	[ -n "$BROKER_TOPICS" ] || return 0
	/usr/bin/python3 "$here/kafka_admin.py" --brokers "$(kafka_bootstrap)" \
	    create $BROKER_TOPICS >>"$KAFKA_DIR/admin.log" 2>&1 ||
		{ tail -n 10 "$KAFKA_DIR/admin.log" | sed 's/^/    /'
		  die "kafka: creating topics $BROKER_TOPICS failed"; }
}

# Stops nodes $@ (default all) with SIGTERM, all at once (a node waits for
# the quorum in its controlled shutdown, so one by one the last would wait
# for nobody), then KILL after STOP_TIMEOUT.
kafka_stop_nodes() {
	local i pid pids=() j
	for i in "$@"; do
		if pid=$(kafka_node_pid "$i"); then
			kill -CONT "$pid" 2>/dev/null
			kill -TERM "$pid" 2>/dev/null
			pids+=("$pid")
		fi
	done
	for ((j = 0; j < KAFKA_STOP_TIMEOUT * 10; j++)); do
		local alive=0
		for pid in "${pids[@]}"; do
			kill -0 "$pid" 2>/dev/null && alive=1
		done
		[ "$alive" = 0 ] && return 0
		sleep 0.1
	done
	for pid in "${pids[@]}"; do
		kill -0 "$pid" 2>/dev/null && say "kafka: pid $pid ignored TERM for ${KAFKA_STOP_TIMEOUT}s: KILL"
		kill -KILL "$pid" 2>/dev/null
	done
	for pid in "${pids[@]}"; do
		while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
	done
}

# Every node that may have been started (up to 3, whatever TOR_KAFKA_NODES
# says now).
stop_kafka() {
	local i running=()
	for ((i = 1; i <= 3; i++)); do
		kafka_node_pid "$i" >/dev/null && running+=("$i")
	done
	if [ ${#running[@]} -eq 0 ]; then
		say "kafka: not running"
		return 0
	fi
	kafka_stop_nodes "${running[@]}"
	say "kafka: stopped"
}

status_kafka() {
	local i rc=0 pid
	for ((i = 1; i <= KAFKA_NODES; i++)); do
		if pid=$(kafka_node_pid "$i"); then
			say "kafka: node $i up (pid $pid, 127.0.0.1:$(kafka_client_port "$i"))"
		else
			say "kafka: node $i down"
			rc=1
		fi
	done
	[ "$rc" = 0 ] && ! kafka_answers && { say "kafka: no answer to metadata"; rc=1; }
	return $rc
}

# stack.sh kafka-ctl kill|start|stop|pause|resume N: one node's fault.
kafka_ctl() {
	local verb=${1:-} i=${2:-} pid
	case "$i" in
	[1-9]) [ "$i" -le "$KAFKA_NODES" ] || die "kafka-ctl: no node $i (TOR_KAFKA_NODES=$KAFKA_NODES)" ;;
	*) die "usage: stack.sh kafka-ctl kill|start|stop|pause|resume N" ;;
	esac
	case "$verb" in
	kill)
		pid=$(kafka_node_pid "$i") || die "kafka-ctl: node $i is not running"
		kill -KILL "$pid"
		while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
		say "kafka: node $i killed (pid $pid)"
		;;
	stop)
		kafka_node_pid "$i" >/dev/null || die "kafka-ctl: node $i is not running"
		kafka_stop_nodes "$i"
		say "kafka: node $i stopped"
		;;
	start)
		kafka_check_lib
		if kafka_node_pid "$i" >/dev/null; then
			say "kafka: node $i already up"
			return 0
		fi
		kafka_start_node "$i"
		kafka_wait "$i"
		# With another node down no partition can be in sync: waiting
		# would only time out.
		if kafka_all_running; then
			kafka_wait_in_sync
		else
			say "kafka: another node is down: not waiting for the partitions to be in sync"
		fi
		say "kafka: node $i up (127.0.0.1:$(kafka_client_port "$i")) in ${KAFKA_WAITED_MS} ms"
		;;
	pause | resume)
		pid=$(kafka_node_pid "$i") || die "kafka-ctl: node $i is not running"
		if [ "$verb" = pause ]; then kill -STOP "$pid"; else kill -CONT "$pid"; fi
		say "kafka: node $i ${verb}d (pid $pid)"
		;;
	*) die "usage: stack.sh kafka-ctl kill|start|stop|pause|resume N" ;;
	esac
}

# ---- development Kafka broker (TOR_KAFKA=dev, or beside the real one) ----------
#
# librdkafka's mock cluster (bin/tor-devbroker): for protocol errors injected
# at one exact request, and a JVM-free demo (DESIGN.md §9).

devbroker_answers() {
	[ -S "$BROKER_CTL" ] && [ -x "$DEVBROKER" ] &&
		"$DEVBROKER" --ctl "$BROKER_CTL" ping >/dev/null 2>&1
}

start_devbroker() {
	local pid i t args=()
	mkdir -p "$BROKER_DIR"
	if [ ! -x "$DEVBROKER" ] || [ "$here/devbroker.c" -nt "$DEVBROKER" ]; then
		make -C "$repo" --no-print-directory bin/tor-devbroker >&2 ||
			die "broker: cannot build bin/tor-devbroker"
	fi
	if pid=$(live_pid "$BROKER_PID" tor-devbroker) && devbroker_answers; then
		say "broker: already up (pid $pid, $(head -n 1 "$BROKER_BOOTSTRAP"))"
		return 0
	fi
	[ -n "${pid:-}" ] && stop_pid "$pid" broker   # alive but deaf: start over
	rm -f "$BROKER_PID" "$BROKER_BOOTSTRAP" "$BROKER_CTL"
	for t in $BROKER_TOPICS __tor_checkpoints:1; do
		args+=(--topic "$t")
	done
	setsid "$DEVBROKER" --brokers 3 "${args[@]}" \
	    --bootstrap-file "$BROKER_BOOTSTRAP" --control "$BROKER_CTL" \
	    </dev/null >>"$BROKER_DIR/broker.log" 2>&1 &
	pid=$!
	echo "$pid" >"$BROKER_PID"
	for ((i = 0; i < 100; i++)); do
		[ -s "$BROKER_BOOTSTRAP" ] && devbroker_answers && break
		if ! kill -0 "$pid" 2>/dev/null; then
			say "broker: tor-devbroker exited during start; last lines of $BROKER_DIR/broker.log:"
			tail -n 20 "$BROKER_DIR/broker.log" | sed 's/^/    /'
			exit 1
		fi
		sleep 0.1
	done
	devbroker_answers || die "broker: no answer to ping after 10s (pid $pid)"
	say "broker: up (pid $pid, $(head -n 1 "$BROKER_BOOTSTRAP"), topics: $BROKER_TOPICS)"
}

stop_devbroker() {
	local pid
	if pid=$(live_pid "$BROKER_PID" tor-devbroker); then
		stop_pid "$pid" broker
		say "broker: stopped"
	else
		say "broker: not running"
	fi
	rm -f "$BROKER_PID" "$BROKER_BOOTSTRAP" "$BROKER_CTL"
}

status_devbroker() {
	local pid
	if pid=$(live_pid "$BROKER_PID" tor-devbroker) && devbroker_answers; then
		say "broker: up (pid $pid, $(head -n 1 "$BROKER_BOOTSTRAP"))"
	else
		say "broker: down"
		return 1
	fi
}

# ---- verbs -----------------------------------------------------------------

services_of() {
	local s
	if [ $# -eq 0 ]; then
		echo "${ALL_SERVICES[@]}"
		return
	fi
	for s in "$@"; do
		case "$s" in
		mariadb | redis | kafka | devbroker | sentinel | redis-cluster) ;;
		mysql) s=mariadb ;;
		mariadb-replica) s=mariadb_replica ;;
		*) die "unknown service '$s' (mariadb, mariadb-replica, redis, kafka, devbroker, sentinel, redis-cluster)" ;;
		esac
		echo "$s"
	done
}

usage() {
	sed -n '9,20p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

[ $# -ge 1 ] || usage
verb=$1
shift
case "$verb" in
start)
	mkdir -p "$RUN_DIR" || die "cannot create $RUN_DIR"
	for s in $(services_of "$@"); do "start_$s"; done
	write_env
	;;
stop)
	# A plain stop ends the Sentinels too, before Redis, whether or not
	# TOR_SENTINEL says they belong to "all".
	# It also ends both brokers, whichever TOR_KAFKA names.
	if [ $# -eq 0 ]; then
		stop_sentinel
		stop_redis-cluster
		for s in mariadb_replica mariadb redis kafka devbroker; do "stop_$s"; done
	else
		for s in $(services_of "$@"); do "stop_$s"; done
	fi
	;;
restart)
	mkdir -p "$RUN_DIR" || die "cannot create $RUN_DIR"
	for s in $(services_of "$@"); do "stop_$s"; "start_$s"; done
	write_env
	;;
status)
	rc=0
	for s in $(services_of "$@"); do "status_$s" || rc=1; done
	exit $rc
	;;
destroy)
	stop_sentinel
	stop_redis-cluster
	for s in mariadb_replica mariadb redis kafka devbroker; do "stop_$s"; done
	rm -rf "$RUN_DIR"
	say "removed $RUN_DIR"
	;;
kafka-ctl)
	kafka_ctl "$@"
	;;
mysql-ctl)
	mysql_ctl "$@"
	;;
broker-ctl)
	[ $# -ge 1 ] || die "usage: stack.sh broker-ctl <command...>"
	[ -x "$DEVBROKER" ] || die "no $DEVBROKER (make bin/tor-devbroker)"
	exec "$DEVBROKER" --ctl "$BROKER_CTL" "$@"
	;;
env)
	[ -f "$RUN_DIR/env" ] || die "no $RUN_DIR/env: run stack.sh start"
	cat "$RUN_DIR/env"
	;;
tor-config)
	# A tor.cfg for this stack: the documented sample, pointed at it.
	[ -f "$RUN_DIR/env" ] || die "no $RUN_DIR/env: run stack.sh start"
	# shellcheck disable=SC1091
	. "$RUN_DIR/env"
	dev_topics=()
	[ "$TOR_KAFKA_BROKERS" = "${TOR_DEVBROKER_BROKERS:-}" ] &&
		dev_topics=(-e "s/^\(  topics = \).*/\1( );   # the dev broker made them (DESIGN.md §9)/")
	sed -e "s/^\(  port = \)3306;/\1$TOR_MYSQL_PORT;/" \
	    -e "s/^\(  port = \)6379;/\1$TOR_REDIS_PORT;/" \
	    -e "s/^\(  brokers = \)\"[^\"]*\";/\1\"$TOR_KAFKA_BROKERS\";/" \
	    -e "s/^\(  password = \)\"\";\(.*# default \"\"; prefer password_file or TOR_MYSQL\)/\1\"tor\";\2/" \
	    -e "s/^\(  listen = \)\"0.0.0.0:9187\";/\1\"\";/" \
	    "${dev_topics[@]}" "$repo/tor.cfg"
	;;
-h | --help | help) usage ;;
*) usage ;;
esac

#!/usr/bin/env bash
# The local stack for developing and testing tor: MariaDB (binlog source),
# Redis (lease and checkpoint) and the development Kafka broker
# (bin/tor-devbroker, DESIGN.md §9), all as plain background processes of
# this user, everything under one run directory.
#
#   stack.sh start|stop|status|restart [mariadb|redis|broker|sentinel ...]   (default: all)
#   stack.sh destroy                     stop all and remove the run directory
#   stack.sh broker-ctl <command...>     e.g. `stack.sh broker-ctl down 1`
#   stack.sh env                         print the env file
#   stack.sh tor-config                  print a tor.cfg (the sample) pointed at this stack
#
# Environment:
#   TOR_RUN_DIR        run directory (default <repo>/run/local)
#   TOR_MYSQL_PORT     MariaDB port (default 3307)
#   TOR_REDIS_PORT     Redis port (default 6380)
#   TOR_MYSQL_EXTRA    extra mariadbd options, e.g. "--binlog-format=STATEMENT"
#   TOR_BROKER_TOPICS  topics created by the broker (default "order:3 invoice:3 dlq:1";
#                      __tor_checkpoints:1 is always added: tor creates its
#                      checkpoint topic where it is missing, and the dev broker
#                      cannot CreateTopics, DESIGN.md §9)
#   TOR_SENTINEL       1: "all" includes the sentinel service (default: off)
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
# TOR_SENTINEL_ACL=1 (at start): the Sentinels take no unauthenticated
# client (user default off): ACL user "stack" (password "stack-secret", all
# commands: this script and the Sentinels among themselves) and "tor"
# (password "tor-sentinel-secret", AUTH, PING and SENTINEL
# get-master-addr-by-name only).
#
# After start, $TOR_RUN_DIR/env holds TOR_MYSQL_HOST, TOR_MYSQL_PORT,
# TOR_MYSQL_SOCKET, TOR_REDIS_PORT, TOR_KAFKA_BROKERS and TOR_BROKER_CONTROL
# in shell syntax: `. run/local/env`.
#
# MariaDB users made at the first start: tor/tor (replication and SELECT on
# *.*), app/app (ALL on shop.*), root without password from 127.0.0.1 and
# through the socket.  The datadir survives stop/restart; `destroy` drops it.
set -u

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# Absolute: mariadbd resolves the paths of its my.cnf from its own working
# directory, not ours.
RUN_DIR=$(realpath -m "${TOR_RUN_DIR:-$repo/run/local}")
MYSQL_PORT=${TOR_MYSQL_PORT:-3307}
REDIS_PORT=${TOR_REDIS_PORT:-6380}
MYSQL_EXTRA=${TOR_MYSQL_EXTRA:-}
BROKER_TOPICS=${TOR_BROKER_TOPICS:-order:3 invoice:3 dlq:1}
DEVBROKER=$repo/bin/tor-devbroker

MY_DIR=$RUN_DIR/mariadb
MY_CNF=$MY_DIR/my.cnf
MY_SOCK=$MY_DIR/mysqld.sock
MY_PID=$MY_DIR/mysqld.pid
REDIS_DIR=$RUN_DIR/redis
REDIS_PID=$REDIS_DIR/redis.pid
BROKER_DIR=$RUN_DIR/broker
BROKER_PID=$BROKER_DIR/broker.pid
BROKER_CTL=$BROKER_DIR/control.sock
BROKER_BOOTSTRAP=$BROKER_DIR/bootstrap
SENTINEL_DIR=$RUN_DIR/sentinel
SENTINEL_MASTER=mymaster
REPLICA_PORT=$((REDIS_PORT + 1))
SENTINEL_PORTS=($((REDIS_PORT + 100)) $((REDIS_PORT + 101)) $((REDIS_PORT + 102)))

ALL_SERVICES=(mariadb redis broker)
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

write_env() {
	local brokers=""
	[ -s "$BROKER_BOOTSTRAP" ] && brokers=$(head -n 1 "$BROKER_BOOTSTRAP")
	mkdir -p "$RUN_DIR"
	cat >"$RUN_DIR/env.tmp" <<EOF
# Written by deploy/local/stack.sh; source it: . $RUN_DIR/env
TOR_RUN_DIR='$RUN_DIR'
TOR_MYSQL_HOST='127.0.0.1'
TOR_MYSQL_PORT='$MYSQL_PORT'
TOR_MYSQL_SOCKET='$MY_SOCK'
TOR_REDIS_PORT='$REDIS_PORT'
TOR_KAFKA_BROKERS='$brokers'
TOR_BROKER_CONTROL='$BROKER_CTL'
export TOR_RUN_DIR TOR_MYSQL_HOST TOR_MYSQL_PORT TOR_MYSQL_SOCKET TOR_REDIS_PORT TOR_KAFKA_BROKERS TOR_BROKER_CONTROL
EOF
	sentinel_up && sentinel_env >>"$RUN_DIR/env.tmp"
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
	[ -f "$MY_DIR/.provisioned" ] && return 0
	mariadb --defaults-file="$MY_CNF" -uroot <<'EOF' || mariadb_fail "provisioning SQL failed"
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
	touch "$MY_DIR/.provisioned"
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

stop_mariadb() {
	local pid
	if pid=$(live_pid "$MY_PID" mariadbd); then
		stop_pid "$pid" mariadb
		say "mariadb: stopped"
	else
		say "mariadb: not running"
	fi
	rm -f "$MY_PID"
}

status_mariadb() {
	local pid
	if pid=$(live_pid "$MY_PID" mariadbd) && mariadb_answers; then
		say "mariadb: up (pid $pid, port $MYSQL_PORT)"
	else
		say "mariadb: down"
		return 1
	fi
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

# ---- development Kafka broker -----------------------------------------------

broker_answers() {
	[ -S "$BROKER_CTL" ] && [ -x "$DEVBROKER" ] &&
		"$DEVBROKER" --ctl "$BROKER_CTL" ping >/dev/null 2>&1
}

start_broker() {
	local pid i t args=()
	mkdir -p "$BROKER_DIR"
	if [ ! -x "$DEVBROKER" ] || [ "$here/devbroker.c" -nt "$DEVBROKER" ]; then
		make -C "$repo" --no-print-directory bin/tor-devbroker >&2 ||
			die "broker: cannot build bin/tor-devbroker"
	fi
	if pid=$(live_pid "$BROKER_PID" tor-devbroker) && broker_answers; then
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
		[ -s "$BROKER_BOOTSTRAP" ] && broker_answers && break
		if ! kill -0 "$pid" 2>/dev/null; then
			say "broker: tor-devbroker exited during start; last lines of $BROKER_DIR/broker.log:"
			tail -n 20 "$BROKER_DIR/broker.log" | sed 's/^/    /'
			exit 1
		fi
		sleep 0.1
	done
	broker_answers || die "broker: no answer to ping after 10s (pid $pid)"
	say "broker: up (pid $pid, $(head -n 1 "$BROKER_BOOTSTRAP"), topics: $BROKER_TOPICS)"
}

stop_broker() {
	local pid
	if pid=$(live_pid "$BROKER_PID" tor-devbroker); then
		stop_pid "$pid" broker
		say "broker: stopped"
	else
		say "broker: not running"
	fi
	rm -f "$BROKER_PID" "$BROKER_BOOTSTRAP" "$BROKER_CTL"
}

status_broker() {
	local pid
	if pid=$(live_pid "$BROKER_PID" tor-devbroker) && broker_answers; then
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
		mariadb | redis | broker | sentinel) ;;
		mysql) s=mariadb ;;
		kafka) s=broker ;;
		*) die "unknown service '$s' (mariadb, redis, broker, sentinel)" ;;
		esac
		echo "$s"
	done
}

usage() {
	sed -n '7,11p' "$0" | sed 's/^# \{0,1\}//'
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
	[ $# -eq 0 ] && stop_sentinel
	for s in $(services_of "$@"); do
		[ "$s" = sentinel ] && [ $# -eq 0 ] && continue
		"stop_$s"
	done
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
	for s in "${ALL_SERVICES[@]}"; do
		[ "$s" = sentinel ] || "stop_$s"
	done
	rm -rf "$RUN_DIR"
	say "removed $RUN_DIR"
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
	sed -e "s/^\(  port = \)3306;/\1$TOR_MYSQL_PORT;/" \
	    -e "s/^\(  port = \)6379;/\1$TOR_REDIS_PORT;/" \
	    -e "s/^\(  brokers = \)\"[^\"]*\";/\1\"$TOR_KAFKA_BROKERS\";/" \
	    -e "s/^\(  password = \)\"\";\(.*# default \"\"; prefer password_file or TOR_MYSQL\)/\1\"tor\";\2/" \
	    -e "s/^\(  listen = \)\"0.0.0.0:9187\";/\1\"\";/" \
	    -e "s/^\(  topics = \).*/\1( );   # the dev broker made them (DESIGN.md §9)/" \
	    "$repo/tor.cfg"
	;;
-h | --help | help) usage ;;
*) usage ;;
esac

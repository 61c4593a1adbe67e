#!/usr/bin/env bash
# The local demo in one command: the stack (deploy/local/stack.sh), the
# example service (bin/tor-example, deploy/example/) and three tor replicas
# r1 r2 r3 competing for one lease, all as background processes of this
# user under the run directory.
#
#   up.sh up       start what is not running, wait until a replica leads and
#                  the example service answers, print what to try next
#   up.sh down     stop the replicas (SIGTERM, waited for), the example
#                  service and the stack
#   up.sh watch    consume the topics order and invoice from the beginning
#                  (kcat: key, headers, value) until Ctrl-C
#
# `make up`, `make down` and `make watch` run these (make up builds first).
#
# Environment:
#   TOR_RUN_DIR        run directory (default <repo>/run/local)
#   TOR_MYSQL_PORT     MariaDB port (default 3307)
#   TOR_REDIS_PORT     Redis port (default 6380)
#   TOR_KAFKA_PORT     Apache Kafka's port (default 9192; one node, and the
#                      49 ports after it, see deploy/local/stack.sh)
#   TOR_EXAMPLE_PORT   the example service's port on 127.0.0.1 (default 8080)
#
# In the run directory: tor.cfg (the replicas' config, from `stack.sh
# tor-config`), tor-<name>.log and tor-<name>.pid for each replica,
# tor-example.log and tor-example.pid, and up.env (the example's port).
set -u

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
RUN_DIR=${TOR_RUN_DIR:-$repo/run/local}
STACK_SH=$here/stack.sh
TOR=$repo/bin/tor
EXAMPLE=$repo/bin/tor-example
CFG=$RUN_DIR/tor.cfg
REPLICAS=(r1 r2 r3)
TOPICS=(order invoice)
WAIT_S=${TOR_UP_TIMEOUT:-60}
STOP_TIMEOUT=${TOR_STOP_TIMEOUT:-30}

say() { printf 'up: %s\n' "$*"; }
die() { printf 'up: %s\n' "$*" >&2; exit 1; }

# The ports: those given in the environment, else those the run directory
# was last started with (the stack's env file, up.env), else the defaults;
# so `TOR_RUN_DIR=... make down` (or up again) finds the same processes.
load_env() {
	local mysql=${TOR_MYSQL_PORT:-} redis=${TOR_REDIS_PORT:-}
	local kafka=${TOR_KAFKA_PORT:-} example=${TOR_EXAMPLE_PORT:-}
	# shellcheck disable=SC1091
	[ -f "$RUN_DIR/env" ] && . "$RUN_DIR/env"
	# shellcheck disable=SC1091
	[ -f "$RUN_DIR/up.env" ] && . "$RUN_DIR/up.env"
	export TOR_RUN_DIR=$RUN_DIR
	export TOR_MYSQL_PORT=${mysql:-${TOR_MYSQL_PORT:-3307}}
	export TOR_REDIS_PORT=${redis:-${TOR_REDIS_PORT:-6380}}
	export TOR_KAFKA_PORT=${kafka:-${TOR_KAFKA_PORT:-9192}}
	export TOR_EXAMPLE_PORT=${example:-${TOR_EXAMPLE_PORT:-8080}}
	EXAMPLE_PORT=$TOR_EXAMPLE_PORT
}

# A path as the user should type it: relative inside the repository.
shown() {
	case "$1" in
	"$repo"/*) printf '%s' "${1#"$repo"/}" ;;
	*) printf '%s' "$1" ;;
	esac
}

# The environment a make command needs to find this run directory again;
# empty for the default one.
make_env() {
	[ "$RUN_DIR" = "$repo/run/local" ] || printf 'TOR_RUN_DIR=%s ' "$RUN_DIR"
}

# shellcheck source=deploy/local/proc.sh
. "$here/proc.sh"

# Starts a program in its own session with its output appended to a log and
# its pid in a pid file; the previous log is kept as <log>.1.
spawn() {
	local pidfile=$1 log=$2
	shift 2
	[ -f "$log" ] && mv -f "$log" "$log.1"
	setsid "$@" </dev/null >"$log" 2>&1 &
	echo $! >"$pidfile"
}

replica_pid() { live_pid "$RUN_DIR/tor-$1.pid" "$CFG"; }
example_pid() { live_pid "$RUN_DIR/tor-example.pid" "$EXAMPLE"; }

log_tail() {
	say "last lines of $(shown "$1"):"
	tail -n 15 "$1" 2>/dev/null | sed 's/^/    /'
}

# ---- up --------------------------------------------------------------------

# Writes the replicas' config; when it changed (the broker restarted on new
# ports), running replicas are stopped so that they start again with it.
write_config() {
	local r pid
	"$STACK_SH" tor-config >"$CFG.tmp" || die "stack.sh tor-config failed"
	if [ -f "$CFG" ] && cmp -s "$CFG" "$CFG.tmp"; then
		rm -f "$CFG.tmp"
		return
	fi
	for r in "${REPLICAS[@]}"; do
		if pid=$(replica_pid "$r"); then
			say "tor $r: the stack changed, restarting it"
			stop_pid "$pid" "tor $r"
		fi
	done
	mv "$CFG.tmp" "$CFG"
	"$TOR" --check-config -c "$CFG" >"$RUN_DIR/tor-check-config.out" 2>&1 ||
		{ log_tail "$RUN_DIR/tor-check-config.out"; die "$(shown "$CFG") is not valid"; }
}

# True when something answers HTTP on the example's port.
example_answers() {
	local status
	status=$(exec 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$EXAMPLE_PORT" &&
		printf 'GET / HTTP/1.0\r\n\r\n' >&3 && head -n 1 <&3) || return 1
	case "$status" in
	HTTP/1.?\ 405*) return 0 ;;
	*) return 1 ;;
	esac
}

start_example() {
	local pid i
	if pid=$(example_pid) && example_answers; then
		say "example: already up (pid $pid, http://127.0.0.1:$EXAMPLE_PORT)"
		return
	fi
	[ -n "${pid:-}" ] && stop_pid "$pid" example   # alive but deaf
	spawn "$RUN_DIR/tor-example.pid" "$RUN_DIR/tor-example.log" \
	    "$EXAMPLE" --listen "127.0.0.1:$EXAMPLE_PORT" \
	    --mysql-host 127.0.0.1 --mysql-port "$TOR_MYSQL_PORT" \
	    --mysql-user app --mysql-password app --database shop
	pid=$(cat "$RUN_DIR/tor-example.pid")
	for ((i = 0; i < WAIT_S * 10; i++)); do
		example_answers && break
		if ! kill -0 "$pid" 2>/dev/null; then
			log_tail "$RUN_DIR/tor-example.log"
			die "example: bin/tor-example exited during start"
		fi
		sleep 0.1
	done
	example_answers || { log_tail "$RUN_DIR/tor-example.log";
		die "example: no answer on 127.0.0.1:$EXAMPLE_PORT after ${WAIT_S}s"; }
	say "example: up (pid $pid, http://127.0.0.1:$EXAMPLE_PORT)"
}

start_replicas() {
	local r pid
	for r in "${REPLICAS[@]}"; do
		if pid=$(replica_pid "$r"); then
			say "tor $r: already up (pid $pid)"
			continue
		fi
		spawn "$RUN_DIR/tor-$r.pid" "$RUN_DIR/tor-$r.log" \
		    env HOSTNAME="$r" "$TOR" -c "$CFG"
		say "tor $r: started (pid $(cat "$RUN_DIR/tor-$r.pid"), log $(shown "$RUN_DIR/tor-$r.log"))"
	done
}

# The leader's instance name, from `tor status`; fails while none leads.
leader_name() {
	"$TOR" status -c "$CFG" 2>/dev/null | sed -n 's/^leader: //p' | grep -v '^none$'
}

# Waits until a replica holds the lease and knows where in the binlog it
# starts: from then on every committed outbox row is published.
wait_leader() {
	local i r leader
	for ((i = 0; i < WAIT_S * 10; i++)); do
		for r in "${REPLICAS[@]}"; do
			if ! replica_pid "$r" >/dev/null; then
				log_tail "$RUN_DIR/tor-$r.log"
				die "tor $r exited"
			fi
		done
		if leader=$(leader_name) &&
		    grep -qE 'starting at|resuming from the checkpoint' \
		    "$RUN_DIR/tor-$leader.log" 2>/dev/null; then
			say "tor: $leader leads ($("$TOR" status -c "$CFG" | sed -n 's/^token: /token /p'))"
			LEADER=$leader
			return
		fi
		sleep 0.1
	done
	for r in "${REPLICAS[@]}"; do log_tail "$RUN_DIR/tor-$r.log"; done
	die "no replica leads after ${WAIT_S}s"
}

print_next_steps() {
	local u1=3f1c2a9e-6b7d-4c8e-9a0b-1d2e3f4a5b6c cfg
	cfg=$(shown "$CFG")
	cat <<EOF

The demo is up: the example service on http://127.0.0.1:$EXAMPLE_PORT writes
orders and their events to shop.outbox in one transaction; three tor
replicas (r1 r2 r3) compete for the lease, and the leader publishes the
events to Kafka (topic "order").

Create an order, then delete it (any UUID; 201, 409 if it exists, 204, 404):
  curl -i -X PUT http://127.0.0.1:$EXAMPLE_PORT/$u1
  curl -i -X DELETE http://127.0.0.1:$EXAMPLE_PORT/$u1

Watch the events (key, headers, value) until Ctrl-C:
  $(make_env)make watch
  # or: kcat -b $TOR_KAFKA_BROKERS -C -t order -o beginning -f '%k %h %s\n'

See who leads:
  bin/tor status -c $cfg

Kill the leader ($LEADER now) and watch the failover: a standby leads within
a second (Redis sees the dead process's connection close) and goes on from
the checkpoint; PUT and DELETE meanwhile, no event is lost:
  kill -9 \$(cat $(shown "$RUN_DIR")/tor-$LEADER.pid)
  bin/tor status -c $cfg

Logs: $(shown "$RUN_DIR")/tor-r1.log ... tor-r3.log, tor-example.log.
Stop everything: $(make_env)make down
EOF
}

do_up() {
	if [ ! -x "$TOR" ] || [ ! -x "$EXAMPLE" ]; then
		die "no bin/tor or bin/tor-example: run make all (make up does)"
	fi
	mkdir -p "$RUN_DIR" || die "cannot create $RUN_DIR"
	load_env
	"$STACK_SH" start || die "the stack did not start"
	load_env        # the broker's ports
	# A later `up.sh down` or `watch` finds the example's port here.
	printf "TOR_EXAMPLE_PORT='%s'\n" "$EXAMPLE_PORT" >"$RUN_DIR/up.env"
	write_config
	start_example
	start_replicas
	wait_leader
	print_next_steps
}

# ---- down ------------------------------------------------------------------

do_down() {
	local r pid pids=() names=() i
	load_env
	# TERM to all replicas at once: the leader finishes, writes its final
	# checkpoint and hands over to nobody that stays.
	for r in "${REPLICAS[@]}"; do
		if pid=$(replica_pid "$r"); then
			kill -TERM "$pid" 2>/dev/null
			pids+=("$pid")
			names+=("$r")
		else
			say "tor $r: not running"
		fi
	done
	for i in "${!pids[@]}"; do
		stop_pid "${pids[$i]}" "tor ${names[$i]}"
		say "tor ${names[$i]}: stopped"
	done
	rm -f "$RUN_DIR"/tor-r?.pid
	if pid=$(example_pid); then
		stop_pid "$pid" example
		say "example: stopped"
	else
		say "example: not running"
	fi
	rm -f "$RUN_DIR/tor-example.pid"
	if [ -d "$RUN_DIR" ]; then
		"$STACK_SH" stop || die "stack.sh stop failed"
	fi
}

# ---- watch -----------------------------------------------------------------

do_watch() {
	local t pids=()
	load_env
	command -v kcat >/dev/null || die "no kcat (make deps installs it)"
	[ -n "${TOR_KAFKA_BROKERS:-}" ] || die "no broker known: is the demo up? (make up)"
	say "consuming ${TOPICS[*]} from $TOR_KAFKA_BROKERS; Ctrl-C to stop"
	# One kcat per topic: plain consumers need no group coordinator.
	for t in "${TOPICS[@]}"; do
		kcat -b "$TOR_KAFKA_BROKERS" -C -t "$t" -o beginning -q \
		    -f 'topic=%t partition=%p offset=%o key=%k headers=%h value=%s\n' &
		pids+=($!)
	done
	trap 'kill "${pids[@]}" 2>/dev/null; wait; exit 0' INT TERM
	wait
}

case "${1:-}" in
up) do_up ;;
down) do_down ;;
watch) do_watch ;;
*)
	sed -n '7,12p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac

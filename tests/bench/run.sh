#!/usr/bin/env bash
# `make bench`: tor's relay benchmark on a stack of its own.
#
# Starts deploy/local/stack.sh in a separate run directory with ports apart
# from the test stack's (so a test stack may run beside it): MariaDB, Redis,
# Apache Kafka (one node, its JVM given a benchmark's heap and JIT) and, for
# comparison, the development broker beside it.  Runs
# tests/bench/bench_relay.py with the release binary bin/tor on each broker
# TOR_BENCH_KAFKA names (the baselines measured against the same broker in
# the same run), then, on Kafka,
# tests/bench/bench_failover.py (kill -9, SIGTERM and SIGSTOP failover times
# of three replicas, with Redis in clear text, then over TLS), tests/bench/bench_dedup.py (what a takeover spends
# reading partitions' tails, 3 and 100 partitions) and tests/bench/bench_pool.py
# (a replica of several groups: throughput against one group, memory and
# threads per group, time to rebalance), and stops the stack on any exit.  Figures are printed, never
# judged: the exit status is non-zero only when something broke (the stack,
# tor, a tool), not when a figure misses its target.
#
# Environment:
#   TOR_BENCH_RUNS        runs per figure, the median is reported (default 3)
#   TOR_BENCH_ROWS        outbox rows per throughput run (default 200000)
#   TOR_BENCH_RUN_DIR     stack run directory (default <repo>/run/bench)
#   TOR_BENCH_MYSQL_PORT  MariaDB port (default 3337)
#   TOR_BENCH_REDIS_PORT  Redis port (default 6397)
#   TOR_BENCH_KAFKA_PORT  Kafka's first port (default 9392; it takes 50)
#   TOR_BENCH_KAFKA       the relay benchmark's brokers: "kafka,dev" (default:
#                         Apache Kafka, then the dev broker), "kafka" or "dev"
#   TOR_KAFKA_JVM_OPTS    the Kafka JVM's options (default: a 1 GiB heap, G1,
#                         the full JIT, as Kafka's own start script gives it;
#                         stack.sh's default is a small heap and C1 only,
#                         for quick starts)
#   TOR_BIN               tor binary (default <repo>/bin/tor)
#   TOR_BENCH_KEEP_STACK  1: leave the stack running at the end
#   TOR_BENCH_KAFKA_PROPS extra librdkafka properties for tor, "a=1;b=2"
#                         (experiments only)
#   TOR_BENCH_LAT_SECONDS, TOR_BENCH_LAT_RATE  latency run length and rate
#   TOR_BENCH_FAILOVER_TRIALS  failover trials of each kind (default 20)
#   TOR_BENCH_ONLY        the benchmarks to run, of relay,failover,dedup,pool
#                         (default: all of them, in that order)
set -u
cd "$(dirname "$0")/../.."
root=$PWD

export TOR_RUN_DIR=${TOR_BENCH_RUN_DIR:-$root/run/bench}
export TOR_MYSQL_PORT=${TOR_BENCH_MYSQL_PORT:-3337}
export TOR_REDIS_PORT=${TOR_BENCH_REDIS_PORT:-6397}
export TOR_KAFKA_PORT=${TOR_BENCH_KAFKA_PORT:-9392}
export TOR_KAFKA=kafka TOR_KAFKA_NODES=1
export TOR_BENCH_KAFKA=${TOR_BENCH_KAFKA:-kafka,dev}
export TOR_KAFKA_JVM_OPTS=${TOR_KAFKA_JVM_OPTS:--Xms1g -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35}
export TOR_BROKER_TOPICS="bench:3 bench.kcat:3 bench.lat:3 bench.failover:4 bench.dedup3:3 bench.dedup100:100"
unset TOR_MYSQL_EXTRA
export TOR_BIN=${TOR_BIN:-$root/bin/tor}

stack=$root/deploy/local/stack.sh

for tool in kcat mariadb-binlog /usr/bin/python3; do
	command -v "$tool" >/dev/null || { echo "bench: $tool missing (make deps)" >&2; exit 1; }
done
[ -x "$TOR_BIN" ] || { echo "bench: no $TOR_BIN (make all)" >&2; exit 1; }

cleanup() {
	if [ "${TOR_BENCH_KEEP_STACK:-0}" != 1 ]; then
		"$stack" stop >/dev/null 2>&1 || "$stack" stop
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

only=",${TOR_BENCH_ONLY:-relay,failover,dedup,pool},"
wanted() { case $only in *,$1,*) return 0 ;; esac; return 1; }

services=(mariadb redis kafka)
# The dev broker serves the relay benchmark alone.
if wanted relay; then
	case ",$TOR_BENCH_KAFKA," in *,dev,*) services+=(devbroker) ;; esac
fi
echo "bench: stack in $TOR_RUN_DIR (mysql $TOR_MYSQL_PORT, redis $TOR_REDIS_PORT, kafka $TOR_KAFKA_PORT; ${services[*]})"
echo "bench: Kafka JVM: $TOR_KAFKA_JVM_OPTS"
# Kafka afresh: a running one may have other JVM options, and the last
# run's records (hundreds of MB) go.
"$stack" stop kafka >/dev/null 2>&1
rm -rf "$TOR_RUN_DIR/kafka"
if ! out=$("$stack" start "${services[@]}" 2>&1); then
	echo "$out" >&2
	echo "bench: stack start failed" >&2
	exit 1
fi

rc=0
if wanted relay; then
	/usr/bin/python3 "$root/tests/bench/bench_relay.py" || rc=1
fi
if wanted failover; then
	/usr/bin/python3 "$root/tests/bench/bench_failover.py" || rc=1
	TOR_BENCH_REDIS_TLS=1 /usr/bin/python3 "$root/tests/bench/bench_failover.py" || rc=1
fi
if wanted dedup; then
	/usr/bin/python3 "$root/tests/bench/bench_dedup.py" || rc=1
fi
if wanted pool; then
	/usr/bin/python3 "$root/tests/bench/bench_pool.py" || rc=1
fi
exit $rc

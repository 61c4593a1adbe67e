#!/usr/bin/env bash
# The chaos runner pointed at a deployment it did not start: the local demo
# of `make up` (deploy/local/up.sh) in a run directory of its own, acted on
# through shell commands (tests/chaos/backends.py's CommandBackend), the way
# a staging deployment is.  Writes the target file, runs tests/chaos/run
# --target with the arguments given, takes the demo down.
#
#   tests/chaos/up-target.sh --duration 60 --seed 3
#
# The demo's Kafka is one node: its broker faults are that node killed
# (-9) and started again on its data, or paused (SIGSTOP) and resumed, and
# it is the controller; the replicas talk to it directly, so there is no
# latency fault (the local back-end's proxy gives one).
#
# Environment: TOR_CHAOS_UP_DIR (default run/chaos-up), and its ports
# TOR_CHAOS_UP_MYSQL_PORT (3349), TOR_CHAOS_UP_REDIS_PORT (6409),
# TOR_CHAOS_UP_KAFKA_PORT (9492, and the 49 after it),
# TOR_CHAOS_UP_EXAMPLE_PORT (8089).
set -u
cd "$(dirname "$0")/../.."
root=$PWD
run=${TOR_CHAOS_UP_DIR:-$root/run/chaos-up}
export TOR_RUN_DIR=$run
export TOR_MYSQL_PORT=${TOR_CHAOS_UP_MYSQL_PORT:-3349}
export TOR_REDIS_PORT=${TOR_CHAOS_UP_REDIS_PORT:-6409}
export TOR_KAFKA_PORT=${TOR_CHAOS_UP_KAFKA_PORT:-9492}
export TOR_KAFKA=kafka TOR_KAFKA_NODES=1
export TOR_EXAMPLE_PORT=${TOR_CHAOS_UP_EXAMPLE_PORT:-8089}

trap 'deploy/local/up.sh down >/dev/null 2>&1' EXIT
trap 'exit 130' INT TERM
deploy/local/up.sh up >/dev/null || { echo "up-target: make up failed" >&2; exit 2; }
# shellcheck disable=SC1091
. "$run/env"
group=$(sed -n 's/^group = "\(.*\)";.*/\1/p' "$run/tor.cfg")
env="TOR_RUN_DIR=$run TOR_MYSQL_PORT=$TOR_MYSQL_PORT TOR_REDIS_PORT=$TOR_REDIS_PORT TOR_KAFKA_PORT=$TOR_KAFKA_PORT TOR_KAFKA=kafka TOR_KAFKA_NODES=1"
stack="$env $root/deploy/local/stack.sh"
pid="\$(cat $run/tor-{name}.pid)"
gone="while kill -0 \$p 2>/dev/null; do sleep 0.1; done"

/usr/bin/python3 - "$run/target.json" <<PY
import json, sys
json.dump({
  "backend": "commands", "broker_count": 1,
  "group": "$group", "brokers": "$TOR_KAFKA_BROKERS",
  "mysql": {"host": "127.0.0.1", "port": $TOR_MYSQL_PORT, "user": "app",
            "password": "app", "database": "shop"},
  "redis": {"host": "127.0.0.1", "port": $TOR_REDIS_PORT},
  "outbox": {"table": "shop.outbox",
             "columns": {"id": "uuid", "range": "id", "key": "aggregate_id",
                         "type": "aggregate_type", "payload": "payload"},
             "routes": {"order": "order", "invoice": "invoice"}},
  "lease_ms": 3000,
  "replicas": ["r1", "r2", "r3"],
  "tor_config": "$run/tor.cfg",
  "commands": {
    "replica.start": "kill -0 $pid 2>/dev/null || { setsid env HOSTNAME={name} $root/bin/tor -c $run/tor.cfg </dev/null >>$run/tor-{name}.log 2>&1 & echo \$! >$run/tor-{name}.pid; }",
    "replica.stop": "p=$pid; kill -TERM \$p; $gone",
    "replica.kill": "p=$pid; kill -KILL \$p; $gone",
    "replica.pause": "kill -STOP $pid",
    "replica.resume": "kill -CONT $pid",
    "replica.running": "kill -0 $pid",
    "replica.logs": "cat $run/tor-{name}.log.1 $run/tor-{name}.log 2>/dev/null",
    "mysql.kill": "kill -KILL \$(cat $run/mariadb/mysqld.pid)",
    "mysql.stop": "$stack stop mariadb >/dev/null",
    "mysql.start": "$stack start mariadb >/dev/null",
    "redis.stop": "redis-cli -p $TOR_REDIS_PORT shutdown save; true",
    "redis.wipe": "redis-cli -p $TOR_REDIS_PORT shutdown nosave; rm -f $run/redis/dump.rdb",
    "redis.start": "$stack start redis >/dev/null",
    "broker.down": "$stack kafka-ctl kill {arg} >/dev/null",
    "broker.up": "$stack kafka-ctl start {arg} >/dev/null",
    "broker.pause": "$stack kafka-ctl pause {arg} >/dev/null",
    "broker.resume": "$stack kafka-ctl resume {arg} >/dev/null",
    "broker.controller": "echo 1",
    "broker.start": "$stack start kafka >/dev/null",
    "tor": "$root/bin/tor"
  }
}, open(sys.argv[1], "w"), indent=1)
PY
/usr/bin/python3 tests/chaos/run --target "$run/target.json" \
	--admin-user root --admin-password "" --out "$run/report" "$@"

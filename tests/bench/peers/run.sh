#!/usr/bin/env bash
# `make bench-peers`: tor beside Debezium Server and the Go tor, each in
# turn on one stack of its own (tests/bench/peers/bench_peers.py says what
# is measured), then the table (docs/peers.md) and the chart
# (docs/peers.png) from the results (report.py).
#
# Fetches each peer as its users do, once, into build/peers:
#   - Debezium Server: its distribution archive from Maven Central
#     (pom.xml beside this script, mvn dependency:unpack); it needs a JDK 21
#     or newer (its classes are Java 21's): the newest under /usr/lib/jvm,
#     or TOR_PEERS_JAVA_HOME;
#   - the Go tor: `go install github.com/lorenzoranucci/tor/example/tor@latest`
#     through the Go module proxy.  A refusal is written to
#     build/peers/go-tor.why and not asked again (TOR_PEERS_GO_TOR_RETRY=1
#     asks again).
# A peer that cannot be had is a row that says why, not a failure.
#
# Environment (besides bench_peers.py's TOR_PEERS_RUNS, TOR_PEERS_ROWS,
# TOR_PEERS):
#   TOR_PEERS_RUN_DIR     stack run directory (default <repo>/run/peers)
#   TOR_PEERS_MYSQL_PORT  MariaDB port (default 3357)
#   TOR_PEERS_REDIS_PORT  Redis port (default 6417)
#   TOR_PEERS_KAFKA_PORT  Kafka's first port (default 9492; it takes 50)
#   TOR_PEERS_HTTP_PORT   Debezium Server's HTTP port (default 9550)
#   TOR_PEERS_DOCS        where peers.md and peers.png go (default <repo>/docs)
#   TOR_KAFKA_JVM_OPTS    the Kafka JVM's options (default: make bench's)
#   TOR_BIN               tor binary (default <repo>/bin/tor)
set -u
cd "$(dirname "$0")/../../.."
root=$PWD
here=$root/tests/bench/peers
out=$root/build/peers
mkdir -p "$out"

export TOR_RUN_DIR=${TOR_PEERS_RUN_DIR:-$root/run/peers}
export TOR_MYSQL_PORT=${TOR_PEERS_MYSQL_PORT:-3357}
export TOR_REDIS_PORT=${TOR_PEERS_REDIS_PORT:-6417}
export TOR_KAFKA_PORT=${TOR_PEERS_KAFKA_PORT:-9492}
export TOR_PEERS_HTTP_PORT=${TOR_PEERS_HTTP_PORT:-9550}
export TOR_KAFKA=kafka TOR_KAFKA_NODES=1 TOR_BROKER_TOPICS=""
export TOR_KAFKA_JVM_OPTS=${TOR_KAFKA_JVM_OPTS:--Xms1g -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35}
export TOR_BIN=${TOR_BIN:-$root/bin/tor}
export TOR_PEERS_OUT=$out
unset TOR_MYSQL_EXTRA
docs=${TOR_PEERS_DOCS:-$root/docs}
stack=$root/deploy/local/stack.sh
t_begin=$(date +%s)

[ -x "$TOR_BIN" ] || { echo "bench-peers: no $TOR_BIN (make all)" >&2; exit 1; }

# -- Debezium Server ---------------------------------------------------------
dbz=$out/debezium-server
export TOR_PEERS_DEBEZIUM=$dbz
if [ ! -f "$dbz/.unpacked" ]; then
	rm -rf "$dbz"
	echo "bench-peers: fetching Debezium Server (Maven Central, about 800 MB once)"
	if mvn -B -f "$here/pom.xml" dependency:unpack -DoutputDirectory="$out" \
	    >"$out/mvn.log" 2>&1 && [ -x "$dbz/run.sh" ]; then
		touch "$dbz/.unpacked"
		rm -rf "$here/target"  # the plugin's markers, nothing we need
	else
		tail -n 20 "$out/mvn.log" | sed 's/^/    /'
		export TOR_PEERS_DEBEZIUM_WHY="its distribution could not be fetched from Maven Central (build/peers/mvn.log)"
	fi
fi

# The newest JDK 21+ under /usr/lib/jvm (Debian 12 packages only 17).
java_major() {
	"$1/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1
}
if [ -z "${TOR_PEERS_JAVA_HOME:-}" ]; then
	best=0
	for j in /usr/lib/jvm/*; do
		[ -x "$j/bin/java" ] || continue
		v=$(java_major "$j")
		if [ -n "$v" ] && [ "$v" -ge 21 ] && [ "$v" -gt "$best" ]; then
			best=$v TOR_PEERS_JAVA_HOME=$j
		fi
	done
fi
if [ -n "${TOR_PEERS_JAVA_HOME:-}" ]; then
	export TOR_PEERS_JAVA_HOME
	echo "bench-peers: Debezium Server on $TOR_PEERS_JAVA_HOME"
else
	export TOR_PEERS_DEBEZIUM_WHY="no JDK 21 or newer on this machine (its classes need Java 21; Debian 12 packages only 17)"
fi

# -- the Go tor ---------------------------------------------------------------
gotor_mod=github.com/lorenzoranucci/tor/example/tor
gotor_why=$out/go-tor.why
export TOR_PEERS_GO_TOR_WHY=$gotor_why
if [ ! -x "$out/go-tor/bin/tor" ] && { [ ! -f "$gotor_why" ] || [ "${TOR_PEERS_GO_TOR_RETRY:-0}" = 1 ]; }; then
	if ! command -v go >/dev/null; then
		echo "no Go toolchain on this machine" >"$gotor_why"
	elif GOBIN=$out/go-tor/bin go install "$gotor_mod@latest" >"$out/go-tor.log" 2>&1; then
		rm -f "$gotor_why"
	else
		{
			printf 'the Go module proxy refused it: go install %s@latest: ' "$gotor_mod"
			grep -m 1 -o '[0-9][0-9][0-9] [A-Z][A-Za-z ]*' "$out/go-tor.log" | head -n 1 | tr -d '\n'
			printf ' ("%s")\n' "$(grep -m 1 'server response' "$out/go-tor.log" | sed 's/.*server response: *//')"
		} >"$gotor_why"
	fi
fi
if [ -x "$out/go-tor/bin/tor" ]; then
	echo "the Go tor was built ($out/go-tor/bin/tor), but this bench has no runner for it yet: the module proxy refused it whenever the bench was run (403, \"This module version is not available.\"), so its settings were never tried here" >"$gotor_why"
fi
echo "bench-peers: the Go tor: $(cat "$gotor_why")"

# -- the stack ----------------------------------------------------------------
cleanup() {
	"$stack" stop >/dev/null 2>&1 || "$stack" stop
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench-peers: stack in $TOR_RUN_DIR (mysql $TOR_MYSQL_PORT, redis $TOR_REDIS_PORT, kafka $TOR_KAFKA_PORT)"
"$stack" stop kafka >/dev/null 2>&1
rm -rf "$TOR_RUN_DIR/kafka" "$TOR_RUN_DIR/peers-work" "$TOR_RUN_DIR/tor-it"
if ! o=$("$stack" start mariadb redis kafka 2>&1); then
	echo "$o" >&2
	echo "bench-peers: stack start failed" >&2
	exit 1
fi

rc=0
/usr/bin/python3 "$here/bench_peers.py" || rc=1
if [ -f "$out/results.json" ]; then
	/usr/bin/python3 "$here/report.py" "$out/results.json" "$docs" \
	    "$(( $(date +%s) - t_begin ))" || rc=1
fi
echo "bench-peers: took $(( $(date +%s) - t_begin )) s in all"
exit $rc

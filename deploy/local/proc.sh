# Process helpers shared by stack.sh and up.sh (sourced, not run).  The
# caller defines say, die and STOP_TIMEOUT.

# Prints the pid in a pid file if that process is alive and its command line
# contains the expected text (a recycled pid is not ours).
live_pid() {
	local file=$1 name=$2 pid
	[ -s "$file" ] || return 1
	pid=$(tr -dc '0-9' <"$file")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$name" || return 1
	echo "$pid"
}

# TERM, wait up to STOP_TIMEOUT seconds, then KILL and wait until it is gone.
stop_pid() {
	local pid=$1 what=$2 i
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	say "$what (pid $pid) ignored TERM for ${STOP_TIMEOUT}s: KILL"
	kill -KILL "$pid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	die "$what (pid $pid) survived KILL"
}

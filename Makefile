# tor — build, test and run.  `make` builds bin/tor; `make test` runs every
# test against a local stack it starts and stops itself; `make deps` installs
# the Debian packages the project needs.

CC      ?= cc
PKGS    := libmariadb rdkafka hiredis openssl libsodium libconfig libmicrohttpd zlib libisal libzstd
WARN    := -Wall -Wextra -Werror
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE $(WARN) -Iinclude \
	$(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
REL_CFLAGS  := $(CFLAGS_BASE) -O2 -g
SAN         := -fsanitize=address,undefined -fno-sanitize-recover=undefined
# The sanitized build is the test build: it alone has the test hooks (the
# TOR_TEST_* variables; bin/tor ignores them and says so) and stays dumpable
# for LeakSanitizer and gdb (src/main.c).
ASAN_CFLAGS := $(CFLAGS_BASE) -O1 -g -fno-omit-frame-pointer $(SAN) \
	-DTOR_TEST_HOOKS

# Debian packages: build, run the local stack, and test.
DEB_PKGS := build-essential pkg-config clang libclang-rt-14-dev \
	libmariadb-dev librdkafka-dev libhiredis-dev libssl-dev libsodium-dev libconfig-dev \
	libmicrohttpd-dev zlib1g-dev libisal-dev libzstd-dev libcmocka-dev libjemalloc-dev \
	mariadb-server mariadb-client redis-server redis-sentinel kcat \
	python3 python3-confluent-kafka python3-pymysql python3-redis \
	python3-prometheus-client procps python3-yaml systemd prometheus

SRC      := $(wildcard src/*.c ha/*.c)
LIB_SRC  := $(filter-out src/main.c,$(SRC))
HDRS     := $(wildcard include/tor/*.h)
REL_OBJ  := $(SRC:%.c=build/rel/%.o)
ASAN_OBJ := $(SRC:%.c=build/asan/%.o)
ASAN_LIB_OBJ := $(LIB_SRC:%.c=build/asan/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=build/asan/tests/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)

.PHONY: all deps test unit integration bench chaos clean check-asan fuzz-build fuzz
.PHONY: up down watch soak deb-deps kafka-deps bench-peers

all: bin/tor bin/tor-devbroker bin/tor-example

# prometheus is here for promtool (tests/integration/test_monitoring.py).
# Its package would start a Prometheus server and enable it at boot; it is
# installed apart, with a policy-rc.d that forbids starting services (unless
# the machine has one already), and its service is disabled afterwards.
deps: deb-deps kafka-deps

deb-deps:
	@missing=$$(for p in $(DEB_PKGS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq || exit 1; \
		others=$$(echo "$$missing" | grep -vx prometheus); \
		if [ -n "$$others" ]; then \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				--no-install-recommends $$others >/dev/null || exit 1; \
		fi; \
		if echo "$$missing" | grep -qx prometheus; then \
			policy=/usr/sbin/policy-rc.d; ours=; \
			if [ ! -e $$policy ]; then \
				trap 'rm -f '$$policy EXIT; ours=1; \
				printf '#!/bin/sh\nexit 101\n' >$$policy; chmod 755 $$policy; \
			fi; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				--no-install-recommends prometheus >/dev/null || exit 1; \
			[ -z "$$ours" ] || { rm -f $$policy; trap - EXIT; }; \
			if [ -d /run/systemd/system ]; then \
				systemctl disable --now prometheus.service >/dev/null 2>&1 || true; \
			fi; \
		fi; \
	fi

# Apache Kafka's jars (deploy/kafka/pom.xml) for deploy/local/stack.sh:
# resolved from Maven Central once (into ~/.m2, then copied here), offline
# afterwards.  A JDK and Maven from Debian where the machine has none.
KAFKA_LIB := build/kafka/lib
kafka-deps: $(KAFKA_LIB)/.resolved

$(KAFKA_LIB)/.resolved: deploy/kafka/pom.xml
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install \
			-y -qq --no-install-recommends openjdk-17-jdk-headless maven \
			>/dev/null; } || exit 1
	@rm -rf $(KAFKA_LIB) && mkdir -p $(KAFKA_LIB)
	@mvn -B -f deploy/kafka/pom.xml dependency:copy-dependencies \
		-DoutputDirectory=$(CURDIR)/$(KAFKA_LIB) -DincludeScope=runtime \
		>build/kafka/mvn.log 2>&1 || { tail -n 30 build/kafka/mvn.log; exit 1; }
	@echo "kafka: $$(ls $(KAFKA_LIB) | grep -c 'jar$$') jars in $(KAFKA_LIB) ($$(ls $(KAFKA_LIB) | sed -n 's/^kafka_2.13-\(.*\)\.jar$$/Apache Kafka \1/p'))"
	@touch $@

# The release binary allocates through jemalloc: librdkafka makes and frees
# several small blocks per message (its copy, each header), and glibc's
# allocator spent a third of tor's CPU on them (make bench shows the
# difference).  Sanitized builds keep the system allocator ASan wraps.
bin/tor: $(REL_OBJ)
	@mkdir -p bin
	$(CC) $(REL_CFLAGS) -o $@ $^ $(LIBS) -ljemalloc

build/asan/tor: $(ASAN_OBJ)
	$(CC) $(ASAN_CFLAGS) -o $@ $^ $(LIBS)

bin/tor-devbroker: deploy/local/devbroker.c
	@mkdir -p bin
	$(CC) $(REL_CFLAGS) -o $@ $< $(shell pkg-config --cflags --libs rdkafka) -lpthread

# The example service (deploy/example/): orders written with their outbox
# events, for the local demo (make up).
EXAMPLE_SRC := $(wildcard deploy/example/*.c)
bin/tor-example: $(EXAMPLE_SRC) $(wildcard deploy/example/*.h)
	@mkdir -p bin
	$(CC) $(REL_CFLAGS) -o $@ $(EXAMPLE_SRC) \
		$(shell pkg-config --cflags --libs libmicrohttpd libmariadb) -lpthread

build/rel/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(REL_CFLAGS) -c -o $@ $<

build/asan/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -c -o $@ $<

build/asan/tests/%: tests/unit/%.c $(ASAN_LIB_OBJ) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -o $@ $< $(ASAN_LIB_OBJ) $(LIBS) -lcmocka

# libFuzzer targets over the parts that do no I/O: the decoders, the config
# loader, the reader with the outbox mapping, MySQL's compressed payloads,
# `tor decode`'s file reader, the pool's member line.  A target's own sources are
# extra prerequisites (every .c prerequisite is compiled in), its own
# libraries FUZZ_LIBS.  ha/checkpoint.c holds the position parser and drags
# lease.c and redis.c (hiredis) in; nothing there is called.
FUZZ_LIB_SRC := src/binlog_decode.c src/binlog_json.c src/buf.c src/err.c \
	src/gtid_set.c
FUZZ_POS_SRC := src/log.c ha/checkpoint.c ha/lease.c ha/redis.c ha/link.c
build/fuzz/fuzz_config: src/config.c $(FUZZ_POS_SRC)
build/fuzz/fuzz_config: FUZZ_LIBS := -lconfig -lsodium -lhiredis -lssl -lcrypto
build/fuzz/fuzz_outbox: src/reader.c src/outbox.c src/binlog_payload.c \
	$(FUZZ_POS_SRC)
build/fuzz/fuzz_outbox: FUZZ_LIBS := -lsodium -lhiredis -lssl -lcrypto -lzstd
build/fuzz/fuzz_decode: src/decode.c src/reader.c src/outbox.c \
	src/binlog_payload.c $(FUZZ_POS_SRC)
build/fuzz/fuzz_decode: FUZZ_LIBS := -lsodium -lhiredis -lssl -lcrypto -lzstd
build/fuzz/fuzz_payload: src/binlog_payload.c
build/fuzz/fuzz_payload: FUZZ_LIBS := -lzstd
build/fuzz/fuzz_member: ha/members.c src/log.c ha/redis.c ha/link.c
build/fuzz/fuzz_member: FUZZ_LIBS := -lhiredis -lssl -lcrypto
build/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB_SRC) $(HDRS)
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE $(WARN) -g -O1 -Iinclude -fsanitize=fuzzer $(SAN) \
		-o $@ $(filter %.c,$^) -lz -lisal -lm $(FUZZ_LIBS)

fuzz-build: $(FUZZ_BIN)

# Each fuzz target for FUZZ_SECONDS on its seeds (tests/fuzz/corpus/) and
# what it found before (run/fuzz/); prints each one's execution count.
# Crashes are kept as run/fuzz/artifacts/<target>-crash-*.
FUZZ_SECONDS ?= 60
fuzz: fuzz-build
	@mkdir -p run/fuzz/artifacts; \
	for bin in $(FUZZ_BIN); do \
		t=$$(basename $$bin); mkdir -p run/fuzz/$$t; \
		$$bin -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			-artifact_prefix=run/fuzz/artifacts/$$t- \
			run/fuzz/$$t tests/fuzz/corpus/$$t </dev/null \
			>run/fuzz/$$t.log 2>&1; rc=$$?; \
		echo "fuzz $$t: exit $$rc, $$(sed -n \
			's/^stat::number_of_executed_units: *//p' run/fuzz/$$t.log) \
			executions in $$(sed -n 's/^Done .* in \([0-9]*\) second.*/\1/p' \
			run/fuzz/$$t.log) s (run/fuzz/$$t.log)"; \
		[ $$rc -eq 0 ] || { tail -n 30 run/fuzz/$$t.log; exit 1; }; \
	done

check-asan: build/asan/tor $(UNIT_BIN)

test: deps
	@$(MAKE) --no-print-directory all check-asan fuzz-build
	@tests/run.sh

unit: all check-asan
	@tests/run.sh unit

integration: all check-asan
	@tests/run.sh integration

# The benchmarks on a stack of their own (tests/bench/run.sh): the relay on
# Apache Kafka (one node, a benchmark's JVM) and on the dev broker beside it
# for comparison (TOR_BENCH_KAFKA), failover, de-duplication and a pool of
# groups on Kafka (TOR_BENCH_ONLY=pool: that one alone).
bench: deps
	@$(MAKE) --no-print-directory all
	@tests/bench/run.sh

# tor beside its peers, Debezium Server and the Go tor, each in turn on a
# stack of its own (tests/bench/peers/run.sh): a backlog's throughput, CPU
# and memory, latency, kill -9, SIGTERM and an emptied position store;
# writes docs/peers.md and docs/peers.png.  The peers are fetched once into
# build/peers (Maven Central, the Go module proxy); the chart's matplotlib
# comes from Debian here, not in make deps.  About 45 minutes on two
# busy cores; not part of make test.
bench-peers: deps
	@$(MAKE) --no-print-directory all
	@dpkg-query -W -f='$${Status}\n' python3-matplotlib 2>/dev/null | \
		grep -q '^install ok installed' || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends python3-matplotlib >/dev/null; } || exit 1
	@tests/bench/peers/run.sh

# A 30-minute soak at 2,000 events/s with a failover a minute (SIGTERM and
# kill -9 of the leader in turn) on a stack of its own (Apache Kafka, one
# node): RSS and fds of every
# replica every 10 s, reported as slopes per hour, and no event lost.
# TOR_SOAK_SECONDS and TOR_SOAK_RATE make it shorter or lighter.
soak: deps
	@$(MAKE) --no-print-directory all
	@tests/soak/run

# The integration tests `make test` leaves out for their time
# (harness.long_test: more partitions, Sentinel split brain with the
# setting off, the whole Kafka cluster down), then ten minutes of faults
# against three replicas and three Kafka nodes (tests/chaos/README.md):
# five in each mode.  CHAOS_SEED picks the schedule.
CHAOS_SEED ?= 7
chaos: deps
	@$(MAKE) --no-print-directory all check-asan
	@TOR_IT_LONG=only tests/run.sh integration
	@tests/chaos/run --duration 300 --mode idempotent --seed $(CHAOS_SEED) \
		--partitions 16 && \
	tests/chaos/run --duration 300 --mode transactional \
		--seed $(CHAOS_SEED) --partitions 16

# The local demo: the stack (Apache Kafka, one node), the example service
# and three tor replicas (deploy/local/up.sh; TOR_RUN_DIR, TOR_MYSQL_PORT,
# TOR_REDIS_PORT, TOR_KAFKA_PORT and TOR_EXAMPLE_PORT move it).
up: deps
	@$(MAKE) --no-print-directory all
	@deploy/local/up.sh up

down:
	@deploy/local/up.sh down

watch:
	@deploy/local/up.sh watch

clean:
	rm -rf build bin run

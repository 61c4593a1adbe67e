"""The HTTP endpoint (DESIGN.md §7) against the real local stack: /healthz,
/readyz and /metrics of a leader and of a follower, the metrics parsed as
Prometheus does (prometheus_client's parser), readiness lost with Redis while
health stays, every series but the process's labelled with the group, 404 for
anything else, and a port already taken refusing to start.
"""

import os
import socket
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

import harness
from harness import Tor
from test_relay import insert_range, make_outbox, read_events

# Every series /metrics must show, by sample name.
NAMES = [
    "tor_leader", "tor_lease_epoch", "tor_state", "tor_events_read_total",
    "tor_events_published_total", "tor_events_skipped_total",
    "tor_binlog_lag_seconds", "tor_checkpoint_age_seconds",
    "tor_publish_latency_seconds_bucket", "tor_publish_latency_seconds_sum",
    "tor_publish_latency_seconds_count", "tor_kafka_queue_messages",
    "tor_failovers_total", "tor_reconnects_total", "tor_build_info",
    "tor_kafka_errors_total", "process_start_time_seconds",
    "tor_leader_yields_total", "tor_group_halted",
]

# The process's own series: the only ones without a group label.
PROCESS_SERIES = {"tor_build_info", "process_start_time_seconds"}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(port, path, timeout=5):
    """(status, body, content type) of GET http://127.0.0.1:port/path;
    status None when nothing answers."""
    url = "http://127.0.0.1:%d%s" % (port, path)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(), r.headers["Content-Type"]
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers["Content-Type"]
    except (urllib.error.URLError, ConnectionError) as e:
        return None, str(e), None       # not listening yet


def samples(port):
    """{(name, frozenset(labels)): value} of one scrape."""
    status, body, ctype = get(port, "/metrics")
    assert status == 200, (status, body)
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    out = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(smp, name, **labels):
    """The one sample name{labels...} (other labels, group among them,
    ignored)."""
    return harness.metric_value(smp, name, **labels)


def published(smp):
    return sum(v for (n, _), v in smp.items()
               if n == "tor_events_published_total")


def wait_until(what, pred, timeout=20, tor=None):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s%s" % (
                what, "\n" + tor.log_tail() if tor else ""))
        time.sleep(0.2)


def wait_unready(port, what, timeout, tor):
    """(status, body, content type) of the first /readyz that says 503."""
    return wait_until(what, lambda: (lambda g: g if g[0] == 503 else None)(
        get(port, "/readyz")), timeout=timeout, tor=tor)


def replica(stack, overrides, port, name, group):
    cfg = dict(overrides, group=group,
               http={"listen": "127.0.0.1:%d" % port})
    return Tor(stack, cfg, name=name)


def test_leader_follower_and_redis_down(stack):
    name = "http_main"
    table, overrides = make_outbox(stack, name)
    p1, p2 = free_port(), free_port()
    group = harness.unique_group()
    r1 = replica(stack, overrides, p1, "r1", group).start()

    # A leader is ready once it streams from MySQL.
    wait_until("r1 leading and ready", lambda: get(p1, "/metrics")[0] == 200
               and value(samples(p1), "tor_leader") == 1
               and get(p1, "/readyz")[0] == 200, tor=r1)
    assert get(p1, "/healthz")[:2] == (200, "ok\n")
    smp = samples(p1)
    names = {n for n, _ in smp}
    missing = [n for n in NAMES if n not in names]
    assert not missing, "missing from /metrics: %s" % missing
    # A single-group replica labels every series of the group with it.
    unlabelled = sorted((n, dict(ls)) for n, ls in smp
                        if dict(ls).get("group") != group
                        and n not in PROCESS_SERIES)
    assert not unlabelled, unlabelled
    assert all("group" not in dict(ls) for n, ls in smp
               if n in PROCESS_SERIES), smp
    assert value(smp, "tor_group_halted") == 0
    assert value(smp, "tor_leader") == 1
    assert value(smp, "tor_state", state="leader") == 1
    for st in ("follower", "candidate", "stepping_down"):
        assert value(smp, "tor_state", state=st) == 0, st
    assert value(smp, "tor_lease_epoch") >= 1
    assert abs(value(smp, "process_start_time_seconds") - time.time()) < 60
    assert value(smp, "tor_kafka_errors_total") == 0
    assert value(smp, "tor_publish_latency_seconds_bucket", le="+Inf") == \
        value(smp, "tor_publish_latency_seconds_count")
    read_before = value(smp, "tor_events_read_total")

    insert_range(stack, table, 0, 100, 10)
    by_n, _ = read_events(stack, name, 100)
    assert len(by_n) == 100, len(by_n)
    smp = wait_until("100 published", lambda: (
        lambda s: s if published(s) == 100 else None)(samples(p1)), tor=r1)
    assert value(smp, "tor_events_published_total",
                 topic=name + ".order") == 67
    assert value(smp, "tor_events_published_total",
                 topic=name + ".invoice") == 33
    assert value(smp, "tor_events_read_total") > read_before
    # Every message acknowledged lands in the histogram.
    smp = wait_until("100 acknowledged", lambda: (
        lambda s: s if value(s, "tor_publish_latency_seconds_count") >= 100
        else None)(samples(p1)), tor=r1)
    assert value(smp, "tor_checkpoint_age_seconds") < 10
    assert value(smp, "tor_build_info", version="0.1.0") == 1

    assert get(p1, "/nope")[0] == 404
    assert get(p1, "/metricsx")[0] == 404

    # A follower: not leading, ready while it reaches Redis.
    r2 = replica(stack, overrides, p2, "r2", group).start()
    wait_until("r2 ready", lambda: get(p2, "/readyz")[0] == 200, tor=r2)
    smp = samples(p2)
    assert value(smp, "tor_leader") == 0
    assert value(smp, "tor_state", state="leader") == 0
    assert value(smp, "tor_events_read_total") == 0
    assert get(p2, "/healthz")[:2] == (200, "ok\n")

    # Without Redis the follower is alive but not ready (the runner brings
    # Redis back after the test).
    stack.stop("redis")
    t0 = time.monotonic()
    status, body, _ = wait_unready(p2, "r2 unready", 10, r2)
    print("  r2 /readyz 503 %.1fs after Redis stopped: %s" % (
        time.monotonic() - t0, body.strip()))
    assert body.startswith("group %s: redis" % group), body
    for _ in range(3):
        assert get(p2, "/healthz")[0] == 200
        time.sleep(0.5)


def test_port_in_use_exits_1(stack):
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    port = held.getsockname()[1]
    try:
        t = Tor(stack, {"http": {"listen": "127.0.0.1:%d" % port}},
                name="r1").start()
        rc = t.wait(timeout=30)
        assert rc == 1, (rc, t.log_tail())
        log = t.log_text()
        assert ("http.listen 127.0.0.1:%d: Address already in use" % port
                in log), log
        assert "leading" not in log, log
    finally:
        held.close()


def test_leader_unready_while_no_broker_is_reachable(stack):
    """A leader whose producer reaches no Kafka broker for longer than
    kafka.unreachable_ms answers /readyz 503 saying so, and is ready again
    once a broker is back; it stays alive (/healthz 200) meanwhile, and
    tor_kafka_errors_total counts the producer's errors; rows written
    meanwhile are published once the brokers are back."""
    name = "http_kafka"
    table, overrides = make_outbox(stack, name)
    overrides["kafka"] = {"brokers": stack.brokers, "topics": [],
                          "unreachable_ms": 2000}
    port = free_port()
    tor = replica(stack, overrides, port, "r1",
                  harness.unique_group("http-kafka")).start()
    wait_until("leader ready", lambda: get(port, "/readyz")[0] == 200,
               tor=tor)
    t0 = time.monotonic()
    stack.kafka_ctl("kill", 1)
    status, body, _ = wait_unready(port, "unready", 15, tor)
    print("  /readyz 503 %.1f s after every broker went down: %s" % (
        time.monotonic() - t0, body.strip()))
    assert "no Kafka broker reachable" in body, body
    assert time.monotonic() - t0 >= 2.0
    assert get(port, "/healthz")[0] == 200
    errors = value(samples(port), "tor_kafka_errors_total")
    assert errors >= 1, errors
    insert_range(stack, table, 0, 10, 10)
    stack.kafka_ctl("start", 1)
    t1 = time.monotonic()
    wait_until("ready again", lambda: get(port, "/readyz")[0] == 200,
               timeout=20, tor=tor)
    print("  ready again %.1f s after the broker came back" % (
        time.monotonic() - t1))
    by_n, _ = read_events(stack, name, 10)
    assert sorted(by_n) == list(range(10)), sorted(by_n)
    print("  %d producer errors counted" % value(
        samples(port), "tor_kafka_errors_total"))
    assert tor.stop() == 0, tor.log_tail()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_follower_serves_its_producer_while_it_waits(stack):
    """A follower's producer (made before the lease is won) is served while
    the replica waits: its librdkafka events, the statistics behind
    /readyz's Kafka check above all, do not pile up unread.  With
    statistics every 10 ms, a follower waiting 10 s would hold about a
    thousand of them; its RSS must not grow by megabytes."""
    name = "http_follower"
    table, overrides = make_outbox(stack, name)
    overrides["kafka"] = {"brokers": stack.brokers, "topics": [],
                          "properties": ["statistics.interval.ms=10"]}
    group = harness.unique_group("http-follower")
    p1, p2 = free_port(), free_port()
    r1 = replica(stack, overrides, p1, "r1", group).start()
    wait_until("r1 ready", lambda: get(p1, "/readyz")[0] == 200, tor=r1)
    # The release build: ASan's quarantine of freed memory would grow the
    # RSS of any busy process.
    cfg = dict(overrides, group=group, http={"listen": "127.0.0.1:%d" % p2})
    r2 = Tor(stack, cfg, name="r2",
             binary=os.path.join(harness.REPO, "bin", "tor")).start()
    wait_until("r2 ready", lambda: get(p2, "/readyz")[0] == 200, tor=r2)
    time.sleep(2)
    before = rss_kib(r2.pid)
    time.sleep(10)
    after = rss_kib(r2.pid)
    print("  follower RSS %d KiB -> %d KiB over 10 s" % (before, after))
    assert after - before < 4096, (before, after)
    assert r2.stop() == 0 and r1.stop() == 0

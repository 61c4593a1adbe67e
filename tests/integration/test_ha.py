"""High availability end to end: several replicas of one group compete for
the Redis lease; only the leader streams and publishes, under its fencing
token (header tor.epoch); the checkpoint in Redis lets a successor resume
(DESIGN.md §3).

Every test runs three or two replicas with the same config text (instance
names r1, r2, r3 come from $HOSTNAME) and short HA timings, its own outbox
table and topics, and judges real outcomes: the messages read back from
Kafka, the keys in Redis, the exit codes, and the log lines' timestamps for
the failover times.  They run on one Kafka node and claim the lease, the
token check of the checkpoint and the local deadline; Kafka's fencing of a
live zombie, the broker's de-duplication and replication are
test_kafka_claims' and test_kafka_faults' (three nodes).
"""

import collections
import datetime
import json
import re
import signal
import threading
import time

import harness
from harness import Tor, header, read_all, tor_cli
from test_relay import (check_per_key_order, check_record, checkpoint,
                        insert_range, make_outbox)

LEASE_MS = 2000
RENEW_MS = 500
RETRY_MS = 100
HA = {"lease_ms": LEASE_MS, "renew_ms": RENEW_MS, "retry_ms": RETRY_MS}

# ASan builds and a busy CI machine: room on top of what the timings allow.
SLACK_MS = 1500

LEADING = r"leading with token (\d+)"
LOST = (r"lost the leadership|leader -> stepping_down|"
        r"stepping_down -> follower")

LINE_RE = re.compile(r'^ts=(\S+) level=(\w+) component=(\S+) '
                     r'instance="([^"]*)" token=(\d+) msg="(.*)"$')


# ---------------------------------------------------------------------------
# helpers


def ha_config(stack, name):
    """The outbox table shop.ob_<name> and one config text for all the
    replicas of the test."""
    table, ov = make_outbox(stack, name)
    cfg = harness.base_config(stack, ha=dict(HA),
                              checkpoint={"interval_ms": 200}, **ov)
    return table, cfg


def start_replicas(stack, cfg, names):
    return [Tor(stack, cfg, name=n).start() for n in names]


def log_ts(ts):
    """A log line's ts (UTC, ms) as seconds since the epoch."""
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def log_lines(tor, regex, since=0):
    """[(ts seconds, match of regex in msg, component, raw line)] of the
    lines of tor's log (from character offset since) whose msg matches."""
    pat = re.compile(regex)
    out = []
    for line in tor.log_text()[since:].splitlines():
        m = LINE_RE.match(line)
        if not m:
            continue
        mm = pat.search(m.group(6))
        if mm:
            out.append((log_ts(m.group(1)), mm, m.group(3), line))
    return out


def wait_leading(tors, since=None, timeout=10):
    """Waits until one of tors logs "leading with token N" (after its
    offset in since, a dict tor -> offset); returns (tor, token, ts)."""
    since = since or {}
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for t in tors:
            for ts, m, _, _ in log_lines(t, LEADING, since.get(t, 0)):
                found.append((ts, t, int(m.group(1))))
        if found:
            ts, t, tok = min(found, key=lambda x: x[0])
            return t, tok, ts
        if time.monotonic() > deadline:
            raise AssertionError(
                "no replica logged /%s/ within %ss; logs:\n%s" % (
                    LEADING, timeout, "\n".join(
                        "--- %s\n%s" % (t.name, t.log_tail(15))
                        for t in tors)))
        time.sleep(0.05)


def lease_key(group):
    return "tor:{%s}:lease" % group


def lease(stack, group):
    """(instance, token) from tor:{G}:lease, or None."""
    v = stack.redis().get(lease_key(group))
    if v is None:
        return None
    inst, tok = v.decode().rsplit(" ", 1)
    return inst, int(tok)


def gtid_seq(gtid_text):
    """The sequence number of a MariaDB GTID "D-S-N" (first of a list)."""
    return int(gtid_text.split(",")[0].split("-")[2])


def pos_seq(record):
    """The GTID sequence number of a record's tor.pos ("D-S-N:row")."""
    return gtid_seq(header(record, "tor.pos").decode().split(":")[0])


def epoch_of(record):
    return int(header(record, "tor.epoch"))


def n_of(record):
    return json.loads(record.value)["n"]


def read_everything(stack, name):
    return (read_all(stack.brokers, name + ".order", timeout=10) +
            read_all(stack.brokers, name + ".invoice", timeout=10))


def read_until(stack, name, done, timeout=60, group=None):
    """Reads both topics until done(by_n) holds or timeout; returns
    (by_n, records).  With group, only that group's messages (the topics
    of an earlier run of the same test hold another group's)."""
    deadline = time.monotonic() + timeout
    while True:
        recs = [r for r in read_everything(stack, name)
                if group is None or
                header(r, "tor.group").decode() == group]
        by_n = collections.defaultdict(list)
        for r in recs:
            by_n[n_of(r)].append(r)
        if done(by_n) or time.monotonic() > deadline:
            return by_n, recs
        time.sleep(0.3)


def read_all_events(stack, name, total, timeout=60, group=None):
    return read_until(stack, name,
                      lambda b: all(n in b for n in range(total)), timeout,
                      group)


def assert_none_lost(by_n, total):
    missing = [n for n in range(total) if n not in by_n]
    assert not missing, "lost %d of %d events, first %s" % (
        len(missing), total, missing[:10])


def first_appearances(recs):
    first = {}
    for r in sorted(recs, key=lambda r: (r.topic, r.partition, r.offset)):
        first.setdefault(n_of(r), r)
    return list(first.values())


def check_tokens_grow(recs):
    """Within a partition, a later message never carries a lower token."""
    last = {}
    for r in sorted(recs, key=lambda r: (r.topic, r.partition, r.offset)):
        k = (r.topic, r.partition)
        e = epoch_of(r)
        assert e >= last.get(k, (0, None))[0], \
            "%s[%d]@%d (event %d) has token %d after token %d (event %d)" % (
                r.topic, r.partition, r.offset, n_of(r), e, last[k][0],
                last[k][1])
        last[k] = (e, n_of(r))


class Feeder(threading.Thread):
    """Inserts events start.. in transactions of per_txn rows, up to count
    (None: until stop()), pausing between transactions.  .inserted is the
    number of events committed, .marks records (time, next n)."""

    def __init__(self, stack, table, start, count, per_txn, pause):
        super().__init__(daemon=True)
        self.stack, self.table = stack, table
        self.start_n, self.count = start, count
        self.per_txn, self.pause = per_txn, pause
        self.n = start
        self.error = None
        self._halt = threading.Event()

    def run(self):
        try:
            while not self._halt.is_set():
                k = self.per_txn
                if self.count is not None:
                    k = min(k, self.start_n + self.count - self.n)
                    if k <= 0:
                        break
                insert_range(self.stack, self.table, self.n, k, k)
                self.n += k
                time.sleep(self.pause)
        except BaseException as e:  # reported by finish()
            self.error = e

    def stop(self):
        self._halt.set()

    def finish(self, timeout=120):
        """Waits for the feeder; returns the next n (events start..n-1 are
        in the database)."""
        self.join(timeout)
        assert not self.is_alive(), "feeder still running"
        if self.error is not None:
            raise self.error
        return self.n


class CheckpointSampler(threading.Thread):
    """Reads tor:{G}:checkpoint every 50 ms; .samples is [(time, epoch)].
    Redis errors (Redis stopped on purpose) are skipped."""

    def __init__(self, stack, group, interval=0.05):
        super().__init__(daemon=True)
        self.stack, self.group, self.interval = stack, group, interval
        self.samples = []
        self._halt = threading.Event()

    def run(self):
        r = None
        while not self._halt.is_set():
            try:
                if r is None:
                    r = self.stack.redis()
                e = r.hget("tor:{%s}:checkpoint" % self.group, "epoch")
                if e is not None:
                    self.samples.append((time.time(), int(e)))
            except Exception:
                r = None
            self._halt.wait(self.interval)

    def finish(self):
        self._halt.set()
        self.join(5)
        return self.samples


def assert_never_decreased(samples, until=None):
    prev = None
    for t, e in samples:
        if until is not None and t > until:
            break
        if prev is not None:
            assert e >= prev[1], \
                "checkpoint epoch went down from %d to %d (%.3fs later)" % (
                    prev[1], e, t - prev[0])
        prev = (t, e)


class RedisProbe(threading.Thread):
    """Pings Redis every 20 ms until it fails; .gone is the time of the
    first failed ping (Redis was gone by then)."""

    def __init__(self, stack):
        super().__init__(daemon=True)
        self.stack = stack
        self.gone = None
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            try:
                r = self.stack.redis(socket_connect_timeout=0.2)
                r.ping()
                r.close()
            except Exception:
                self.gone = time.time()
                return
            self._halt.wait(0.02)

    def finish(self):
        self.join(5)
        self._halt.set()
        return self.gone


def stop_all(tors, timeout=30):
    """SIGTERM to every running replica at once; asserts each exits 0."""
    live = [t for t in tors if t.running()]
    for t in live:
        t.send_signal(signal.SIGCONT)
        t.send_signal(signal.SIGTERM)
    for t in live:
        rc = t.wait(timeout)
        assert rc == 0, "%s exited %s on SIGTERM; log tail:\n%s" % (
            t.name, rc, t.log_tail())


def binlog_dumps(stack):
    """Replication connections of user tor on the server now."""
    return stack.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                     "WHERE USER = 'tor' AND COMMAND LIKE 'Binlog Dump%%'"
                     )[0][0]


def leader_now(tors):
    """The replicas whose last leadership line says they lead."""
    out = []
    for t in tors:
        lines = log_lines(t, LEADING + "|" + LOST +
                          "|released the lease")
        if lines and lines[-1][1].group(0).startswith("leading"):
            out.append(t)
    return out


# ---------------------------------------------------------------------------
# tests


def test_one_leader_among_three(stack):
    name = "ha_one"
    table, cfg = ha_config(stack, name)
    group = harness.config_group(cfg)
    t0 = time.time()
    tors = start_replicas(stack, cfg, ["r1", "r2", "r3"])
    leader, token, ts = wait_leading(tors, timeout=5)
    print("  %s leads with token %d, %.2fs after start" % (leader.name, token,
                                                           ts - t0))
    time.sleep(1.5)     # room for a second leader to show itself
    leaders = [t for t in tors if log_lines(t, LEADING)]
    assert leaders == [leader], "replicas that logged leading: %s" % (
        [t.name for t in leaders])
    for t in tors:
        if t is not leader:
            assert "leading" not in t.log_text(), t.log_tail()
    assert lease(stack, group) == (leader.name, token), lease(stack, group)
    pttl = stack.redis().pttl(lease_key(group))
    assert 0 < pttl <= LEASE_MS, pttl
    assert int(stack.redis().get("tor:{%s}:epoch" % group)) == token

    # Only the leader holds a replication connection (a killed replica of an
    # earlier test may take a heartbeat to vanish from the processlist).
    deadline = time.monotonic() + 5
    while binlog_dumps(stack) != 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert binlog_dumps(stack) == 1, stack.sql(
        "SELECT ID, USER, HOST, COMMAND, STATE FROM "
        "information_schema.PROCESSLIST")

    insert_range(stack, table, 0, 300, 30)
    by_n, recs = read_all_events(stack, name, 300)
    time.sleep(0.5)
    by_n, recs = read_all_events(stack, name, 300)
    assert_none_lost(by_n, 300)
    dups = sorted(n for n, rs in by_n.items() if len(rs) > 1)
    assert not dups, "duplicated events %s" % dups[:10]
    assert sorted(by_n) == list(range(300)), sorted(by_n)[300:310]
    for n in range(300):
        check_record(by_n[n][0], n, name)
    check_per_key_order(recs)
    tokens = collections.Counter(epoch_of(r) for r in recs)
    assert tokens == {token: 300}, tokens

    p = tor_cli(["status"], cfg=cfg)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    assert re.search(r"^leader: %s$" % leader.name, p.stdout, re.M), p.stdout
    print("  tor status:\n" + "".join("    " + l + "\n"
                                      for l in p.stdout.splitlines()))
    stop_all(tors)


def test_kill9_leader_three_times(stack):
    name = "ha_kill"
    total = 10000
    table, cfg = ha_config(stack, name)
    group = harness.config_group(cfg)
    tors = start_replicas(stack, cfg, ["r1", "r2", "r3"])
    wait_leading(tors, timeout=10)
    sampler = CheckpointSampler(stack, group)
    sampler.start()
    feeder = Feeder(stack, table, 0, total, 20, 0.02)
    feeder.start()
    kills = []          # (killed name, its token, checkpoint gtid seq)
    failovers = []
    try:
        # A checkpoint must exist before the first kill.
        deadline = time.monotonic() + 30
        while not checkpoint(stack, group).get("gtid"):
            assert time.monotonic() < deadline, "no checkpoint in Redis"
            time.sleep(0.1)
        time.sleep(1.0)
        for round_ in range(3):
            cur = lease(stack, group)
            assert cur is not None, "no lease before kill %d" % (round_ + 1)
            victim = [t for t in tors if t.name == cur[0] and t.running()]
            assert len(victim) == 1, (cur, tors)
            victim = victim[0]
            others = [t for t in tors if t is not victim]
            since = {t: t.log_size() for t in others}
            t_kill = time.time()
            victim.kill9()
            cp = checkpoint(stack, group)
            kills.append((victim.name, cur[1], gtid_seq(cp["gtid"]),
                          int(cp["epoch"])))
            who, tok, ts = wait_leading(others, since, timeout=15)
            took = ts - t_kill
            failovers.append(took)
            print("  kill %d: %s (token %d, checkpoint gtid seq %d) -> %s "
                  "leads with token %d after %.0f ms" % (
                      round_ + 1, victim.name, cur[1], kills[-1][2],
                      who.name, tok, took * 1000))
            assert tok > cur[1], (tok, cur)
            assert took * 1000 <= LEASE_MS + RETRY_MS + SLACK_MS, \
                "failover took %.0f ms (lease_ms %d + retry_ms %d + %d " \
                "slack)" % (took * 1000, LEASE_MS, RETRY_MS, SLACK_MS)
            tors = others + [Tor(stack, cfg, name=victim.name).start()]
            time.sleep(2.0)
        end = feeder.finish()
        assert end == total, end
        by_n, recs = read_all_events(stack, name, total, timeout=60)
    finally:
        feeder.stop()
        samples = sampler.finish()
    print("  failover times (ms): %s" % ", ".join(
        "%.0f" % (f * 1000) for f in failovers))
    assert_none_lost(by_n, total)
    extra = [n for n in by_n if n >= total]
    assert not extra, extra[:10]
    for n in range(total):
        check_record(by_n[n][0], n, name)
    check_per_key_order(first_appearances(recs))
    check_tokens_grow(recs)

    # Each extra copy of an event comes from a kill: the copy published
    # first was the killed leader's, after the checkpoint of that moment.
    killed = {k[1]: k for k in kills}
    ndups = 0
    for n, rs in sorted(by_n.items()):
        if len(rs) < 2:
            continue
        ndups += 1
        toks = sorted(epoch_of(r) for r in rs)
        seq = pos_seq(rs[0])
        for tok in toks[:-1]:
            k = killed.get(tok)
            assert k is not None, \
                "event %d (gtid seq %d) published %d times, tokens %s: " \
                "token %d was not a killed leader's" % (
                    n, seq, len(rs), toks, tok)
            assert seq > k[2], \
                "event %d (gtid seq %d) duplicated, but the checkpoint " \
                "when %s (token %d) was killed was past it (seq %d)" % (
                    n, seq, k[0], tok, k[2])
    print("  %d events published more than once, %d records in all" % (
        ndups, len(recs)))
    assert samples, "no checkpoint samples"
    assert_never_decreased(samples)
    print("  checkpoint epochs seen: %s" % sorted(set(e for _, e in samples)))
    stop_all(tors)


def test_sigstop_zombie(stack):
    name = "ha_zombie"
    table, cfg = ha_config(stack, name)
    group = harness.config_group(cfg)
    tors = start_replicas(stack, cfg, ["r1", "r2"])
    zombie, ztoken, _ = wait_leading(tors, timeout=10)
    successor = [t for t in tors if t is not zombie][0]
    sampler = CheckpointSampler(stack, group)
    sampler.start()
    try:
        insert_range(stack, table, 0, 200, 20)
        by_n, _ = read_all_events(stack, name, 200)
        assert_none_lost(by_n, 200)
        # The zombie's checkpoint covers them before it is paused.
        end = stack.binlog_position()
        deadline = time.monotonic() + 10
        while True:
            cp = checkpoint(stack, group)
            if (cp.get("file"), int(cp.get("pos", 0))) == end:
                break
            assert time.monotonic() < deadline, (cp, end)
            time.sleep(0.1)
        assert int(cp["epoch"]) == ztoken, (cp, ztoken)

        since = {successor: successor.log_size()}
        t_stop = time.time()
        zombie.sigstop()
        feeder = Feeder(stack, table, 200, 200, 10, 0.2)
        feeder.start()
        who, stoken, ts = wait_leading([successor], since,
                                       timeout=LEASE_MS / 1000 + 10)
        print("  %s (token %d) paused; %s leads with token %d after %.0f ms"
              % (zombie.name, ztoken, successor.name, stoken,
                 (ts - t_stop) * 1000))
        assert stoken > ztoken, (stoken, ztoken)
        assert feeder.finish() == 400
        by_n, _ = read_all_events(stack, name, 400)
        assert_none_lost(by_n, 400)
        time.sleep(max(0.0, t_stop + 3 * LEASE_MS / 1000 - time.time()))

        zoff = zombie.log_size()
        t_cont = time.time()
        zombie.sigcont()
        deadline = time.monotonic() + 5
        while not log_lines(zombie, LOST, zoff):
            assert zombie.running(), zombie.log_tail()
            assert time.monotonic() < deadline, \
                "zombie %s logged no step-down within 5 s of SIGCONT; " \
                "tail:\n%s" % (zombie.name, zombie.log_tail())
            time.sleep(0.05)
        lost_ts, _, _, lost_line = log_lines(zombie, LOST, zoff)[0]
        print("  zombie stepped down %.0f ms after SIGCONT: %s" % (
            (lost_ts - t_cont) * 1000, lost_line))
        assert lost_ts - t_cont <= 2.0, \
            "zombie stepped down %.0f ms after SIGCONT: %s" % (
                (lost_ts - t_cont) * 1000, lost_line)

        insert_range(stack, table, 400, 100, 20)
        by_n, recs = read_all_events(stack, name, 500)
        time.sleep(1.0)     # anything the zombie might still send
        by_n, recs = read_all_events(stack, name, 500)
        cp_deadline = time.monotonic() + 10
        end = stack.binlog_position()
        while True:
            cp = checkpoint(stack, group)
            if (cp.get("file"), int(cp.get("pos", 0))) == end:
                break
            assert time.monotonic() < cp_deadline, (cp, end)
            time.sleep(0.1)
        cur = lease(stack, group)
    finally:
        zombie.sigcont()
        samples = sampler.finish()

    assert_none_lost(by_n, 500)
    for n in range(500):
        check_record(by_n[n][0], n, name)
    check_per_key_order(first_appearances(recs))
    check_tokens_grow(recs)
    late = sorted(n_of(r) for r in recs
                  if epoch_of(r) == ztoken and n_of(r) >= 200)
    assert not late, \
        "the zombie (token %d) published %d events inserted after its " \
        "SIGSTOP, first %s" % (ztoken, len(late), late[:10])
    assert int(cp["epoch"]) == stoken, \
        "checkpoint epoch %s, successor's token %d: %s" % (cp["epoch"],
                                                           stoken, cp)
    assert_never_decreased(samples)
    # The zombie stays a follower, or leads again only with a newer token.
    again = [int(m.group(1)) for _, m, _, _ in
             log_lines(zombie, LEADING, zoff)]
    assert all(t > stoken for t in again), (again, stoken)
    if not again:
        assert cur == (successor.name, stoken), cur
    ndup = sum(1 for rs in by_n.values() if len(rs) > 1)
    print("  checkpoint %s; zombie led again with %s; %d duplicated events"
          % (cp, again or "no token", ndup))
    stop_all(tors)


def test_sigterm_handover_no_duplicates(stack):
    name = "ha_term"
    total = 2000
    table, cfg = ha_config(stack, name)
    tors = start_replicas(stack, cfg, ["r1", "r2"])
    leader, ltoken, _ = wait_leading(tors, timeout=10)
    follower = [t for t in tors if t is not leader][0]
    time.sleep(0.5)
    feeder = Feeder(stack, table, 0, total, 20, 0.02)
    feeder.start()
    try:
        read_until(stack, name, lambda b: len(b) >= 300, timeout=30)
        since = {follower: follower.log_size()}
        t_term = time.time()
        leader.send_signal(signal.SIGTERM)
        rc = leader.wait(30)
        assert rc == 0, "leader exited %s; tail:\n%s" % (rc,
                                                         leader.log_tail())
        who, ftoken, lead_ts = wait_leading([follower], since, timeout=10)
        assert feeder.finish() == total
    finally:
        feeder.stop()
    rel = log_lines(leader, r"released the lease")
    assert rel, "leader logged no 'released the lease'; tail:\n%s" % (
        leader.log_tail())
    rel_ts = rel[-1][0]
    print("  SIGTERM -> released %.0f ms, released -> %s leading %.0f ms, "
          "SIGTERM -> leading %.0f ms" % (
              (rel_ts - t_term) * 1000, follower.name,
              (lead_ts - rel_ts) * 1000, (lead_ts - t_term) * 1000))
    assert ftoken > ltoken, (ftoken, ltoken)
    assert lead_ts - rel_ts < 1.0, \
        "release -> leading took %.0f ms" % ((lead_ts - rel_ts) * 1000)
    assert lead_ts - t_term < 1.0, \
        "SIGTERM -> leading took %.0f ms" % ((lead_ts - t_term) * 1000)

    by_n, recs = read_all_events(stack, name, total)
    time.sleep(0.5)
    by_n, recs = read_all_events(stack, name, total)
    assert_none_lost(by_n, total)
    dups = sorted(n for n, rs in by_n.items() if len(rs) > 1)
    assert not dups, "%d events duplicated by a graceful handover, first " \
        "%s (tokens %s)" % (len(dups), dups[:10],
                            [epoch_of(r) for r in by_n[dups[0]]])
    assert sorted(by_n) == list(range(total))
    for n in range(total):
        check_record(by_n[n][0], n, name)
    check_per_key_order(recs)
    check_tokens_grow(recs)
    tokens = collections.Counter(epoch_of(r) for r in recs)
    assert set(tokens) == {ltoken, ftoken}, tokens
    print("  messages per token: %s" % dict(tokens))
    stop_all([follower])


def test_redis_down_leader_stops(stack):
    name = "ha_redis"
    table, cfg = ha_config(stack, name)
    tors = start_replicas(stack, cfg, ["r1", "r2"])
    leader, ltoken, _ = wait_leading(tors, timeout=10)
    follower = [t for t in tors if t is not leader][0]
    feeder = Feeder(stack, table, 0, None, 10, 0.05)
    feeder.start()
    try:
        read_until(stack, name, lambda b: len(b) >= 100, timeout=30)
        since = {t: t.log_size() for t in tors}
        probe = RedisProbe(stack)
        probe.start()
        t0 = time.time()
        stack.stop("redis")
        t1 = time.time()
        t_gone = probe.finish()
        assert t_gone is not None, "Redis still answered after stack.stop"
        deadline = time.monotonic() + LEASE_MS / 1000 + 5
        while not log_lines(leader, LOST, since[leader]):
            assert time.monotonic() < deadline, \
                "leader %s did not step down with Redis gone; tail:\n%s" % (
                    leader.name, leader.log_tail())
            time.sleep(0.05)
        lost_ts, _, _, lost_line = log_lines(leader, LOST, since[leader])[0]
        print("  stack.stop redis took %.0f ms, Redis stopped answering "
              "%.0f ms into it; the leader stepped down %.0f ms after "
              "that: %s" % ((t1 - t0) * 1000, (t_gone - t0) * 1000,
                            (lost_ts - t_gone) * 1000, lost_line))
        # The last renew that Redis answered was sent before t_gone: past
        # t_gone + lease_ms the lease may have expired.
        assert (lost_ts - t_gone) * 1000 <= LEASE_MS + 300, \
            "leader stepped down %.0f ms after Redis stopped answering, " \
            "lease_ms %d: %s" % ((lost_ts - t_gone) * 1000, LEASE_MS,
                                 lost_line)
        assert not log_lines(follower, LEADING, since[follower]), \
            follower.log_tail()

        # Nobody publishes while Redis is away.
        time.sleep(0.5)
        before = harness.count_records(stack.brokers, name + ".order") + \
            harness.count_records(stack.brokers, name + ".invoice")
        time.sleep(max(0.5, t1 + 2 * LEASE_MS / 1000 - time.time()))
        after = harness.count_records(stack.brokers, name + ".order") + \
            harness.count_records(stack.brokers, name + ".invoice")
        inserted = feeder.n
        assert after == before, \
            "%d messages published while Redis was down (and no lease " \
            "held)" % (after - before)

        since = {t: t.log_size() for t in tors}
        t_up = time.time()
        stack.start("redis")
        # Redis came back empty: the epoch starts over, and a leader whose
        # token is not above the one Kafka's copy of the checkpoint carries
        # raises the epoch and stands again.  Tokens never go down.
        deadline = time.monotonic() + 20
        while True:
            found = [(ts, t, int(m.group(1))) for t in tors
                     for ts, m, _, _ in log_lines(t, LEADING, since[t])]
            found = [f for f in found if f[2] > ltoken]
            if found:
                ts, who, tok = max(found, key=lambda f: f[2])
                break
            assert time.monotonic() < deadline, \
                "no leader with a token above %d" % ltoken
            time.sleep(0.05)
        print("  redis back; %s leads with token %d after %.0f ms "
              "(%d events inserted while it was down)" % (
                  who.name, tok, (ts - t_up) * 1000, inserted))
        time.sleep(1.5)
        cur = lease(stack, group_of(cfg))
        assert cur == (who.name, tok), (cur, who.name, tok)
        leading = leader_now(tors)
        assert leading == [who], [t.name for t in leading]
        feeder.stop()
        total = feeder.finish()
    finally:
        feeder.stop()
    by_n, recs = read_all_events(stack, name, total, timeout=60)
    assert_none_lost(by_n, total)
    for n in range(total):
        check_record(by_n[n][0], n, name)
    check_per_key_order(first_appearances(recs))
    print("  %d events, %d records" % (total, len(recs)))
    stop_all(tors)


def group_of(cfg):
    return harness.config_group(cfg)


def test_checkpoint_set_replays(stack):
    name = "ha_cpset"
    table, cfg = ha_config(stack, name)
    group = group_of(cfg)
    tors = start_replicas(stack, cfg, ["r1", "r2", "r3"])
    leader, ltoken, _ = wait_leading(tors, timeout=10)
    insert_range(stack, table, 0, 300, 30)
    by_n, _ = read_all_events(stack, name, 300)
    assert_none_lost(by_n, 300)
    end = stack.binlog_position()
    deadline = time.monotonic() + 10
    while True:
        cp = checkpoint(stack, group)
        if (cp.get("file"), int(cp.get("pos", 0))) == end:
            break
        assert time.monotonic() < deadline, (cp, end)
        time.sleep(0.1)
    P = "%s:%s" % (cp["file"], cp["pos"])

    insert_range(stack, table, 300, 200, 20)
    by_n, recs = read_all_events(stack, name, 500)
    assert_none_lost(by_n, 500)
    dups = [n for n, rs in by_n.items() if len(rs) > 1]
    assert not dups, dups[:10]

    since = {t: t.log_size() for t in tors}
    p = tor_cli(["checkpoint", "set", "--to", P], cfg=cfg)
    print("  tor checkpoint set --to %s: exit %d\n%s%s" % (
        P, p.returncode, p.stdout, p.stderr))
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)

    by_n, recs = read_until(
        stack, name, lambda b: all(len(b.get(n, ())) >= 2
                                   for n in range(300, 500)), timeout=30)
    short = [n for n in range(300, 500) if len(by_n.get(n, ())) < 2]
    assert not short, \
        "%d of the 200 events after %s not published again, first %s; " \
        "logs:\n%s" % (len(short), P, short[:10], "\n".join(
            "--- %s\n%s" % (t.name, t.log_tail(12)) for t in tors))
    again = [n for n in range(300) if len(by_n[n]) != 1]
    assert not again, "events before %s published again: %s" % (P,
                                                                 again[:10])
    who, ntoken, _ = wait_leading(tors, since, timeout=1)
    assert ntoken > ltoken, (ntoken, ltoken)
    replay = [r for r in recs if epoch_of(r) == ntoken]
    assert sorted(n_of(r) for r in replay) == list(range(300, 500)), \
        sorted(n_of(r) for r in replay)[:20]
    check_per_key_order(replay)
    check_tokens_grow(recs)
    assert re.search(r"resuming from the checkpoint at %s\b" % re.escape(P),
                     who.log_text()[since[who]:]), who.log_tail()
    print("  %s replayed from %s with token %d (was %s with %d)" % (
        who.name, P, ntoken, leader.name, ltoken))
    stop_all(tors)

    # The server does not purge a file a dump thread still reads: wait for
    # the replicas' replication connections to go first.
    deadline = time.monotonic() + 10
    while binlog_dumps(stack) and time.monotonic() < deadline:
        time.sleep(0.1)
    purged = cp["file"]
    stack.purge_binlogs(purged)
    p = tor_cli(["checkpoint", "set", "--to", "%s:4" % purged], cfg=cfg)
    print("  tor checkpoint set --to %s:4 (purged): exit %d\n%s%s" % (
        purged, p.returncode, p.stdout, p.stderr))
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert purged in p.stdout + p.stderr, (p.stdout, p.stderr)


def test_same_instance_name_one_leader(stack):
    """Two live replicas that share an instance name (a copy-pasted config,
    a reused pod name): the token in the lease value decides, one leads."""
    name = "ha_twins"
    table, cfg = ha_config(stack, name)
    group = harness.config_group(cfg)
    twins = [Tor(stack, cfg, name="twin").start(),
             Tor(stack, cfg, name="twin").start()]
    leader, token, _ = wait_leading(twins, timeout=5)
    time.sleep(2 * LEASE_MS / 1000.0)   # several renews: a confused twin
    leaders = [t for t in twins if log_lines(t, LEADING)]
    assert leaders == [leader], "both twins led: %s" % [
        t.log_tail(10) for t in twins]
    assert lease(stack, group) == ("twin", token), lease(stack, group)
    insert_range(stack, table, 0, 200, 20)
    by_n, recs = read_all_events(stack, name, 200)
    time.sleep(0.5)
    by_n, recs = read_all_events(stack, name, 200)
    assert_none_lost(by_n, 200)
    assert not [n for n, rs in by_n.items() if len(rs) > 1]
    assert collections.Counter(epoch_of(r) for r in recs) == {token: 200}
    # The leader goes; the other twin takes over under a new token.
    since = {t: t.log_size() for t in twins}
    other = twins[1] if leader is twins[0] else twins[0]
    assert leader.stop() == 0
    new, new_token, _ = wait_leading([other], since=since, timeout=5)
    assert new_token > token
    stop_all(twins)

"""The chaos verifier's core: what Kafka holds against what MySQL committed.

Used by tests/chaos/verify (the command) and tests/chaos/run (after a run).
Nothing here knows the dev broker or the local stack: it takes a bootstrap
list, a MySQL connection and the outbox table, so the same code judges a run
on a real Kafka cluster.

The truth is MySQL: every row of the outbox table in the run's id range must
be on Kafka at least once.  A record is matched to its row by the `tor.id`
header (the event-id column).  Per row the verifier looks at:

  lost        a row with no record
  duplicated  a row with more than one record (every copy after the first)
  reordered   per key, the rows' first appearances (partition offset order)
              not in binlog order, binlog order being the `tor.pos` header
              (`<gtid>:<row>` or `<file>:<pos>:<row>`)
  pos         copies of one row with different tor.pos (a relay naming a row
              wrongly)
  zombie      per partition, a record whose token (`tor.epoch`) is below one
              already seen earlier in the partition: a replica publishing
              after a newer leader had.  Where no broker fences producers
              (idempotent mode; the dev broker), the queue of a leader that
              was SIGSTOPped goes out when it resumes, before it sees its
              lease has passed: with a timeline, those records are reported
              apart and not judged.

Duplicates are attributed to a cause when a timeline (the runner's) is given:
the leadership that published the copy, and the fault that led to it.
"""

import collections
import json
import re
import time

from confluent_kafka import (Consumer, KafkaError, KafkaException,
                             OFFSET_BEGINNING, TopicPartition)

# ---------------------------------------------------------------------------
# binlog order from tor.pos

_MARIADB_GTID = re.compile(r"^(\d+)-(\d+)-(\d+)$")
_MYSQL_GTID = re.compile(r"^([0-9a-fA-F-]{36}):(\d+)$")
_FILE_POS = re.compile(r"^(.*?)(\d+):(\d+)$")


def binlog_order(pos):
    """A sort key for a tor.pos value, or None when it cannot be read.

    The first element names the sequence the key belongs to: keys of
    different sequences (two MariaDB domains, two MySQL server uuids, a GTID
    and a file position) do not compare."""
    if not pos or ":" not in pos:
        return None
    prefix, _, row = pos.rpartition(":")
    if not row.isdigit():
        return None
    row = int(row)
    m = _MARIADB_GTID.match(prefix)
    if m:
        return (("gtid", int(m.group(1))), int(m.group(3)), 0, row)
    m = _MYSQL_GTID.match(prefix)
    if m:
        return (("uuid", m.group(1).lower()), int(m.group(2)), 0, row)
    m = _FILE_POS.match(prefix)
    if m:
        return (("file", m.group(1)), int(m.group(2)), int(m.group(3)), row)
    return None


# ---------------------------------------------------------------------------
# reading


Copy = collections.namedtuple("Copy", "topic partition offset key token pos")


class Retention(Exception):
    """A partition no longer starts at offset 0: records were dropped by the
    broker's retention, so absences cannot be judged."""


def _consumer(brokers, isolation, extra=None):
    conf = {
        "bootstrap.servers": brokers,
        "group.id": "tor-chaos-verify",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": isolation,
        "enable.partition.eof": False,
    }
    conf.update(extra or {})
    return Consumer(conf)


_MOVED = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
          KafkaError.FENCED_LEADER_EPOCH, KafkaError.UNKNOWN_LEADER_EPOCH,
          KafkaError.REQUEST_TIMED_OUT, KafkaError._TIMED_OUT,
          KafkaError._TRANSPORT}


def _watermarks(c, topic, partition, timeout=60):
    """(low, high) of a partition.  A partition whose leader just moved (a
    node restarted) answers NOT_LEADER for a moment, and the client asks
    the leader its metadata names: the topic's metadata is fetched again
    before each retry."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return c.get_watermark_offsets(TopicPartition(topic, partition),
                                           timeout=30, cached=False)
        except KafkaException as e:
            if e.args[0].code() not in _MOVED or \
                    time.monotonic() > deadline:
                raise
        time.sleep(0.5)
        c.list_topics(topic, timeout=30)


def end_offsets(brokers, topics, extra=None):
    """{(topic, partition): high watermark} now: where a run's records will
    begin (the runner takes them before it writes)."""
    c = _consumer(brokers, "read_uncommitted", extra)
    out = {}
    try:
        for topic in topics:
            t = c.list_topics(topic, timeout=30).topics.get(topic)
            if t is None or t.error is not None:
                continue
            for p in t.partitions:
                out[(topic, p)] = _watermarks(c, topic, p)[1]
    finally:
        c.close()
    return out


def read_topics(brokers, topics, isolation, timeout=120, extra=None,
                group=None, log=None, start_offsets=None):
    """Every record of the topics, as {tor.id: [Copy, ...]} in partition
    offset order, plus per partition the (offset, token) of each record and
    the count of records without a tor.id.  Reads each partition from
    start_offsets (default: its beginning) to its end as the consumer sees
    it now (the last stable offset under read_committed).  Retention is
    raised when a partition no longer holds its start."""
    start_offsets = start_offsets or {}
    c = _consumer(brokers, isolation, extra)
    by_id = collections.defaultdict(list)
    tokens = collections.OrderedDict()
    no_id = 0
    other_group = 0
    try:
        targets = {}
        for topic in topics:
            md = c.list_topics(topic, timeout=30)
            t = md.topics.get(topic)
            if t is None or t.error is not None:
                raise RuntimeError("topic %s: %s" % (
                    topic, t.error if t else "missing"))
            for p in sorted(t.partitions):
                lo, hi = _watermarks(c, topic, p)
                start = start_offsets.get((topic, p), 0)
                if lo > start:
                    raise Retention("%s[%d] starts at offset %d, not %d: the "
                                    "broker dropped records (retention)" %
                                    (topic, p, lo, start))
                tokens[(topic, p)] = []
                if hi > start:
                    targets[(topic, p)] = (start, hi)
        c.assign([TopicPartition(t, p, start if start > 0 else
                                 OFFSET_BEGINNING)
                  for (t, p), (start, _) in targets.items()])
        targets = {k: hi for k, (_, hi) in targets.items()}
        deadline = time.monotonic() + timeout
        seen = 0
        while targets and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                if m.error():
                    continue
                seen += 1
                h = {}
                for k, v in m.headers() or []:
                    h.setdefault(k, v)
                if group is not None and h.get("tor.group") not in (
                        None, group.encode()):
                    other_group += 1
                    continue
                token = int(h["tor.epoch"]) if h.get("tor.epoch") else None
                tokens[(m.topic(), m.partition())].append(
                    (m.offset(), token))
                rid = h.get("tor.id")
                if rid is None:
                    no_id += 1
                    continue
                pos = h.get("tor.pos")
                by_id[rid.decode()].append(Copy(
                    m.topic(), m.partition(), m.offset(), m.key(), token,
                    pos.decode() if pos else None))
            pos = c.position([TopicPartition(t, p) for t, p in targets])
            for tp in pos:
                if tp.offset >= 0 and tp.offset >= targets[(tp.topic,
                                                            tp.partition)]:
                    del targets[(tp.topic, tp.partition)]
            if log and seen:
                log("read %d records, %d partitions to go" %
                    (seen, len(targets)))
        if targets:
            raise RuntimeError("could not read to the end of %s within %ss" %
                               (", ".join("%s[%d]" % k for k in targets),
                                timeout))
    finally:
        c.close()
    return by_id, tokens, no_id, other_group


def read_rows(conn, table, id_col, key_col, min_id=None, max_id=None,
              range_col=None):
    """{id (text): key (bytes)} of the outbox rows committed in the range of
    range_col (default: the id column; an auto-increment column where the
    event id is a UUID)."""
    range_col = range_col or id_col
    where, args = [], []
    if min_id is not None:
        where.append("%s > %%s" % range_col)
        args.append(min_id)
    if max_id is not None:
        where.append("%s <= %%s" % range_col)
        args.append(max_id)
    sql = "SELECT %s, %s FROM %s" % (id_col, key_col, table)
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = {}
    with conn.cursor() as cur:
        cur.execute(sql, args)
        for rid, key in cur.fetchall():
            if isinstance(key, str):
                key = key.encode()
            rows[str(rid)] = key
    return rows


# ---------------------------------------------------------------------------
# timeline: which leadership published a token, and why it began


class Timeline:
    """The runner's record of a run, one JSON object per line:

      {"t": seconds, "event": "fault", "kind": "kill", "detail": "..."}
      {"t": seconds, "event": "leader", "holder": "r2", "token": 7}
      {"t": seconds, "event": "operator", "token": 9, "to": "..."}

    t counts from the run's start."""

    def __init__(self, entries=()):
        self.entries = sorted(entries, key=lambda e: e["t"])

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls(json.loads(line) for line in f if line.strip())

    def leadership_start(self, token):
        for e in self.entries:
            if e["event"] == "leader" and e.get("token") == token:
                return e["t"]
        return None

    def faults_between(self, t0, t1):
        return [e for e in self.entries if e["event"] == "fault" and
                t0 <= e["t"] <= t1]

    def operator_tokens(self):
        return {e["token"] for e in self.entries
                if e["event"] == "operator" and e.get("token") is not None}

    def cause_of_token(self, token):
        """The fault kind that led to the leadership of `token`: the last
        fault begun before the leadership began (an operator's move when the
        token right before this one was an operator's), or "start"."""
        if token is None:
            return "unknown"
        ops = self.operator_tokens()
        if any(o < token and not self._token_between(o, token) for o in ops):
            return "operator"
        t = self.leadership_start(token)
        if t is None:
            return "unknown"
        before = [e for e in self.entries if e["event"] == "fault" and
                  e["t"] <= t]
        return before[-1]["kind"] if before else "start"

    def replayed(self, first_token, token):
        """True when an operator's move falls between a row's first copy
        (under first_token) and a later copy (under token): the move sent
        the position back before the row, so its replay, in whichever
        leadership went on with it, published the row again."""
        return any(first_token < o <= token for o in self.operator_tokens())

    def _token_between(self, lo, hi):
        return any(e["event"] == "leader" and lo < e.get("token", 0) < hi
                   for e in self.entries)

    def paused_tokens(self):
        """Tokens whose leader was SIGSTOPped during its leadership (a
        "stop" fault naming its holder): their queued messages go out when
        the process resumes, before it sees that its lease has passed."""
        out = set()
        leaders = [e for e in self.entries if e["event"] == "leader"]
        for i, e in enumerate(leaders):
            end = leaders[i + 1]["t"] if i + 1 < len(leaders) else float(
                "inf")
            for f in self.faults_between(e["t"], end):
                if f["kind"] == "stop" and f.get("detail", "").startswith(
                        "leader %s " % e.get("holder")):
                    out.add(e["token"])
        return out

    def faults_during(self, token):
        """Fault kinds begun while `token` led (a copy published twice under
        one token is the producer's resend: these are its likely causes)."""
        start = self.leadership_start(token)
        if start is None:
            return []
        end = None
        for e in self.entries:
            if e["event"] == "leader" and e["t"] > start and \
                    e.get("token") != token:
                end = e["t"]
                break
        return [e["kind"] for e in self.faults_between(
            start, end if end is not None else float("inf"))]


# ---------------------------------------------------------------------------
# the verdict

# Causes after which no copy may repeat, in any mode and on any broker: the
# leader stopped on purpose hands over what it published (DESIGN.md §3).
GRACEFUL = ("handover",)


class Verdict:
    def __init__(self):
        self.rows = 0
        self.records = 0
        self.lost = []
        self.duplicates = 0              # copies beyond the first
        self.duplicated_rows = 0
        self.dup_by_cause = collections.Counter()
        self.dup_by_token = collections.Counter()
        self.reordered = []              # (key, row, came after row)
        self.pos_mismatch = []
        self.zombies = []                # (topic, partition, offset, token, above)
        self.paused_zombies = []         # the same, from a paused leader's queue
        self.tokens = {}                 # "topic[p]" -> [distinct tokens in order]
        self.unknown = 0                 # records for ids not in MySQL's range
        self.no_id = 0
        self.other_group = 0
        self.mode = "idempotent"
        self.dev_broker = False
        self.notes = []

    def judged_duplicates(self):
        """Duplicates that count against the run.  A graceful handover
        repeats nothing in either mode, and any broker shows that.  In
        transactional mode, every copy not replayed on purpose by an
        operator, where the broker can show it (DESIGN.md §9: the dev broker
        has no transaction markers, so aborted transactions are read too)."""
        graceful = sum(n for cause, n in self.dup_by_cause.items()
                       if cause in GRACEFUL)
        if self.mode != "transactional" or self.dev_broker:
            return graceful
        return self.duplicates - self.dup_by_cause.get("operator", 0)

    def failed(self):
        return bool(self.lost or self.reordered or self.zombies or
                    self.pos_mismatch or self.judged_duplicates())

    def fenced(self):
        """True when a paused leader's messages must be refused by the
        broker: transactional mode on a broker that fences producers."""
        return self.mode == "transactional" and not self.dev_broker

    def to_json(self):
        return {
            "rows": self.rows, "records": self.records,
            "lost": len(self.lost), "lost_sample": self.lost[:20],
            "duplicates": self.duplicates,
            "duplicated_rows": self.duplicated_rows,
            "duplicates_by_cause": dict(self.dup_by_cause),
            "duplicates_by_token": {str(k): v for k, v in
                                    self.dup_by_token.items()},
            "reordered": len(self.reordered),
            "reordered_sample": [list(map(_text, r))
                                 for r in self.reordered[:20]],
            "pos_mismatch": len(self.pos_mismatch),
            "zombies": len(self.zombies),
            "zombie_sample": [list(z) for z in self.zombies[:20]],
            "paused_leader_zombies": len(self.paused_zombies),
            "paused_leader_zombie_sample": [list(z) for z in
                                            self.paused_zombies[:20]],
            "tokens": self.tokens,
            "records_without_tor_id": self.no_id,
            "records_of_other_groups": self.other_group,
            "records_for_unknown_rows": self.unknown,
            "mode": self.mode, "dev_broker": self.dev_broker,
            "judged_duplicates": self.judged_duplicates(),
            "failed": self.failed(), "notes": self.notes,
        }

    def report(self):
        out = []
        out.append("verify: %d rows in MySQL, %d records on Kafka (%s mode%s)"
                   % (self.rows, self.records, self.mode,
                      ", dev broker" if self.dev_broker else ""))
        out.append("  lost:       %d%s" % (len(self.lost), (
            " e.g. id " + ", ".join(self.lost[:10])) if self.lost else ""))
        out.append("  duplicated: %d copies of %d rows" % (
            self.duplicates, self.duplicated_rows))
        for cause, n in sorted(self.dup_by_cause.items(),
                               key=lambda kv: -kv[1]):
            out.append("    %-24s %d" % (cause, n))
        out.append("  reordered:  %d" % len(self.reordered))
        for key, row, after in self.reordered[:5]:
            out.append("    key %s: row %s first came after row %s" %
                       (_text(key), row, after))
        if self.pos_mismatch:
            out.append("  tor.pos differs between copies: %d rows, e.g. %s" %
                       (len(self.pos_mismatch), self.pos_mismatch[:3]))
        out.append("  zombies:    %d" % len(self.zombies))
        for z in self.zombies[:5]:
            out.append("    %s[%d] offset %d: token %s after token %s" % z)
        if self.paused_zombies:
            toks = sorted({z[3] for z in self.paused_zombies})
            out.append("  a paused leader's queue, sent when it resumed: %d "
                       "records of token(s) %s after a higher token (%s mode"
                       "%s: no broker fences them; reported, not judged)" % (
                           len(self.paused_zombies),
                           " ".join(map(str, toks)), self.mode,
                           ", dev broker" if self.dev_broker else ""))
        for tp, seq in self.tokens.items():
            out.append("  tokens %-22s %s" % (tp, _tokens_text(seq)))
        if self.unknown:
            out.append("  records for ids outside the run's rows: %d" %
                       self.unknown)
        if self.no_id:
            out.append("  records without tor.id: %d" % self.no_id)
        for n in self.notes:
            out.append("  note: " + n)
        if self.judged_duplicates():
            out.append("  duplicates that count: %d" %
                       self.judged_duplicates())
        if self.mode == "transactional":
            if self.dev_broker:
                out.append("  duplicates not judged: the dev broker has no "
                           "transaction markers, so read_committed also "
                           "reads aborted transactions (DESIGN.md §9)")
            else:
                out.append("  duplicates judged (read_committed): %d" %
                           self.judged_duplicates())
        out.append("verdict: %s" % ("FAIL" if self.failed() else "PASS"))
        return "\n".join(out)


def _text(v):
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    return str(v)


def _tokens_text(seq):
    if len(seq) > 12:
        return "%s ... %s (%d tokens)" % (
            " ".join(map(str, seq[:6])), " ".join(map(str, seq[-6:])),
            len(seq))
    return " ".join(map(str, seq))


def judge(rows, by_id, tokens, no_id=0, other_group=0, mode="idempotent",
          dev_broker=False, timeline=None):
    """The verdict for MySQL's rows ({id: key}) against Kafka's copies."""
    v = Verdict()
    v.mode, v.dev_broker = mode, dev_broker
    v.rows = len(rows)
    v.no_id, v.other_group = no_id, other_group
    v.records = sum(len(c) for c in by_id.values()) + no_id
    timeline = timeline or Timeline()

    for rid in rows:
        if rid not in by_id:
            v.lost.append(rid)
    v.lost.sort(key=lambda s: (len(s), s))
    v.unknown = sum(len(c) for rid, c in by_id.items() if rid not in rows)

    firsts = collections.defaultdict(list)   # key -> [(partition, offset, order, id)]
    for rid, copies in by_id.items():
        if rid not in rows:
            continue
        copies = sorted(copies, key=lambda c: (c.topic, c.partition,
                                               c.offset))
        first = copies[0]
        if len(copies) > 1:
            v.duplicated_rows += 1
            v.duplicates += len(copies) - 1
            for c in copies[1:]:
                v.dup_by_token[c.token] += 1
                if c.token == first.token:
                    during = timeline.faults_during(c.token)
                    cause = "resend (%s)" % (during[0] if during else
                                             "no fault")
                elif None not in (first.token, c.token) and \
                        timeline.replayed(first.token, c.token):
                    cause = "operator"
                else:
                    cause = timeline.cause_of_token(c.token)
                v.dup_by_cause[cause] += 1
            if len({c.pos for c in copies}) > 1:
                v.pos_mismatch.append(rid)
        firsts[(first.topic, rows[rid])].append(
            (first.partition, first.offset, binlog_order(first.pos), rid))

    for (topic, key), seen in firsts.items():
        seen.sort()
        newest = {}                 # sequence -> (order, id) furthest seen
        for _part, _off, order, rid in seen:
            if order is None:
                continue
            seq = order[0]
            top = newest.get(seq)
            if top is not None and order < top[0]:
                v.reordered.append((key, rid, top[1]))
            elif top is None or order > top[0]:
                newest[seq] = (order, rid)

    paused = timeline.paused_tokens() if not v.fenced() else set()
    for (topic, p), seq in tokens.items():
        distinct = []
        top = None
        for offset, token in seq:
            if token is None:
                continue
            if top is not None and token < top:
                (v.paused_zombies if token in paused else v.zombies).append(
                    (topic, p, offset, token, top))
            if not distinct or distinct[-1] != token:
                distinct.append(token)
            top = token if top is None else max(top, token)
        if seq:
            v.tokens["%s[%d]" % (topic, p)] = distinct
    return v

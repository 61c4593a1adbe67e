"""`tor decode`: binlog files the local MariaDB wrote, read from disk with
no server, Kafka or Redis, compared with what the relay publishes from the
same files and with what mariadb-binlog -vv says they hold.
"""

import base64
import json
import os
import re
import subprocess

import harness
from harness import Tor, read_all

MARIADB_BINLOG = "mariadb-binlog"


def make_outbox(stack, name):
    table = "shop.ob_%s" % name
    stack.sql("DROP TABLE IF EXISTS %s" % table)
    stack.sql(harness.outbox_ddl(table))
    return table, {
        "outbox": {
            "tables": [{"table": table,
                        "columns": {"id": "id", "key": "aggregate_id",
                                    "type": "aggregate_type",
                                    "payload": "payload"},
                        "headers": [{"column": "uuid", "header": "uuid"}]}],
            "routes": [{"match": "^order$", "topic": name + ".order"},
                       {"match": "^invoice$", "topic": name + ".invoice"}],
            "unrouted": "skip",
        },
    }


def binlog_path(stack, file_):
    base = stack.sql("SELECT @@log_bin_basename")[0][0]
    return os.path.join(os.path.dirname(base), file_)


def fresh_file(stack):
    """Rotates; returns the name of the new current binlog file."""
    stack.sql("FLUSH BINARY LOGS")
    return stack.binlog_position()[0]


def write_rows(stack, table, n0, count, size=40, per_txn=10):
    """count rows n0.. in transactions of per_txn: types order, invoice and
    (every 7th) audit, which no route takes; an UPDATE and a DELETE of
    outbox rows in every transaction."""
    rows = []
    for start in range(n0, n0 + count, per_txn):
        stmts = []
        for n in range(start, min(start + per_txn, n0 + count)):
            kind = "audit" if n % 7 == 0 else ("order", "invoice")[n % 2]
            payload = json.dumps({"n": n, "pad": "x" * size})
            rows.append((n, kind, "k%d" % (n % 13), payload))
            stmts.append(("INSERT INTO %s (aggregate_type, aggregate_id, "
                          "payload, uuid) VALUES (%%s, %%s, %%s, %%s)" %
                          table, [kind, "k%d" % (n % 13), payload,
                                  "u-%d" % n]))
        stmts.append("UPDATE %s SET trace_id = 't' ORDER BY id LIMIT 2" %
                     table)
        stmts.append("DELETE FROM %s ORDER BY id LIMIT 1" % table)
        stack.sql_many(stmts, user="app")
    return rows


def decode(stack, cfg, files, *extra):
    p = harness.tor_cli(["decode"] + list(extra) + files, cfg=cfg,
                        stack=stack)
    lines = [json.loads(line) for line in p.stdout.splitlines()]
    return p, lines


def text_of(v):
    if isinstance(v, dict):
        return base64.b64decode(v["base64"])
    return None if v is None else v.encode()


def test_decode_matches_the_relay_and_mariadb_binlog(stack):
    """Plain and compressed (log_bin_compress) row events: every outbox
    row the relay publishes, tor decode prints with the same topic, key,
    value and headers (tor.epoch aside: decode has no token); the rows no
    route takes and the updates and deletes are printed as skips; the rows
    are mariadb-binlog's INSERTs, in order; --all-events lists the events
    mariadb-binlog lists."""
    name = "dec_a"
    table, ov = make_outbox(stack, name)
    first = fresh_file(stack)
    rows = write_rows(stack, table, 0, 120)
    stack.sql("SET GLOBAL log_bin_compress = ON")
    try:
        rows += write_rows(stack, table, 120, 60, size=600)
    finally:
        stack.sql("SET GLOBAL log_bin_compress = OFF")
    end = stack.binlog_position()
    fresh_file(stack)
    path = binlog_path(stack, first)
    # One config for both, so that tor.group is the same.
    cfg = harness.base_config(stack, start="%s:4" % first, **ov)

    p, lines = decode(stack, cfg, [path])
    assert p.returncode == 0, (p.returncode, p.stderr[-2000:])
    msgs = [x["message"] for x in lines if "message" in x]
    skips = [x["skip"] for x in lines if "skip" in x]
    routed = [r for r in rows if r[1] != "audit"]
    assert len(msgs) == len(routed), (len(msgs), len(routed))
    for m, (n, kind, key, payload) in zip(msgs, routed):
        assert m["topic"] == "%s.%s" % (name, kind), (n, m)
        assert m["key"] == key and m["value"] == payload, (n, m)
        assert m["headers"]["uuid"] == "u-%d" % n, (n, m)
        assert m["headers"]["tor.pos"] == m["tor.pos"], m
    reasons = [s["reason"] for s in skips]
    assert reasons.count("unrouted") == len(rows) - len(routed), reasons
    assert reasons.count("update") == 18 and reasons.count("delete") == 18, \
        reasons
    print("  tor decode: %d messages, %d skips (%s) from %s" % (
        len(msgs), len(skips), ", ".join(
            "%d %s" % (reasons.count(r), r) for r in sorted(set(reasons))),
        first))

    # The relay over the same range publishes the same messages.
    tor = Tor(stack, cfg).start()
    recs = []
    for kind in ("order", "invoice"):
        recs += read_all(stack.brokers, "%s.%s" % (name, kind), timeout=30,
                         count=sum(1 for r in routed if r[1] == kind))
    tor.stop()
    assert len(recs) == len(msgs), (len(recs), len(msgs))
    by_pos = {m["tor.pos"]: m for m in msgs}
    for r in recs:
        h = dict((k, v) for k, v in r.headers)
        m = by_pos[h["tor.pos"].decode()]
        assert r.topic == m["topic"] and r.key == text_of(m["key"]) and \
            r.value == text_of(m["value"]), (r.topic, r.key, m)
        want = dict((k, text_of(v)) for k, v in m["headers"].items())
        del want["tor.epoch"], h["tor.epoch"]
        # How a leadership placed it: tor decode has no leadership and no
        # partition counts, so prints none.
        assert h.pop("tor.partitioning") == b"murmur2/4", h
        assert h == want, (h, want)

    # mariadb-binlog -vv: the same INSERTs, in the same order.
    out = subprocess.run([MARIADB_BINLOG, "-vv", "--base64-output=decode-rows",
                          path], capture_output=True, text=True,
                         check=True).stdout
    short = table.split(".")[1]
    inserts = re.findall(r"^### INSERT INTO `shop`\.`%s`\n### SET\n((?:###"
                         r"   @\d+=.*\n)+)" % short, out, re.M)
    assert len(inserts) == len(rows), (len(inserts), len(rows))
    for ins, (n, kind, key, payload) in zip(inserts, rows):
        cols = dict(re.findall(r"@(\d+)=(.*?)(?: /\*.*)?$", ins, re.M))
        assert cols["3"] == "'%s'" % key and cols["4"] == "'%s'" % kind, \
            (n, cols)
        assert cols["5"] == "'%s'" % payload, (n, cols["5"][:80])

    # --all-events: the events mariadb-binlog prints, at its positions.
    p, lines = decode(stack, cfg, [path], "--all-events")
    assert p.returncode == 0, p.stderr[-2000:]
    events = [x["event"] for x in lines if "event" in x]
    ours = [e["pos"] for e in events]
    theirs = [int(x) for x in re.findall(r"^# at (\d+)$", out, re.M)]
    assert ours == sorted(set(theirs)), (ours[:10], theirs[:10])
    assert events[-1]["pos"] + events[-1]["size"] == os.path.getsize(path)
    kinds = set(e["type"] for e in events)
    assert {"FORMAT_DESCRIPTION", "MARIADB_GTID", "TABLE_MAP",
            "WRITE_ROWS_V1", "WRITE_ROWS_COMPRESSED_V1", "XID",
            "ROTATE"} <= kinds, kinds
    assert end[1] <= os.path.getsize(path)


def test_decode_needs_names_in_the_binlog(stack):
    """binlog_row_metadata=MINIMAL, or old-format temporal columns
    (mysql56_temporal_format=OFF): the relay asks information_schema, tor
    decode has no server to ask and says so, exit 1."""
    name = "dec_b"
    table, ov = make_outbox(stack, name)
    first = fresh_file(stack)
    stack.sql("SET GLOBAL binlog_row_metadata = MINIMAL")
    try:
        write_rows(stack, table, 0, 5)
    finally:
        stack.sql("SET GLOBAL binlog_row_metadata = FULL")
    fresh_file(stack)
    p, lines = decode(stack, ov, [binlog_path(stack, first)])
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    halts = [x["halt"] for x in lines if "halt" in x]
    assert len(halts) == 1 and "binlog_row_metadata=FULL" in \
        halts[0]["reason"], lines
    assert "%s: offset %d" % (binlog_path(stack, first),
                              halts[0]["event"]) in p.stderr, p.stderr

    old = "shop.ob_dec_old"
    stack.sql("DROP TABLE IF EXISTS %s" % old)
    stack.sql("SET GLOBAL mysql56_temporal_format = OFF")
    try:
        stack.sql(harness.outbox_ddl(old))
    finally:
        stack.sql("SET GLOBAL mysql56_temporal_format = ON")
    ov["outbox"]["tables"][0]["table"] = old
    first = fresh_file(stack)
    write_rows(stack, old, 0, 3)
    fresh_file(stack)
    p, lines = decode(stack, ov, [binlog_path(stack, first)])
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "old-format temporal" in p.stderr, p.stderr


def test_decode_bad_files(stack):
    """Not a binlog, a file cut inside an event, a flipped byte: an error
    naming the file and the offset, exit 1, no crash."""
    name = "dec_c"
    table, ov = make_outbox(stack, name)
    first = fresh_file(stack)
    write_rows(stack, table, 0, 20)
    fresh_file(stack)
    with open(binlog_path(stack, first), "rb") as f:
        good = f.read()
    work = os.path.join(stack.run_dir, "decode-bad")
    os.makedirs(work, exist_ok=True)

    def run(data, label):
        path = os.path.join(work, label)
        with open(path, "wb") as f:
            f.write(data)
        p, _ = decode(stack, ov, [path])
        print("  %s: exit %d: %s" % (label, p.returncode,
                                     p.stderr.strip()[-200:]))
        assert p.returncode == 1, (label, p.returncode, p.stderr)
        assert "Sanitizer" not in p.stderr and path in p.stderr, p.stderr
        return p.stderr

    err = run(b"-- mysqldump output\n", "not-a-binlog")
    assert "not a binlog file" in err
    # Cut inside a rows event, past its header; then inside a header.
    p, lines = decode(stack, ov, [binlog_path(stack, first)], "--all-events")
    rows = [x["event"] for x in lines if "event" in x and
            x["event"]["type"] == "WRITE_ROWS_V1"]
    err = run(good[:rows[-1]["pos"] + 25], "cut-in-an-event")
    assert "offset %d: event of type 23 says it is %d bytes, 25 are left" % (
        rows[-1]["pos"], rows[-1]["size"]) in err, err
    err = run(good[:rows[-1]["pos"] + 5], "cut-in-a-header")
    assert "offset %d: 5 bytes cannot hold an event header" % \
        rows[-1]["pos"] in err, err
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x40
    err = run(bytes(flipped), "flipped-byte")
    assert "checksum mismatch" in err, err
    assert re.search(r"offset \d+:", err), err
    p, _ = decode(stack, ov, [os.path.join(work, "missing")])
    assert p.returncode == 1 and "No such file" in p.stderr, p.stderr

"""The operator's commands: tor status, tor checkpoint show, tor checkpoint
set (DESIGN.md §7), against the real local stack.

Output is one "key: value" line per fact; exit codes are 0 (a leader, a
checkpoint, a move done), 1 (none, or a refused position), 2 (Redis or MySQL
could not be asked).  A checkpoint to look at comes from a real run: a tor
relays one row, is stopped with SIGTERM and writes its final checkpoint.

test_status_shows_the_leader and test_checkpoint_set_makes_the_leader_step_down
need the HA relay: a running replica holds the lease, and steps down when
`checkpoint set` breaks it.
"""

import json
import secrets
import time

import harness
from harness import Tor, insert_events, wait_for

TABLE = "shop.ob_cli"


def facts(text):
    """The "key: value" lines of a command's output as a dict."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            out[key] = value
    return out


def cli(stack, cfg, *args):
    return harness.tor_cli(list(args), cfg=cfg, stack=stack)


def checkpoint_hash(stack, group):
    h = stack.redis().hgetall("tor:{%s}:checkpoint" % group)
    return {k.decode(): v.decode() for k, v in h.items()}


def outbox_overrides(topic_base):
    return {
        "outbox": {
            "tables": [{"table": TABLE,
                        "columns": {"id": "id", "key": "aggregate_id",
                                    "type": "aggregate_type",
                                    "payload": "payload"}}],
            "routes": [{"match": "^order$", "topic": topic_base + ".order"}],
        },
    }


def finished_run(stack):
    """Runs a tor over shop.ob_cli until it relayed one row, stops it with
    SIGTERM; returns it (its config names the group with the checkpoint)."""
    stack.sql("DROP TABLE IF EXISTS %s" % TABLE)
    stack.sql(harness.outbox_ddl(TABLE))
    topic_base = "cli_" + secrets.token_hex(3)
    tor = Tor(stack, outbox_overrides(topic_base)).start()
    tor.wait_log("starting at", timeout=30)
    insert_events(stack, [("order", "k1", b'{"n": 0}')], table=TABLE)
    wait_for(stack.brokers, topic_base + ".order", 1, timeout=60)
    assert tor.stop() == 0, tor.log_tail()
    return tor


def test_status_without_a_leader_or_checkpoint(stack):
    cfg = harness.base_config(stack)
    p = cli(stack, cfg, "status")
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    f = facts(p.stdout)
    assert f["group"] == harness.config_group(cfg), p.stdout
    assert f["leader"] == "none", p.stdout
    assert f["checkpoint"] == "none", p.stdout
    p = cli(stack, cfg, "checkpoint", "show")
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert facts(p.stdout) == {"checkpoint": "none"}, p.stdout


def test_status_and_show_after_a_finished_run(stack):
    tor = finished_run(stack)
    file_, pos = stack.binlog_position()
    cp = checkpoint_hash(stack, tor.group)
    p = cli(stack, tor.cfg_text, "status")
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    f = facts(p.stdout)
    assert f["leader"] == "none", p.stdout
    assert f["checkpoint"] == "%s:%d" % (file_, pos), (p.stdout, file_, pos)
    assert f["checkpoint_gtid"] == (cp["gtid"] or "none"), (p.stdout, cp)
    assert f["checkpoint_token"] == cp["epoch"], (p.stdout, cp)
    assert 0 <= int(f["checkpoint_age_ms"]) < 120000, p.stdout
    p = cli(stack, tor.cfg_text, "checkpoint", "show")
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    g = facts(p.stdout)
    assert set(g) == {"checkpoint", "checkpoint_gtid", "checkpoint_token",
                      "checkpoint_age_ms"}, p.stdout
    for k in ("checkpoint", "checkpoint_gtid", "checkpoint_token"):
        assert g[k] == f[k], (k, p.stdout, f)


def test_checkpoint_set_to_a_file_position(stack):
    tor = finished_run(stack)
    old = checkpoint_hash(stack, tor.group)
    file_, _ = stack.binlog_position()
    p = cli(stack, tor.cfg_text, "checkpoint", "set", "--to", "%s:4" % file_)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    f = facts(p.stdout)
    assert f["checkpoint"] == "%s:4" % file_, p.stdout
    assert f["leader"] == "asked to step down", p.stdout
    new = checkpoint_hash(stack, tor.group)
    assert new["file"] == file_ and new["pos"] == "4", new
    # The server it was checked on, and its GTID state there: a leader on
    # another server (a failover since) follows it by GTID.
    want = stack.sql("SELECT BINLOG_GTID_POS(%s, 4), @@global.server_id",
                     file_)[0]
    assert new["gtid"] == want[0] and new["server_id"] == str(want[1]), \
        (new, want)
    assert int(new["epoch"]) > int(old["epoch"]), (old, new)
    assert f["checkpoint_token"] == new["epoch"], (p.stdout, new)
    p = cli(stack, tor.cfg_text, "checkpoint", "show")
    assert p.returncode == 0 and facts(p.stdout)["checkpoint"] == \
        "%s:4" % file_, (p.returncode, p.stdout, p.stderr)


def test_checkpoint_set_to_end_and_to_a_gtid(stack):
    tor = finished_run(stack)
    old = checkpoint_hash(stack, tor.group)
    insert_events(stack, [("order", "k2", b'{"n": 1}')], table=TABLE)
    file_, pos = stack.binlog_position()
    p = cli(stack, tor.cfg_text, "checkpoint", "set", "--to", "end")
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    assert facts(p.stdout)["checkpoint"] == "%s:%d" % (file_, pos), p.stdout
    at_end = checkpoint_hash(stack, tor.group)
    assert (at_end["file"], int(at_end["pos"])) == (file_, pos), at_end
    assert int(at_end["epoch"]) > int(old["epoch"]), (old, at_end)

    p = cli(stack, tor.cfg_text, "checkpoint", "set", "--to", "0-1-5,1-2-9")
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    f = facts(p.stdout)
    assert f["checkpoint"] == "0-1-5,1-2-9", p.stdout
    assert "note" in f and "GTID" in f["note"], p.stdout
    by_gtid = checkpoint_hash(stack, tor.group)
    assert by_gtid["file"] == "" and by_gtid["gtid"] == "0-1-5,1-2-9", \
        by_gtid
    assert int(by_gtid["epoch"]) > int(at_end["epoch"]), (at_end, by_gtid)


def test_checkpoint_set_refuses_a_purged_file(stack):
    tor = finished_run(stack)
    old_file, _ = stack.binlog_position()
    before = checkpoint_hash(stack, tor.group)
    stack.purge_binlogs(old_file)
    p = cli(stack, tor.cfg_text, "checkpoint", "set", "--to",
            "%s:4" % old_file)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "binlog file %s is no longer on the server" % old_file in \
        p.stderr, p.stderr
    assert checkpoint_hash(stack, tor.group) == before


SID_A = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
SID_B = "4c4d4e4f-0000-1111-2222-333344445555"


def test_checkpoint_set_to_a_mysql_gtid_set(stack):
    """`checkpoint set` takes a MySQL GTID set as gtid_executed shows it
    (uppercase, a newline after a comma) and stores it in the one form the
    checkpoint holds, with no file:pos; `checkpoint show` prints it.  This
    stack is MariaDB, where such a set names no position: the next leader
    halts saying so, having published nothing.  A set that does not parse
    is refused before anything is written."""
    tor = finished_run(stack)
    typed = "%s:7,\n %s:1-5" % (SID_B, SID_A.upper())
    want = "%s:1-5,%s:7" % (SID_A, SID_B)
    p = cli(stack, tor.cfg_text, "checkpoint", "set", "--to", SID_A + ":0")
    assert p.returncode == 1 and "bad GTID set" in p.stderr, \
        (p.returncode, p.stdout, p.stderr)
    p = cli(stack, tor.cfg_text, "checkpoint", "set", "--to", typed)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    new = checkpoint_hash(stack, tor.group)
    print("  hash after the move: %s" % new)
    assert new["gtid_set"] == want and new["file"] == "" and \
        new["gtid"] == "", new
    p = cli(stack, tor.cfg_text, "checkpoint", "show")
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    f = facts(p.stdout)
    assert f["checkpoint"] == "gtid set" and \
        f["checkpoint_gtid_set"] == want, p.stdout
    insert_events(stack, [("order", "k9", b'{"n": 9}')], table=TABLE)
    r2 = Tor(stack, tor.cfg_text, name="r2").start()
    rc = r2.wait(timeout=30)
    halt = [ln for ln in r2.log_text().splitlines() if "is MariaDB" in ln]
    print("  r2 exit %d: %s" % (rc, halt[-1][:300] if halt else "-"))
    assert rc == 1 and halt, r2.log_tail()
    assert "MySQL GTID set names no position there" in halt[-1], halt


def test_checkpoint_set_refuses_a_bad_position(stack):
    tor = finished_run(stack)
    before = checkpoint_hash(stack, tor.group)
    file_, pos = stack.binlog_position()
    for to, says in [("garbage", "bad position 'garbage'"),
                     ("%s:3" % file_, "at least 4"),
                     ("0-1-5,0-2-6", "two GTIDs for domain 0"),
                     ("%s:%d" % (file_, pos + 1000), "beyond the end")]:
        p = cli(stack, tor.cfg_text, "checkpoint", "set", "--to", to)
        assert p.returncode == 1, (to, p.returncode, p.stdout, p.stderr)
        assert says in p.stderr, (to, p.stderr)
        assert p.stdout == "", (to, p.stdout)
    assert checkpoint_hash(stack, tor.group) == before


def test_status_reports_an_invalid_checkpoint(stack):
    cfg = harness.base_config(stack)
    group = harness.config_group(cfg)
    stack.redis().hset("tor:{%s}:checkpoint" % group,
                       mapping={"file": "mariadb-bin.000001", "pos": "x"})
    p = cli(stack, cfg, "status")
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    f = facts(p.stdout)
    assert f["leader"] == "none", p.stdout
    assert f["checkpoint"] == \
        "invalid (checkpoint field 'pos': not a number ('x'))", p.stdout
    p = cli(stack, cfg, "checkpoint", "show")
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert facts(p.stdout)["checkpoint"].startswith("invalid ("), p.stdout


def test_redis_down_exits_2(stack):
    cfg = harness.base_config(stack)
    stack.stop("redis")
    expect = "tor: redis 127.0.0.1:%d: " % stack.redis_port
    for args in (["status"], ["checkpoint", "show"],
                 ["checkpoint", "set", "--to", "0-1-5"]):
        p = cli(stack, cfg, *args)
        assert p.returncode == 2, (args, p.returncode, p.stdout, p.stderr)
        assert expect in p.stderr, (args, p.stderr)
        assert p.stdout == "", (args, p.stdout)


def test_mysql_down_set_exits_2(stack):
    tor = finished_run(stack)
    before = checkpoint_hash(stack, tor.group)
    file_, _ = stack.binlog_position()
    stack.stop("mariadb")
    for to in ("%s:4" % file_, "end"):
        p = cli(stack, tor.cfg_text, "checkpoint", "set", "--to", to)
        assert p.returncode == 2, (to, p.returncode, p.stdout, p.stderr)
        assert "tor: mysql 127.0.0.1:%d: " % stack.mysql_port in p.stderr, \
            (to, p.stderr)
        assert p.stdout == "", (to, p.stdout)
    assert checkpoint_hash(stack, tor.group) == before


def status_until(stack, cfg, want_rc, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        p = cli(stack, cfg, "status")
        if p.returncode == want_rc or time.monotonic() > deadline:
            return p
        time.sleep(0.2)


def test_status_shows_the_leader(stack):
    """Needs the HA relay: a running replica holds the lease."""
    tor = Tor(stack).start()
    p = status_until(stack, tor.cfg_text, 0)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr,
                               tor.log_tail())
    f = facts(p.stdout)
    assert f["leader"] == tor.name == "r1", p.stdout
    assert int(f["token"]) >= 1, p.stdout
    assert 0 < int(f["lease_ms_left"]) <= 3000, p.stdout
    assert tor.stop() == 0, tor.log_tail()
    p = cli(stack, tor.cfg_text, "status")
    assert p.returncode == 1 and facts(p.stdout)["leader"] == "none", \
        (p.returncode, p.stdout, p.stderr)


def test_checkpoint_set_makes_the_leader_step_down(stack):
    """Needs the HA relay: the leader steps down when `set` breaks its
    lease, and the next leadership (a higher token) starts at the new
    position and keeps the operator's checkpoint."""
    stack.sql("DROP TABLE IF EXISTS %s" % TABLE)
    stack.sql(harness.outbox_ddl(TABLE))
    topic_base = "cli_" + secrets.token_hex(3)
    tor = Tor(stack, outbox_overrides(topic_base)).start()
    p = status_until(stack, tor.cfg_text, 0)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr,
                               tor.log_tail())
    token = int(facts(p.stdout)["token"])
    insert_events(stack, [("order", "k1", b'{"n": 0}')], table=TABLE)
    wait_for(stack.brokers, topic_base + ".order", 1, timeout=60)
    file_, pos = stack.binlog_position()
    p = cli(stack, tor.cfg_text, "checkpoint", "set", "--to",
            "%s:%d" % (file_, pos))
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    set_token = int(facts(p.stdout)["checkpoint_token"])
    assert set_token > token, (p.stdout, token)
    p = status_until(stack, tor.cfg_text, 0)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr,
                               tor.log_tail())
    f = facts(p.stdout)
    assert int(f["token"]) > set_token, (p.stdout, set_token)
    assert f["checkpoint"] == "%s:%d" % (file_, pos), p.stdout
    assert tor.running(), tor.log_tail()
    assert tor.stop() == 0, tor.log_tail()


def test_json_output_has_the_same_facts(stack):
    """--json: one JSON object with the keys of the text output, numbers as
    numbers, absent facts null; the exit codes do not change."""
    cfg = harness.base_config(stack)
    p = cli(stack, cfg, "status", "--json")
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert json.loads(p.stdout) == {"group": harness.config_group(cfg),
                                    "leader": None, "checkpoint": None}, \
        p.stdout
    p = cli(stack, cfg, "checkpoint", "show", "--json")
    assert p.returncode == 1 and json.loads(p.stdout) == \
        {"checkpoint": None}, (p.returncode, p.stdout)

    tor = Tor(stack).start()
    p = status_until(stack, tor.cfg_text, 0)
    # The leader's first checkpoint may come after it leads: both outputs
    # are read once it is there.
    deadline = time.monotonic() + 20
    while facts(p.stdout)["checkpoint"] == "none" and \
            time.monotonic() < deadline:
        time.sleep(0.1)
        p = status_until(stack, tor.cfg_text, 0)
    text = facts(p.stdout)
    p = cli(stack, tor.cfg_text, "status", "--json")
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    j = json.loads(p.stdout)
    assert set(j) == set(text), (j, text)
    assert j["leader"] == "r1" and isinstance(j["token"], int) and \
        j["token"] >= 1, j
    assert isinstance(j["lease_ms_left"], int), j
    assert tor.stop() == 0, tor.log_tail()
    p = cli(stack, tor.cfg_text, "checkpoint", "show", "--json")
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    j = json.loads(p.stdout)
    assert set(j) == {"checkpoint", "checkpoint_gtid", "checkpoint_token",
                      "checkpoint_age_ms"}, j
    assert isinstance(j["checkpoint_token"], int) and \
        isinstance(j["checkpoint_age_ms"], int), j
    assert j["checkpoint_gtid"] is None or ":" not in j["checkpoint_gtid"]
    p = cli(stack, tor.cfg_text, "checkpoint", "set", "--to", "end",
            "--json")
    assert p.returncode == 2 and "usage" in p.stderr, (p.returncode,
                                                       p.stderr)


# ---------------------------------------------------------------------------
# checkpoint import: taking over the Go tor's position


def three_transactions(stack, topic_base):
    """Rows 0-8 in three transactions of three INSERTs each (three rows
    events each, as the Go tor saw them); returns the binlog file, the
    position after the first transaction and the End_log_pos of the second
    transaction's first rows event (where the Go tor would have saved)."""
    stack.sql("DROP TABLE IF EXISTS %s" % TABLE)
    stack.sql(harness.outbox_ddl(TABLE))
    stack.sql("FLUSH BINARY LOGS")
    ends = []
    for t in range(3):
        stack.sql_many([("INSERT INTO %s (aggregate_type, aggregate_id, "
                         "payload) VALUES ('order', 'k', %%s)" % TABLE,
                         [json.dumps({"n": 3 * t + i})]) for i in range(3)],
                       user="app")
        ends.append(stack.binlog_position())
    file_, after_first = ends[0]
    rows = stack.sql("SHOW BINLOG EVENTS IN '%s' FROM %d" % (file_,
                                                            after_first))
    inside = next(int(r[4]) for r in rows if r[2].startswith("Write_rows"))
    return file_, after_first, inside


def relayed(stack, cfg, topic, count):
    """Runs a tor from the group's checkpoint until count rows came; the
    n of each record on the topic."""
    tor = Tor(stack, cfg).start()
    recs = wait_for(stack.brokers, topic, count, timeout=60)
    time.sleep(1)
    assert tor.stop() == 0, tor.log_tail()
    return sorted(json.loads(r.value)["n"] for r in
                  harness.read_all(stack.brokers, topic))


def test_checkpoint_import_takes_the_go_tors_position(stack):
    """The Go tor's value {"name": file, "pos": n} at a transaction's end
    becomes the checkpoint as it is; one inside a transaction (it saves
    after each rows event) moves back to that transaction's start, which is
    published again whole.  The relay then publishes from there on, nothing
    before.  Its Redis may be another (--redis-host/--redis-port/--redis-db)."""
    topic_base = "imp_" + secrets.token_hex(3)
    file_, after_first, inside = three_transactions(stack, topic_base)
    cases = [("end", after_first, after_first, None),
             ("inside", inside, after_first, "5")]
    for what, go_pos, want, db in cases:
        cfg = harness.base_config(stack, **outbox_overrides(
            "%s_%s" % (topic_base, what)))
        value = json.dumps({"name": file_, "pos": go_pos})
        args = ["checkpoint", "import", "--go-tor-key", "gotor:" + what]
        if db is None:
            stack.redis().set("gotor:" + what, value)
        else:
            stack.redis(db=int(db)).set("gotor:" + what, value)
            args += ["--redis-host", "127.0.0.1", "--redis-port",
                     str(stack.redis_port), "--redis-db", db]
        p = cli(stack, cfg, *args)
        assert p.returncode == 0, (what, p.returncode, p.stdout, p.stderr)
        f = facts(p.stdout)
        assert f["checkpoint"] == "%s:%d" % (file_, want), (what, p.stdout)
        assert f["imported"] == "%s:%d" % (file_, go_pos), p.stdout
        assert f["leader"] == "asked to step down", p.stdout
        assert ("note" in f) == (go_pos != want), p.stdout
        cp = checkpoint_hash(stack, harness.config_group(cfg))
        assert (cp["file"], int(cp["pos"])) == (file_, want), cp
        got = relayed(stack, cfg, "%s_%s.order" % (topic_base, what), 6)
        assert got == list(range(3, 9)), (what, got)
        print("  %s: Go tor at %d -> checkpoint %s:%d, rows 3-8 relayed" % (
            what, go_pos, file_, want))


def test_checkpoint_import_refuses_what_is_not_a_go_tor_position(stack):
    tor = finished_run(stack)
    before = checkpoint_hash(stack, tor.group)
    file_, pos = stack.binlog_position()
    r = stack.redis()
    for value, says in [
            (None, "gotor:bad: no such key"),
            ("not json", "not the Go tor's position"),
            ('{"name": "%s", "pos": "4"}' % file_,
             "not the Go tor's position"),
            ('{"name": "%s", "pos": 4, "gtid": "x"}' % file_,
             "not the Go tor's position"),
            ('{"pos": 4}', "names no binlog file"),
            ('{"name": "%s", "pos": %d}' % (file_, pos - 1),
             "no event starts at %s:%d" % (file_, pos - 1)),
            ('{"name": "%s", "pos": %d}' % (file_, pos + 999),
             "beyond the end"),
            ('{"name": "binlog.000001", "pos": 4}',
             "no longer on the server")]:
        if value is None:
            r.delete("gotor:bad")
        else:
            r.set("gotor:bad", value)
        p = cli(stack, tor.cfg_text, "checkpoint", "import", "--go-tor-key",
                "gotor:bad")
        assert p.returncode == 1, (value, p.returncode, p.stdout, p.stderr)
        assert says in p.stderr, (value, p.stderr)
        assert p.stdout == "", (value, p.stdout)
    assert checkpoint_hash(stack, tor.group) == before
    p = cli(stack, tor.cfg_text, "checkpoint", "import")
    assert p.returncode == 2 and "usage" in p.stderr, p.stderr
    p = cli(stack, tor.cfg_text, "checkpoint", "import", "--go-tor-key", "k",
            "--redis-port", "x", "--redis-host", "h")
    assert p.returncode == 2 and "--redis-port: expected a number" in \
        p.stderr, p.stderr

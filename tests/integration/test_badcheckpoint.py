"""A garbage or tampered Redis checkpoint (DESIGN.md §1.5, §3): fields that
do not parse, fields missing, a position that is not one, a token that is
not a number or is past the largest token, a key of the wrong type, and,
with checkpoint.key_file set, a MAC that does not verify, is missing, or
was made with another key.

A replica that finds such a checkpoint must refuse it: exit 1 with an error
naming the key and what is wrong, publish nothing (a row waits in the
binlog after mysql.start, so a replica that fell back to mysql.start would
publish it), and leave the hash as it was for the operator to look at.
`tor status` says "checkpoint: invalid (<why>)" and `tor checkpoint show`
says the same and exits 2.  The decoder's every refusal is unit-tested in
tests/unit/test_checkpoint.c; this is the relay and the CLI around it.
"""

import os
import secrets
import tempfile

import harness
from harness import Tor, read_all, tor_cli
from test_cli import facts
from test_relay import insert_range, make_outbox, read_events


def cp_key(group):
    return "tor:{%s}:checkpoint" % group


def published(stack, name):
    return len(read_all(stack.brokers, name + ".order", timeout=10) +
               read_all(stack.brokers, name + ".invoice", timeout=10))


def snapshot(r, key):
    t = r.type(key)
    return t, (r.hgetall(key) if t == b"hash" else r.get(key))


def refused(stack, cfg, name, plant, why, table, n):
    """Plants a checkpoint (plant(redis, key)), inserts row n, starts a
    replica: it must halt naming the key and `why`, publish nothing and
    leave the key as planted; status and show must report it."""
    group = harness.config_group(cfg)
    key = cp_key(group)
    r = stack.redis()
    r.delete(key)
    plant(r, key)
    before = snapshot(r, key)
    count = published(stack, name)
    insert_range(stack, table, n, 1, 1)
    tor = Tor(stack, cfg).start()
    rc = tor.wait(20)
    lines = [ln for ln in tor.log_text().splitlines() if "halting:" in ln]
    assert rc == 1 and lines, "exit %s for %r:\n%s" % (rc, why,
                                                     tor.log_tail())
    assert "%s: %s" % (key, why) in lines[-1], (why, lines[-1])
    print("  " + lines[-1][lines[-1].index("halting:"):].rstrip('"'))
    assert published(stack, name) == count, \
        "a replica published from a refused checkpoint (%r)" % why
    assert snapshot(r, key) == before, \
        "the refused checkpoint was overwritten: %s -> %s" % (
            before, snapshot(r, key))
    lease = r.get("tor:{%s}:lease" % group)
    assert lease is None, "lease left behind for %r: %r" % (why, lease)
    p = tor_cli(["status"], cfg=cfg, stack=stack)
    assert p.returncode == 1, (why, p.returncode, p.stdout, p.stderr)
    assert facts(p.stdout).get("checkpoint") == "invalid (%s)" % why, \
        (why, p.stdout, p.stderr)
    p = tor_cli(["checkpoint", "show"], cfg=cfg, stack=stack)
    assert p.returncode == 2, (why, p.returncode, p.stdout, p.stderr)
    assert facts(p.stdout).get("checkpoint") == "invalid (%s)" % why, \
        (why, p.stdout, p.stderr)


def fields(**kw):
    def plant(r, key):
        r.hset(key, mapping=kw)
    return plant


def test_garbled_checkpoint_fields_are_refused(stack):
    name = "cp_garbled"
    table, ov = make_outbox(stack, name)
    cfg = harness.base_config(stack, **ov)
    file_, pos = stack.binlog_position()
    good = {"file": file_, "pos": str(pos), "gtid": "", "epoch": "3",
            "updated_ms": "1700000000000"}
    cases = [
        (dict(good, pos="12x"), "checkpoint field 'pos': not a number "
         "('12x')"),
        (dict(good, epoch="seven"), "checkpoint field 'epoch': not a "
         "number ('seven')"),
        (dict(good, epoch="-1"), "checkpoint field 'epoch': not a number "
         "('-1')"),
        # Past the largest token (and at Redis's largest integer): the
        # acquire must neither fail on it nor leave its lease 'pending'.
        (dict(good, epoch="9223372036854775807"), "checkpoint field "
         "'epoch': past the largest token (999999999999999999) "
         "('9223372036854775807')"),
        ({"pos": str(pos), "epoch": "3"}, "checkpoint field 'file': "
         "missing"),
        ({"file": file_, "epoch": "3"}, "checkpoint field 'pos': missing"),
        (dict(good, file="", pos="0"), "checkpoint names no position "
         "(fields 'file' and 'gtid' are both empty)"),
        (dict(good, file="", pos="0", gtid="garbage"), "checkpoint field "
         "'gtid': not a GTID list ('garbage')"),
        (dict(good, file="", pos="0", gtid="0-1-5,0-2-6"), "checkpoint "
         "field 'gtid': not a GTID list ('0-1-5,0-2-6')"),
        (dict(good, done="nowhere"), "checkpoint field 'done': not "
         "<file>:<pos> ('nowhere')"),
        (dict(good, rows="many"), "checkpoint field 'rows': not a number "
         "('many')"),
    ]
    for n, (h, why) in enumerate(cases):
        refused(stack, cfg, name, fields(**h), why, table, n)


def test_checkpoint_of_the_wrong_type_is_refused(stack):
    """A string where the hash should be: the lease is still taken (and
    not left 'pending'), the checkpoint refused by its key."""
    name = "cp_wrongtype"
    table, ov = make_outbox(stack, name)
    cfg = harness.base_config(stack, **ov)
    refused(stack, cfg, name, lambda r, key: r.set(key, "binlog.000001:4"),
            "not a checkpoint hash (the key holds another type)", table, 0)
    lease = stack.redis().get("tor:{%s}:lease" % harness.config_group(cfg))
    assert lease is None, "lease left behind: %r" % lease


def key_file(dirname, hexkey):
    path = os.path.join(dirname, "checkpoint-%s.key" % hexkey[:6])
    with open(path, "w") as f:
        f.write(hexkey + "\n")
    return path


def test_tampered_checkpoint_is_refused_with_a_key(stack):
    """checkpoint.key_file set: a real run writes a MAC'd checkpoint; a
    changed field, a missing mac, a mac of another key and a checkpoint
    written without a key are each refused."""
    name = "cp_mac"
    table, ov = make_outbox(stack, name)
    keys = tempfile.mkdtemp(prefix="keys-", dir=os.path.join(
        stack.run_dir, "tor-it"))
    mine = key_file(keys, secrets.token_hex(32))
    other = key_file(keys, secrets.token_hex(32))
    cfg = harness.base_config(stack, checkpoint={"interval_ms": 200,
                                                 "key_file": mine}, **ov)
    tor = Tor(stack, cfg).start()
    tor.wait_log("starting at", timeout=30)
    insert_range(stack, table, 0, 3, 3)
    read_events(stack, name, 3, timeout=30)
    assert tor.stop() == 0, tor.log_tail()
    r = stack.redis()
    group = harness.config_group(cfg)
    signed = {k.decode(): v.decode()
              for k, v in r.hgetall(cp_key(group)).items()}
    assert len(signed.get("mac", "")) == 64, signed

    def written(h):
        return fields(**h)

    unsigned = {k: v for k, v in signed.items() if k != "mac"}
    no_mac = "no mac field, but a checkpoint key is configured (written " \
        "by a replica without the key, or tampered with)"
    bad_mac = "mac does not verify (tampered with, or written with " \
        "another key)"
    cases = [
        (dict(signed, pos=str(int(signed["pos"]) - 1)), bad_mac),
        (dict(signed, epoch=str(int(signed["epoch"]) + 1)), bad_mac),
        (dict(signed, mac="0" * 64), bad_mac),
        (unsigned, no_mac),
    ]
    for n, (h, why) in enumerate(cases):
        refused(stack, cfg, name, written(h), why, table, 10 + n)
    # The genuine checkpoint read with another key.
    other_cfg = cfg.replace(mine, other)
    refused(stack, other_cfg, name, written(signed), bad_mac, table, 20)
    # ...and the genuine one with the right key resumes: the rows inserted
    # while every replica refused are published now.
    r.delete(cp_key(group))
    r.hset(cp_key(group), mapping=signed)
    tor = Tor(stack, cfg).start()
    tor.wait_log("resuming from the checkpoint", timeout=30)
    by_n, _ = read_events(stack, name, 3 + len(cases) + 1, timeout=30)
    assert tor.stop() == 0, tor.log_tail()
    assert sorted(by_n) == [0, 1, 2] + [10 + n for n in range(len(cases))] \
        + [20], sorted(by_n)
    assert all(len(v) == 1 for v in by_n.values()), \
        {n: len(v) for n, v in by_n.items()}

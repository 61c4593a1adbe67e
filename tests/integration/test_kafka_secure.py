"""tor against a secured Kafka: TLS and SASL, configured through
kafka.properties alone (DESIGN.md §3, Transport: every Kafka client tor makes
takes kafka.properties).

The module runs a Kafka node of its own: <run dir>/secure, ports from the
stack's + 100, a SASL_SSL listener with a certificate for 127.0.0.1 and
localhost from a CA made here with openssl.  It starts at the first test
that needs it and is stopped once after the run (harness.at_run_end).  tor
is given only the SASL_SSL address; the tests read back through the node's
plaintext listener.

A takeover reads what Kafka holds through the same listener: the
partitions' tails (de-duplication, idempotent mode) and the checkpoint
topic's position records (both modes).  Those readers must authenticate as
the producer does, or a successor never starts.  A wrong password or a CA
that did not sign the broker's certificate ends tor (exit 1) with an error
naming the broker and the failure.  The password never shows in a log, an
error or --check-config.

Mechanism: PLAIN over TLS (Confluent Cloud's).  librdkafka before 2.6.1
(Debian 12 has 2.0.2) cannot authenticate with SCRAM to Kafka 4.x, which
checks the SCRAM nonce strictly (librdkafka's client-final-message repeats
the client nonce; fixed in 2.6.1), whatever the password:
test_scram_on_kafka_4 shows what tor says then.
"""

import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import types

from confluent_kafka import libversion

import harness
from harness import Tor, tor_cli
from test_ha import HA, log_lines, stop_all, wait_leading
from test_relay import assert_exactly, insert_range, make_outbox, read_events

# Producer-only properties an operator tunes; tor's readers must take the
# rest of kafka.properties without a warning about these.
PRODUCER_TUNING = ["linger.ms=10", "compression.type=lz4",
                   "batch.num.messages=5000", "message.timeout.ms=120000"]

# librdkafka's warning for a property of the other kind of client.
WRONG_CLIENT = r"is a (producer|consumer) property and will be ignored"


def openssl(cwd, *args):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   capture_output=True, timeout=60)


def make_certs(d):
    """In d: ca.pem (a CA), server.pem (a key and its certificate for
    127.0.0.1 and localhost, signed by the CA) and other-ca.pem (a CA that
    signed nothing of the broker's)."""
    for ca in ("ca", "other-ca"):
        openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2",
                "-subj", "/CN=tor test %s" % ca)
    openssl(d, "req", "-newkey", "rsa:2048", "-nodes", "-keyout",
            "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    with open(os.path.join(d, "san.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(d, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem",
            "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt",
            "-days", "2", "-extfile", "san.cnf")
    with open(os.path.join(d, "server.pem"), "w") as out:
        for part in ("server.key", "server.crt"):
            with open(os.path.join(d, part)) as f:
                out.write(f.read())


class SecureKafka:
    """One Kafka node with a SASL_SSL listener, user "tor"."""

    def __init__(self, stack):
        self.run_dir = os.path.join(stack.run_dir, "secure")
        self.port = int(stack.env["TOR_KAFKA_PORT"]) + 100
        self.certs = tempfile.mkdtemp(prefix="tor-tls-")
        self.password = "pw-" + secrets.token_hex(8)
        self.ca = os.path.join(self.certs, "ca.pem")
        self.other_ca = os.path.join(self.certs, "other-ca.pem")
        self.brokers = self.plain_brokers = None

    def _stack_sh(self, *args):
        env = dict(os.environ, TOR_RUN_DIR=self.run_dir,
                   TOR_KAFKA_PORT=str(self.port), TOR_KAFKA_NODES="1",
                   TOR_KAFKA_SASL_SSL=self.certs,
                   TOR_KAFKA_SCRAM_USERS="tor:" + self.password,
                   TOR_BROKER_TOPICS="")
        p = subprocess.run([harness.STACK_SH] + list(args), env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=240)
        if p.returncode != 0:
            raise harness.StackError("secure: stack.sh %s failed (exit %d):"
                                     "\n%s" % (" ".join(args), p.returncode,
                                               p.stdout))
        return p.stdout

    def start(self):
        make_certs(self.certs)
        # The users are made when the storage is formatted: a fresh one.
        self._stack_sh("destroy")
        t0 = time.monotonic()
        self._stack_sh("start", "kafka")
        print("  secured Kafka started in %.1f s" % (time.monotonic() - t0))
        env = harness.read_env_file(os.path.join(self.run_dir, "env"))
        self.brokers = env["TOR_KAFKA_SASL_SSL_BROKERS"]
        self.plain_brokers = env["TOR_KAFKA_BROKERS"]

    def stop(self):
        try:
            self._stack_sh("stop", "kafka")
        finally:
            shutil.rmtree(self.certs, ignore_errors=True)

    def reader(self):
        """What read_events needs of a stack: this node's plaintext
        listener, for the test's own reads."""
        return types.SimpleNamespace(brokers=self.plain_brokers)

    def kafka_section(self, password=None, ca=None, mechanism="PLAIN"):
        """tor's kafka section: the SASL_SSL address, security by
        properties only, some producer tuning among them."""
        return {"brokers": self.brokers, "properties": [
            "security.protocol=SASL_SSL",
            "sasl.mechanisms=" + mechanism,
            "sasl.username=tor",
            "sasl.password=" + (password or self.password),
            "ssl.ca.location=" + (ca or self.ca)] + PRODUCER_TUNING}


_kafka = []


def secure_kafka(stack):
    """The module's secured node, started by the first test that asks."""
    if not _kafka:
        k = SecureKafka(stack)
        harness.at_run_end(k.stop)
        k.start()
        _kafka.append(k)
    return _kafka[0]


def assert_clean_log(kafka, tors, *secrets_):
    """No password and no warning about a property of the other kind of
    client in any of the replicas' logs."""
    for t in tors:
        text = t.log_text()
        for s in (kafka.password,) + secrets_:
            assert s not in text, "%s's log holds a password:\n%s" % (
                t.name, "\n".join(l for l in text.splitlines() if s in l))
        bad = [l for l in text.splitlines() if re.search(WRONG_CLIENT, l)]
        assert not bad, "%s: %s" % (t.name, "\n".join(bad[:5]))


def error_lines(tor, *needles):
    """The level=error lines of tor's log that hold every needle."""
    return [l for l in tor.log_text().splitlines()
            if " level=error " in l and all(n in l for n in needles)]


def all_once(kafka, name, total, running, everyone):
    """Reads until events 0..total-1 are in, once more a moment later (a
    duplicate may come late), stops the running replicas; then each event
    must be there once and every replica's log clean."""
    read_events(kafka.reader(), name, total, timeout=60)
    time.sleep(0.5)
    by_n, _ = read_events(kafka.reader(), name, total, timeout=60)
    stop_all(running)
    assert_exactly(by_n, total, name)
    assert_clean_log(kafka, everyone)


# ---------------------------------------------------------------------------
# tests


def test_takeover_reads_tails_and_positions_through_sasl_ssl(stack):
    """Idempotent mode.  r1 relays 300 rows and writes no checkpoint meanwhile
    (interval one minute), so after its kill -9 the standby r2 replays all
    300 and must find each in its partition (the tail reader): 300 rows not
    published again.  Then r2 stops, the Redis checkpoint is
    deleted and r3 resumes from Kafka's copy (the position reader).  Every
    event once."""
    kafka = secure_kafka(stack)
    view = kafka.reader()
    name = "sec_idem"
    table, ov = make_outbox(stack, name)
    ov["kafka"] = kafka.kafka_section()
    cfg = harness.base_config(stack, ha=dict(HA),
                              checkpoint={"interval_ms": 60000}, **ov)
    r1 = Tor(stack, cfg, name="r1").start()
    wait_leading([r1], timeout=10)
    # The position reader is the first thing a leader asks.
    r1.wait_log("starting at|resuming from", timeout=30)
    r2 = Tor(stack, cfg, name="r2").start()
    insert_range(stack, table, 0, 300, 30)
    read_events(view, name, 300, timeout=60)
    since = {r2: r2.log_size()}
    r1.kill9()
    wait_leading([r2], since=since, timeout=10)
    insert_range(stack, table, 300, 100, 20)
    m = r2.wait_log(r"de-duplication: (\d+) replayed rows not published "
                    r"again", timeout=60, since=since[r2])
    tails = log_lines(r2, r"de-duplication: (\S+): read (\d+) partitions in "
                          r"(\d+) ms: (\d+) hold rows", since[r2])
    print("  takeover: %s; %s" % (m.group(0), "; ".join(
        "%s: %s of %s partitions in %s ms" % (t[1].group(1), t[1].group(4),
                                            t[1].group(2), t[1].group(3))
        for t in tails)))
    assert int(m.group(1)) == 300, m.group(0)
    assert len(tails) == 2 and all(int(t[1].group(4)) > 0 for t in tails), \
        [t[3] for t in tails]
    assert not any("could not be read" in t[3] for t in tails), tails
    read_events(view, name, 400, timeout=60)
    assert r2.stop() == 0, r2.log_tail()
    stack.redis().delete("tor:{%s}:checkpoint" % r2.group)
    r3 = Tor(stack, cfg, name="r3").start()
    r3.wait_log("resuming from Kafka's copy of the checkpoint", timeout=30)
    assert "Redis has no checkpoint for group" in r3.log_text()
    insert_range(stack, table, 400, 50, 10)
    all_once(kafka, name, 450, [r3], [r1, r2, r3])


def test_transactional_takeover_resumes_from_kafka_through_sasl_ssl(stack):
    """Transactional mode: a leader killed between its third Kafka commit
    and its Redis write; the standby reads the committed position record
    through SASL_SSL and resumes there.  Exactly once for read_committed."""
    kafka = secure_kafka(stack)
    name = "sec_tx"
    table, ov = make_outbox(stack, name)
    ov["kafka"] = dict(kafka.kafka_section(), mode="transactional")
    cfg = harness.base_config(stack, ha=dict(HA),
                              checkpoint={"interval_ms": 200}, **ov)
    doomed = Tor(stack, cfg, name="r1",
                 env={"TOR_TEST_CRASH_AFTER_KAFKA_COMMIT": "3"}).start()
    wait_leading([doomed], timeout=10)
    doomed.wait_log("starting at|resuming from", timeout=30)
    heir = Tor(stack, cfg, name="r2").start()
    # Bursts until the third Kafka commit of rows: bursts that come while
    # a topic's partition count is being looked up share a commit.
    n, deadline = 0, time.monotonic() + 30
    while doomed.running() and time.monotonic() < deadline:
        insert_range(stack, table, n, 50, 50)
        n += 50
        time.sleep(0.3)
    assert doomed.wait(10) == -9, doomed.log_tail()
    wait_leading([heir], timeout=10)
    m = heir.wait_log(r"resuming from Kafka's copy of the checkpoint.*",
                      timeout=30)
    print("  heir: %s (%d rows before the crash)" % (m.group(0), n))
    insert_range(stack, table, n, 100, 20)
    all_once(kafka, name, n + 100, [heir], [doomed, heir])


def refused(stack, kafka, section, *needles):
    """Runs a replica with kafka section `section`: it must exit 1 within a
    minute with an error line naming the broker and holding every needle.
    Returns it."""
    cfg = harness.base_config(stack, ha=dict(HA), kafka=section)
    t = Tor(stack, cfg, name="r1").start()
    t0 = time.monotonic()
    rc = t.wait(60)
    lines = error_lines(t, "sasl_ssl://" + kafka.brokers, *needles)
    print("  exit %s after %.1f s: %s" % (rc, time.monotonic() - t0,
                                         lines[:1]))
    assert rc == 1, t.log_tail()
    assert lines, t.log_tail()
    return t


def test_wrong_password_ends_tor_naming_sasl_and_the_broker(stack):
    """A password the broker refuses: exit 1 and an error line naming SASL
    authentication and the broker, soon; no password in the log."""
    kafka = secure_kafka(stack)
    wrong = "wrong-" + secrets.token_hex(6)
    t = refused(stack, kafka, kafka.kafka_section(password=wrong),
                "SASL authentication")
    assert_clean_log(kafka, [t], wrong)


def test_wrong_ca_ends_tor_naming_tls_and_the_broker(stack):
    """The broker's certificate not signed by ssl.ca.location's CA: exit 1
    and an error line naming the certificate check and the broker."""
    kafka = secure_kafka(stack)
    t = refused(stack, kafka, kafka.kafka_section(ca=kafka.other_ca),
                "certificate verify failed")
    assert_clean_log(kafka, [t])


def test_scram_on_kafka_4(stack):
    """SCRAM-SHA-512 with the right password: with librdkafka 2.6.1 or
    later tor relays; before, Kafka 4 refuses every attempt and tor ends
    with the SASL error and says which librdkafka it needs."""
    kafka = secure_kafka(stack)
    section = kafka.kafka_section(mechanism="SCRAM-SHA-512")
    version, number = libversion()
    if number < 0x020601ff:
        t = refused(stack, kafka, section, "SASL authentication",
                    "librdkafka " + version, "2.6.1")
        assert_clean_log(kafka, [t])
        return
    name = "sec_scram"
    table, ov = make_outbox(stack, name)
    ov["kafka"] = section
    t = Tor(stack, harness.base_config(stack, ha=dict(HA), **ov),
            name="r1").start()
    wait_leading([t], timeout=10)
    t.wait_log("starting at|resuming from", timeout=30)
    insert_range(stack, table, 0, 30, 10)
    all_once(kafka, name, 30, [t], [t])
    print("  librdkafka %s: SCRAM-SHA-512 relays" % version)


def test_password_from_a_file_or_the_environment(stack):
    """sasl.password kept out of tor.cfg: in kafka.properties_file (mode
    0600, so no warning), or in TOR_KAFKA_SASL_PASSWORD, which wins over the
    file's.  r1 takes the file's right password, r2 a wrong one in the file
    and the right one in the environment: both relay through SASL_SSL, no
    password in a log, and --check-config shows the file's entries
    masked."""
    kafka = secure_kafka(stack)
    name = "sec_file"
    table, ov = make_outbox(stack, name)
    section = kafka.kafka_section()
    section["properties"] = [p for p in section["properties"]
                             if not p.startswith("sasl.password=")]
    d = tempfile.mkdtemp(prefix="sec-file-", dir=harness._work_dir(stack))
    try:
        pf = os.path.join(d, "kafka.properties")
        wrong = "wrong-" + secrets.token_hex(6)

        def write_file(password):
            with open(pf, "w") as f:
                f.write("# the cluster's credentials\n\nsasl.password=%s\n"
                        % password)
            os.chmod(pf, 0o600)

        section["properties_file"] = pf
        ov["kafka"] = section
        cfg = harness.base_config(stack, ha=dict(HA), **ov)
        write_file(kafka.password)
        p = tor_cli(["--check-config"], cfg=cfg)
        assert p.returncode == 0, p.stderr
        assert kafka.password not in p.stdout + p.stderr, p.stdout
        assert '# from properties_file: ( "sasl.password=********" );' in \
            p.stdout, p.stdout
        assert "# warning: kafka.properties_file" not in p.stdout, p.stdout
        r1 = Tor(stack, cfg, name="r1").start()
        wait_leading([r1], timeout=10)
        r1.wait_log("starting at|resuming from", timeout=30)
        insert_range(stack, table, 0, 30, 10)
        read_events(kafka.reader(), name, 30, timeout=60)
        assert r1.stop() == 0, r1.log_tail()

        write_file(wrong)
        r2 = Tor(stack, cfg, name="r2",
                 env={"TOR_KAFKA_SASL_PASSWORD": kafka.password}).start()
        wait_leading([r2], timeout=10)
        r2.wait_log("resuming from", timeout=30)
        insert_range(stack, table, 30, 30, 10)
        all_once(kafka, name, 60, [r2], [r1, r2])
        assert_clean_log(kafka, [r1, r2], wrong)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_secrets_are_never_printed(stack):
    """Values of properties named *password*, *secret*, *jaas* or *key.pem*
    (the private key itself) are masked
    by --check-config, left out of the configuration's errors and of the
    error librdkafka gives for a property it does not know."""
    hidden = {n: "s-%s-%s" % (n, secrets.token_hex(4)) for n in
              ("sasl.password", "ssl.key.password",
               "sasl.oauthbearer.client.secret", "Sasl.Jaas.Config",
               "ssl.key.pem")}
    props = ["%s=%s" % kv for kv in hidden.items()] + ["linger.ms=7"]
    p = tor_cli(["--check-config"], cfg={"kafka": {"properties": props}},
                stack=stack)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    for name, value in hidden.items():
        assert value not in out, "--check-config shows %s:\n%s" % (name,
                                                                   out)
        assert '"%s=' % name in out, out
    assert '"linger.ms=7"' in out, out
    # A malformed entry: the whole of it may be the secret.
    for bad in ("sasl.password %s" % hidden["sasl.password"],
                "sasl.password =%s" % hidden["sasl.password"]):
        p = tor_cli(["--check-config"], cfg={"kafka": {"properties": [bad]}},
                    stack=stack)
        out = p.stdout + p.stderr
        assert p.returncode == 2, out
        assert "kafka.properties" in out and \
            hidden["sasl.password"] not in out, out
    # A Java client's sasl.jaas.config, which librdkafka does not know.
    jaas = 'sasl.jaas.config=org.apache.kafka.common.security.plain.' \
        'PlainLoginModule required username="tor" password="%s";' % \
        hidden["sasl.password"]
    t = Tor(stack, {"kafka": {"properties": [jaas]}}, name="r1").start()
    assert t.wait(30) == 1, t.log_tail()
    text = t.log_text()
    assert "sasl.jaas.config" in text, text
    assert hidden["sasl.password"] not in text, text

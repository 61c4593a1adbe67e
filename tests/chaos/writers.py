"""The chaos runner's writers: services writing outbox rows at a steady rate.

Each writer is a thread with its own MySQL connection and its own keys (so a
key's rows are committed by one connection, one after the other).  What a
writer commits is decided by its seeded random source: single-row and
multi-row transactions, now and then a big one of `big_rows` rows, two
aggregate types, payloads of varied size (empty, a few bytes, a few KB,
binary, NULL now and then).  A writer that loses its connection (MySQL
killed, restarted) waits and reconnects; whether a transaction whose COMMIT
failed was committed is MySQL's to say, and the verifier asks MySQL.
"""

import random
import threading
import time
import uuid

import pymysql


class Writer(threading.Thread):
    def __init__(self, index, seed, mysql, table, columns, types, rate,
                 big_every_s=0, big_rows=10000, keys=50, stop=None):
        super().__init__(name="writer-%d" % index, daemon=True)
        self.index = index
        self.rng = random.Random("%s/%d" % (seed, index))
        self.mysql = mysql
        self.table = table
        self.columns = columns
        self.types = list(types)
        self.rate = rate                    # rows per second, on average
        self.big_every_s = big_every_s
        self.big_rows = big_rows
        self.keys = ["w%d-k%d" % (index, i) for i in range(keys)]
        self.stop_event = stop or threading.Event()
        self.committed_txns = 0
        self.rows_sent = 0
        self.errors = 0
        self.last_error = None
        self.conn = None

    # -- content --

    def payload(self):
        r = self.rng.random()
        if r < 0.02:
            return None                     # a tombstone
        if r < 0.05:
            return b""
        if r < 0.15:
            return bytes(self.rng.getrandbits(8) for _ in range(
                self.rng.randint(1, 64)))   # binary, not UTF-8
        if r < 0.20:
            return ("x" * self.rng.randint(1000, 6000)).encode()
        return ('{"w":%d,"n":%d,"pad":"%s"}' % (
            self.index, self.rows_sent, "p" * self.rng.randint(0, 120))
        ).encode()

    def row(self):
        return (self.rng.choice(self.keys), self.rng.choice(self.types),
                self.payload())

    # -- MySQL --

    def _connect(self):
        self.conn = pymysql.connect(autocommit=False, connect_timeout=5,
                                    read_timeout=30, write_timeout=30,
                                    **self.mysql)

    def _insert(self, rows):
        c = self.columns
        sql = "INSERT INTO %s (%s, %s, %s) VALUES (%%s, %%s, %%s)" % (
            self.table, c["key"], c["type"], c["payload"])
        if c.get("range", c["id"]) != c["id"]:
            # The event id is not the row's auto-increment: give it one.
            sql = "INSERT INTO %s (%s, %s, %s, %s) VALUES (%%s, %%s, %%s, " \
                "%%s)" % (self.table, c["key"], c["type"], c["payload"],
                          c["id"])
            rows = [r + (str(uuid.UUID(int=self.rng.getrandbits(128),
                                        version=4)),) for r in rows]
        with self.conn.cursor() as cur:
            if len(rows) == 1:
                cur.execute(sql, rows[0])
            else:
                # One multi-row INSERT per chunk: several ROWS events, and
                # one statement's rows in one event where they fit.
                for i in range(0, len(rows), 500):
                    cur.executemany(sql, rows[i:i + 500])
        self.conn.commit()

    def transaction(self, now, last_big):
        if self.big_every_s and now - last_big >= self.big_every_s:
            return [self.row() for _ in range(self.big_rows)], True
        r = self.rng.random()
        n = 1 if r < 0.6 else self.rng.randint(2, 50)
        return [self.row() for _ in range(n)], False

    def run(self):
        start = time.monotonic()
        last_big = start - self.rng.uniform(0, self.big_every_s or 1) / 2
        sent_at = start
        while not self.stop_event.is_set():
            now = time.monotonic()
            rows, big = self.transaction(now, last_big)
            try:
                if self.conn is None:
                    self._connect()
                self._insert(rows)
                self.committed_txns += 1
                self.rows_sent += len(rows)
                if big:
                    last_big = now
            except pymysql.Error as e:
                self.errors += 1
                self.last_error = str(e)
                try:
                    if self.conn is not None:
                        self.conn.close()
                except pymysql.Error:
                    pass
                self.conn = None
                self.stop_event.wait(0.5)
                continue
            # Steady rate on average: a big transaction is not paid back.
            if not big:
                sent_at += len(rows) / self.rate
                delay = sent_at - time.monotonic()
                if delay > 0:
                    self.stop_event.wait(delay)
                elif delay < -2:
                    sent_at = time.monotonic()
        if self.conn is not None:
            try:
                self.conn.close()
            except pymysql.Error:
                pass

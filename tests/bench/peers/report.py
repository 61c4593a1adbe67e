"""The table and the chart of `make bench-peers` from bench_peers.py's
results.json: prints the table, writes <docs>/peers.md and <docs>/peers.png
(matplotlib, Debian's python3-matplotlib, which the Makefile's bench-peers
path installs).  Of an existing peers.md only the part between the two
BEGIN/END comment lines is rewritten: the prose around it is written by
hand from what was observed.

    report.py results.json DOCS_DIR [SECONDS_IN_ALL]
"""

import json
import os
import re
import subprocess
import sys

LABELS = {"tor-1": "tor, 1 replica", "tor-3": "tor, 3 replicas",
          "debezium-file": "Debezium Server, file offsets",
          "debezium-redis": "Debezium Server, Redis offsets",
          "go-tor": "the Go tor"}
BEGIN = "<!-- BEGIN: written by make bench-peers (report.py) -->"
END = "<!-- END: written by make bench-peers -->"
ORDER = ["tor-1", "tor-3", "debezium-file", "debezium-redis", "go-tor"]


def num(x, f="{:,.0f}"):
    return "-" if x is None else f.format(x)


def flow(m, kind):
    if m[kind + "_never"]:
        return "did not come back (%d of %d runs)" % (
            m[kind + "_never"], m["runs"][kind])
    return "%s (%s)" % (num(m[kind + "_flow"], "{:.2f}"),
                        num(m.get(kind + "_pause"), "{:.2f}"))


def lost_wipe(m):
    """Rows lost to the emptied store, and apart those skipped at the
    phase's start because another peer's FLUSHALL had emptied this one's
    store earlier in the run."""
    start = m.get("wipe_lost_start") or 0
    return num(m["wipe_lost"]) + (" (+%s at its start)" % num(start)
                                  if start else "")


def rows_of(res):
    names = [n for n in ORDER if n in res["summary"] or n in res["absent"]]
    names += [n for n in res["summary"] if n not in names]
    return names


def tables(res):
    s, absent = res["summary"], res["absent"]
    ref = s.get("tor-1", {}).get("thru_rate")
    out = []
    out.append("| peer | backlog events/s | ratio to tor, 1 replica | "
               "events/s from the first message | CPU us/event | peak RSS "
               "MiB | latency p50 / p99 ms (inserts/s reached) |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    for n in rows_of(res):
        if n in absent:
            out.append("| %s | not run: %s | | | | | |" % (
                LABELS.get(n, n), absent[n]))
            continue
        m = s[n]
        ratio = (m["thru_rate"] / ref if ref and m["thru_rate"] else None)
        out.append("| %s | %s | %s | %s | %s | %s | %s / %s (%s) |" % (
            LABELS.get(n, n), num(m["thru_rate"]), num(ratio, "{:.2f}"),
            num(m["thru_steady"]), num(m["thru_cpu_us"], "{:.1f}"),
            num(m["thru_rss"]),
            num(m["lat_p50"], "{:.1f}"), num(m["lat_p99"], "{:.1f}"),
            num(m.get("lat_rate"))))
    out.append("")
    out.append("| peer | kill -9: flow again s (longest pause) | lost | "
               "duplicated | SIGTERM + restart: flow again s (longest "
               "pause) | lost | duplicated | "
               "store emptied: how | lost | published twice | older rows "
               "again |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for n in rows_of(res):
        if n in absent:
            out.append("| %s | not run | | | | | | | | | |" %
                       LABELS.get(n, n))
            continue
        m = s[n]
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
                   % (LABELS.get(n, n), flow(m, "kill"), num(m["kill_lost"]),
                      num(m["kill_dup"]), flow(m, "term"),
                      num(m["term_lost"]), num(m["term_dup"]),
                      m["wipe_how"] or "-", lost_wipe(m),
                      num(m["wipe_dup"]), num(m["wipe_foreign"])))
    return out


def per_run(res):
    """Each run's figures, for the record."""
    out = []
    for n in res["peers"]:
        r = res["raw"][n]
        thru = ", ".join(num(x["rate"]) if x else "-" for x in r["thru"])
        lat = ", ".join("%.1f/%.1f at %s/s" % (x["p50"], x["p99"],
                                                num(x["rate"])) if x else "-"
                        for x in r["lat"])
        faults = []
        for kind in ("kill", "term", "wipe"):
            faults.append("%s [%s]" % (kind, ", ".join(
                ("%s s %d%s/%d/%d" % (
                    num(x["flow_s"], "{:.2f}"), x["lost"],
                    "+%d" % x["lost_start"] if x.get("lost_start") else "",
                    x["dup"], x["foreign"])) if x else "-"
                for x in r[kind])))
        out.append("- %s: events/s [%s]; latency p50/p99 ms [%s]; %s" % (
            LABELS.get(n, n), thru, lat, "; ".join(faults)))
    return out


def versions():
    """What the stack ran, as the machine tells it."""
    def first_line(cmd):
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               timeout=20)
            return p.stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    maria = first_line(["mariadbd", "--version"])
    redis = first_line(["redis-server", "--version"])
    m = re.search(r"Ver (\S+?)-MariaDB", maria)
    r = re.search(r"v=(\S+)", redis)
    return {"mariadb": "MariaDB " + (m.group(1) if m else "?"),
            "redis": "Redis " + (r.group(1) if r else "?"),
            "tor": first_line(["git", "log", "-1", "--format=%h %cs"])}


def write_md(res, path, seconds):
    v = versions()
    loads = res["loads"]
    lines = [
        "Written by `make bench-peers` (tests/bench/peers/) on %s: every "
        "peer on the same machine (%d cores), in turn, against the same "
        "stack (deploy/local/stack.sh: %s; %s; Apache Kafka 4.1.2, one "
        "KRaft node), the same outbox table and the same load.  Medians of "
        "%d runs; the order of the peers turns each run.  tor at commit %s."
        % (res["when"], os.cpu_count() or 0, v["mariadb"], v["redis"],
           res["runs"], v["tor"]),
        "",
        "Load average (1, 5, 15 min) at the start and after each run: %s "
        "(other work shared the machine)." % "; ".join(
            "%.2f %.2f %.2f" % tuple(x) for x in loads),
        "",
    ]
    lines += tables(res)
    lines += [
        "",
        "![throughput and kill -9](peers.png)",
        "",
        "## What each figure is",
        "",
        "- **backlog events/s**: %s rows (~200 bytes, 1,000 a transaction) "
        "inserted while the relay was down; from the relay's process start "
        "until the topic's high watermarks add up to all of them (acks=all: "
        "every message acknowledged).  The JVM's start is inside the "
        "figure, as tor's is; *from the first message* leaves the start "
        "out (rows / (last - first message))." % "{:,}".format(res["rows"]),
        "- **CPU us/event, peak RSS**: user+system CPU of the relay process "
        "(tor, 3 replicas: the leader's) over the same span, divided by the "
        "rows; its VmHWM.",
        "- **latency**: single-row autocommit inserts, one connection, paced "
        "at %d rows/s for %g s (on a busy machine MariaDB may not take them "
        "that fast: the rate reached is in brackets); commit -> arrival at "
        "a consumer (fetch.wait.max.ms 5)."
        % (res["lat_rate"], res["lat_seconds"]),
        "- **kill -9 / SIGTERM + restart**: rows at %d/s; the relay process "
        "(tor, 3 replicas: the leader) is signalled and started again as "
        "soon as it exited (a supervisor's restart); *flow again* is the "
        "signal -> the first arrival of a row committed after the old "
        "process exited, and in "
        "brackets the longest time without an arrival from the signal on "
        "(a relay that drains on SIGTERM keeps rows flowing for a while, "
        "then leaves a gap while it restarts); *lost* "
        "is rows committed and never read back after a drain; *duplicated* "
        "is arrivals beyond the first of a row." % res["fault_rate"],
        "- **store emptied**: the relay stopped (SIGTERM, every replica), "
        "its position store emptied (how: the column), down %g s while rows "
        "go on at %d/s, started again; *older rows again* counts rows of "
        "other phases that stand in a partition of this phase's topic after "
        "the first of this phase's rows there (by offset): rows the relay "
        "had passed, published again (a replay from further back).  Lost "
        "and duplicated are the phase's own rows."
        % (res["down_s"], res["fault_rate"]),
        "",
        "## Each peer's settings",
        "",
    ]
    for n in res["peers"]:
        lines.append("- **%s**: %s" % (LABELS.get(n, n),
                                       res["settings"][n]))
    for n, why in res["absent"].items():
        lines.append("- **%s**: not run: %s" % (LABELS.get(n, n), why))
    if "go-tor" in res["absent"]:
        lines.append("- **Interop with the Go tor** (the Go tor relays part "
                     "of an outbox, `tor checkpoint import --go-tor-key` "
                     "takes its position, tor relays the rest): not run, "
                     "for the same reason.")
    lines += [
        "",
        "Debezium Server's configuration is "
        "tests/bench/peers/debezium-server.properties; nothing of "
        "Debezium's or the Go tor's code is in this repository (run.sh "
        "fetches them into build/peers).",
        "",
        "## Each run",
        "",
        "(events/s; latency p50/p99; per fault: flow again s, "
        "lost/duplicated/older rows again; +N: rows skipped at the phase's "
        "start, its store emptied by another peer's FLUSHALL before)",
        "",
    ]
    lines += per_run(res)
    lines += ["", "The bench took %d s in all (fetches included)." %
              seconds if seconds else ""]
    gen = BEGIN + "\n" + "\n".join(lines) + "\n" + END
    try:
        with open(path) as f:
            old = f.read()
    except FileNotFoundError:
        old = ""
    if BEGIN in old and END in old:
        text = old[:old.index(BEGIN)] + gen + old[old.index(END) + len(END):]
    else:
        text = "# tor beside its peers\n\n" + gen + "\n"
    with open(path, "w") as f:
        f.write(text)


def chart(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = rows_of(res)
    s, absent = res["summary"], res["absent"]
    labels = [LABELS.get(n, n).replace(", ", ",\n") for n in names]
    colors = ["#2b6cb0" if n.startswith("tor") else "#c05621"
              for n in names]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    rates = [0 if n in absent else (s[n]["thru_rate"] or 0) for n in names]
    a.bar(range(len(names)), rates, color=colors)
    for i, n in enumerate(names):
        a.text(i, rates[i], "not run" if n in absent else
               num(s[n]["thru_rate"]), ha="center", va="bottom", fontsize=8)
    a.set_xticks(range(len(names)))
    a.set_xticklabels(labels, fontsize=7)
    a.set_title("%s-row backlog, events/s (median of %d)" % (
        "{:,}".format(res["rows"]), res["runs"]), fontsize=10)
    a.set_ylabel("events/s")

    flows = [0 if n in absent or s[n]["kill_flow"] is None
             else s[n]["kill_flow"] for n in names]
    b.bar(range(len(names)), flows, color=colors)
    for i, n in enumerate(names):
        if n in absent:
            note = "not run"
        elif s[n]["kill_never"]:
            note = "did not\ncome back"
        else:
            note = "%.2f s\nlost %s, dup %s" % (
                flows[i], num(s[n]["kill_lost"]), num(s[n]["kill_dup"]))
        b.text(i, flows[i], note, ha="center", va="bottom", fontsize=7)
    b.set_xticks(range(len(names)))
    b.set_xticklabels(labels, fontsize=7)
    b.set_title("kill -9 at %d rows/s: until rows flow again" %
                res["fault_rate"], fontsize=10)
    b.set_ylabel("seconds")
    b.set_ylim(0, max(flows + [1]) * 1.3)
    a.set_ylim(0, max(rates + [1]) * 1.15)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    with open(sys.argv[1]) as f:
        res = json.load(f)
    docs = sys.argv[2]
    seconds = int(sys.argv[3]) if len(sys.argv) > 3 else None
    os.makedirs(docs, exist_ok=True)
    print("")
    print("bench-peers results (medians of %d runs; load average at the "
          "start and after each run: %s)" % (res["runs"], "; ".join(
              "%.2f %.2f %.2f" % tuple(x) for x in res["loads"])))
    for line in tables(res):
        print("  " + line)
    write_md(res, os.path.join(docs, "peers.md"), seconds)
    chart(res, os.path.join(docs, "peers.png"))
    print("bench-peers: wrote %s and %s" % (
        os.path.join(docs, "peers.md"), os.path.join(docs, "peers.png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

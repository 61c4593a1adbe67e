"""What the benchmarks share: their log lines, and the problems met on the
way, listed at the end, that make a benchmark exit 1.  A benchmark never
asserts a time; a problem is something that went wrong (a run that did not
finish, a row lost), not a figure off its target."""

failures = []


def log(msg):
    print(msg, flush=True)


def problem(msg):
    failures.append(msg)
    log("PROBLEM: " + msg)


def verdict(where=None):
    """0 when no problem was met, else 1 after listing them (and where the
    files to read them in were kept)."""
    if not failures:
        return 0
    log("")
    log("%d problem(s)%s:" % (len(failures),
                              "; files kept in %s" % where if where else ""))
    for f in failures:
        log("  - " + f.splitlines()[0])
    return 1

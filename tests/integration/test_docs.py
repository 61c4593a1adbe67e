"""The documentation against the binary: docs/configuration.md names every
key the config loader knows and no other, every relative link of README.md
and docs/*.md resolves, and the command lines the docs show use only the
flags `tor <command> --help` names, which are the ones tor accepts.

The files are read at run time, whatever their sections are.  The loader's
keys come from tor itself: `tor --check-config` prints the effective config
with every key, and each documented key is put into a config to see that
tor does not call it unknown.  Nothing here needs the stack: tor only loads
configs, prints its help, and is refused by services on port 1.
"""

import copy
import glob
import os
import re
import shutil
import subprocess
import tempfile

import harness

NEEDS_STACK = False

REPO = harness.REPO
CONFIG_DOC = os.path.join(REPO, "docs", "configuration.md")
MAIN_C = os.path.join(REPO, "src", "main.c")
CONFIG_C = os.path.join(REPO, "src", "config.c")

# A config that loads without any service, and one that also sets every
# optional list and group, so that --check-config prints every key.  Port 1
# refuses at once: a command that gets past its options fails fast there.
MINIMAL = {
    "group": "docs",
    "instance": "r1",
    "mysql": {"host": "127.0.0.1", "port": 1},
    "outbox": {
        "tables": [{"table": "shop.outbox",
                    "columns": {"key": "k", "type": "t", "payload": "p"}}],
        "topic_template": "docs.${aggregate_type}",
    },
    "kafka": {"brokers": "127.0.0.1:1"},
    "redis": {"host": "127.0.0.1", "port": 1},
}
FULL_EXTRA = {
    "outbox": {
        "tables": [{"table": "shop.outbox",
                    "columns": {"key": "k", "type": "t", "payload": "p"},
                    "headers": [{"column": "c", "header": "h"}]}],
        "routes": [{"match": "^a$", "topic": "a"}],
    },
    "kafka": {"brokers": "127.0.0.1:1", "topics": [{"name": "a"}],
              "properties": ["linger.ms=5"]},
    "redis": {"host": "127.0.0.1", "port": 1,
              "sentinel": {"master": "m", "nodes": ["127.0.0.1:1"]}},
}

# What a placeholder of a --help synopsis stands for in a probe.
PLACEHOLDERS = {"POS": "end", "KEY": "docs-key", "HOST": "127.0.0.1",
                "N": "1", "NAME": "docs",
                "BINLOG...": "/nonexistent/binlog.000001"}


# ---------------------------------------------------------------------------
# libconfig, as much as tor.cfg and --check-config's output use


TOKEN = re.compile(r'''
    (?P<space>\s+|\#[^\n]*|//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|\d+)L{0,2}(?![\w.]))
  | (?P<name>[A-Za-z*][-A-Za-z0-9_*]*)
  | (?P<punct>[=:;,{}()\[\]])
''', re.X | re.S)


def tokens(text):
    out, at = [], 0
    while at < len(text):
        m = TOKEN.match(text, at)
        assert m, "libconfig text not understood at %r" % text[at:at + 40]
        at = m.end()
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group()))
    return out


def parse_libconfig(text):
    """A dict of the settings of text: groups are dicts, lists and arrays
    Python lists."""
    toks = tokens(text)
    pos = [0]

    def peek():
        return toks[pos[0]] if pos[0] < len(toks) else (None, None)

    def take(want=None):
        t = peek()
        assert want is None or t[1] == want, "expected %s, got %r" % (want,
                                                                      t)
        pos[0] += 1
        return t

    def value():
        kind, v = take()
        if kind == "string":
            s = bytes(v[1:-1], "utf-8").decode("unicode_escape")
            while peek()[0] == "string":
                s += bytes(take()[1][1:-1], "utf-8").decode("unicode_escape")
            return s
        if kind == "number":
            return int(v.rstrip("L"), 0)
        if kind == "name" and v.lower() in ("true", "false"):
            return v.lower() == "true"
        if v == "{":
            g = settings("}")
            take("}")
            return g
        if v in ("(", "["):
            end = ")" if v == "(" else "]"
            items = []
            while peek()[1] != end:
                items.append(value())
                if peek()[1] == ",":
                    take()
            take(end)
            return items
        raise AssertionError("unexpected %r" % v)

    def settings(end):
        g = {}
        while peek()[1] != end:
            kind, name = take()
            assert kind == "name", "expected a name, got %r" % name
            assert take()[1] in ("=", ":")
            g[name] = value()
            if peek()[1] in (";", ","):
                take()
        return g

    return settings(None)


def emit(tree, indent=""):
    """libconfig text of a dict made like parse_libconfig's."""
    def val(v, ind):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return "%d%s" % (v, "L" if abs(v) > 2**31 - 1 else "")
        if isinstance(v, str):
            return '"%s"' % v.replace("\\", "\\\\").replace('"', '\\"')
        if isinstance(v, dict):
            return "{\n%s%s}" % (emit(v, ind + "  "), ind)
        return "( %s )" % ", ".join(val(e, ind) for e in v)
    return "".join("%s%s = %s;\n" % (indent, k, val(v, indent))
                   for k, v in tree.items())


def key_paths(tree, prefix=""):
    """{path: kind} of every setting of tree, kind one of "group", "groups"
    (a list of groups: its elements' keys are path[].key) and "value"."""
    out = {}
    for k, v in tree.items():
        p = prefix + k
        if isinstance(v, dict):
            out[p] = "group"
            out.update(key_paths(v, p + "."))
        elif isinstance(v, list) and v and all(isinstance(e, dict)
                                               for e in v):
            out[p] = "groups"
            for e in v:
                out.update(key_paths(e, p + "[]."))
        else:
            out[p] = "value"
    return out


def merged(base, extra):
    out = dict(base)
    for k, v in extra.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and \
            isinstance(out.get(k), dict) else v
    return out


def clean_env():
    """The environment without the TOR_* variables that put secrets into a
    config: a probe's result must not depend on the caller's shell."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TOR_")
            or k == "TOR_BIN"}


class Scratch:
    """A temp directory for configs, removed on exit."""

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="docs-")
        self.n = 0
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)

    def config(self, tree):
        self.n += 1
        path = os.path.join(self.dir, "c%d.cfg" % self.n)
        harness.write_private(path, emit(tree))
        return path


def tor(*args):
    return subprocess.run([harness.default_tor_binary()] + list(args),
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30, env=clean_env())


def check_config(scratch, tree):
    return tor("--check-config", "-c", scratch.config(tree))


def loader_keys(scratch):
    """{path: kind} of every key the loader prints for FULL."""
    p = check_config(scratch, merged(MINIMAL, FULL_EXTRA))
    assert p.returncode == 0, "the full config does not load: %s" % p.stderr
    return key_paths(parse_libconfig(p.stdout))


# ---------------------------------------------------------------------------
# markdown


def doc_files():
    return [os.path.join(REPO, "README.md")] + \
        sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


FENCE = re.compile(r"^ {0,3}(```|~~~)[^\n]*\n(.*?)^ {0,3}\1[ \t]*$",
                   re.M | re.S)


def split_fences(text):
    """(prose with fenced blocks blanked, [fenced block text])."""
    blocks = [m.group(2) for m in FENCE.finditer(text)]
    return FENCE.sub(lambda m: "\n" * m.group().count("\n"), text), blocks


def inline_code(prose):
    return [m.group(2) for m in
            re.finditer(r"(`+)(.+?)\1", prose, re.S)]


def table_rows(text):
    """[(header cells, row cells)] of every pipe table of text."""
    rows, header = [], None
    for line in text.splitlines():
        s = line.strip()
        if not s.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in s.strip("|").split("|")]
        if header is None:
            header = cells
        elif not all(re.fullmatch(r":?-+:?", c) for c in cells):
            rows.append((header, cells))
    return rows


def documented_keys():
    """{key: line} of the first cells of docs/configuration.md's tables
    whose first column is "key"."""
    keys = {}
    prose, _ = split_fences(read(CONFIG_DOC))
    for header, cells in table_rows(prose):
        if header[0].lower() != "key":
            continue
        m = re.fullmatch(r"`([^`]+)`", cells[0])
        assert m, "a key cell that is not one `key`: %r" % cells[0]
        keys[m.group(1)] = cells
    return keys


def slug(heading):
    """GitHub's anchor of a heading: markup dropped, lowercase, punctuation
    but '-' and '_' dropped, each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    """The anchors of a markdown file: its headings' (-1, -2 ... for
    repeats) and explicit <a name|id>."""
    prose, _ = split_fences(read(path))
    seen, out = {}, set()
    for m in re.finditer(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", prose, re.M):
        s = slug(m.group(1))
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else "%s-%d" % (s, n))
    out.update(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", prose))
    return out


def links(path):
    """[(target, line)] of the links and images of a markdown file outside
    code: inline ones and reference definitions."""
    prose, _ = split_fences(read(path))
    prose = re.sub(r"(`+).+?\1", lambda m: " " * len(m.group()), prose,
                   flags=re.S)
    out = []
    for m in re.finditer(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)",
                         prose):
        out.append((m.group(1), prose.count("\n", 0, m.start()) + 1))
    for m in re.finditer(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", prose,
                         re.M):
        out.append((m.group(1), prose.count("\n", 0, m.start()) + 1))
    return out


# ---------------------------------------------------------------------------
# the command line


def options():
    """{name: takes an argument} of the long options in src/main.c."""
    src = read(MAIN_C)
    m = re.search(r"struct option options\[\] = \{(.*?)\n\t\};", src, re.S)
    assert m, "no options[] table in src/main.c"
    opts = dict((n, a == "required") for n, a in re.findall(
        r'\{ "([a-z][a-z-]*)", (no|required)_argument', m.group(1)))
    assert opts, "no option in src/main.c's options[]"
    return opts


def flags_in(text):
    return set(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", text))


def synopses(help_text):
    """[(command words, synopsis)] of the "tor ..." lines of a help text."""
    out = []
    for line in help_text.splitlines():
        m = re.match(r"^(?:usage:)?\s*(tor(?: [^ ].*?)?)(?:\s{2,}.*)?$",
                     line)
        if not m:
            continue
        syn = m.group(1)
        words = []
        for w in syn.split()[1:]:
            if not re.fullmatch(r"[a-z]+", w):
                break
            words.append(w)
        out.append((" ".join(words), syn))
    return out


def commands():
    """{command words: synopsis} of the commands `tor --help` lists that
    have words ("status", "checkpoint set", ...)."""
    p = tor("--help")
    return {w: s for w, s in synopses(p.stdout) if w}


def top_level_flags():
    """The flags `tor --help` names outside the commands' synopses."""
    p = tor("--help")
    words = [w for w, _ in synopses(p.stdout) if w]
    text = "\n".join(line for line in p.stdout.splitlines()
                     if not any(re.sub(r"^(usage:)?\s*", "", line)
                                .startswith("tor " + w) for w in words))
    return flags_in(text)


def probe_args(synopsis, cfg):
    """The arguments that run synopsis with every option it shows."""
    args = []
    for w in synopsis.replace("[", " ").replace("]", " ").split()[1:]:
        if w == "FILE":
            args.append(cfg)
        elif w.isupper() or w.endswith("..."):
            assert w in PLACEHOLDERS, "no value for %s in %s" % (w, synopsis)
            args.append(PLACEHOLDERS[w])
        else:
            args.append(w)
    return args


def usage_error(p):
    """Exit 2 with the usage on stderr (after getopt's complaint, if any)."""
    return p.returncode == 2 and "\nusage: tor" in "\n" + p.stderr


def doc_invocations(path):
    """[(command words, flags, line text)] of each `tor ...` in the code of
    a markdown file (fenced blocks and inline code).  Words are the
    lowercase words right after tor; flags the --flags up to the end of the
    command (a comment, a pipe, ;, &&, a closing parenthesis)."""
    prose, blocks = split_fences(read(path))
    texts = inline_code(prose)
    for b in blocks:
        texts += b.replace("\\\n", " ").splitlines()
    out = []
    for text in texts:
        toks = text.split()
        for i, t in enumerate(toks):
            if not re.fullmatch(r"(?:[\w.$()/-]*/)?tor", t.lstrip("$(")):
                continue
            words, flags = [], set()
            for u in toks[i + 1:]:
                if u.startswith("#") or u in ("|", "||", "&&", ";") or \
                        u.startswith(")"):
                    break
                if not flags and re.fullmatch(r"[a-z]+", u) and \
                        len(words) < 2:
                    words.append(u)
                    continue
                flags |= flags_in(u)
                if u.endswith(";") or u.endswith(")"):
                    break
            out.append((words, flags, text.strip()))
    return out


# ---------------------------------------------------------------------------
# tests: configuration keys


def test_every_loader_key_is_documented():
    """Every key --check-config prints (the loader prints all it knows) is
    in docs/configuration.md's key tables, every documented key is one of
    them, and every name of src/config.c's key lists is printed."""
    with Scratch() as s:
        known = loader_keys(s)
    leaves = {k for k, kind in known.items() if kind == "value"}
    names = set()
    for path in known:
        names.update(re.split(r"\[\]\.|\.", path))
    listed = set()
    for body in re.findall(r"keys_\w+\[\] = \{(.*?)\};", read(CONFIG_C),
                           re.S):
        listed.update(re.findall(r'"([a-z_]+)"', body))
    assert listed, "no key list found in src/config.c"
    # `sources` is the other form of the file, one config per entry:
    # --check-config prints a group's config, never the list nor the
    # `pool` beside it (test_sources_form_is_documented holds their keys
    # to the docs).  `name` stays: kafka.topics[].name prints it.
    listed.discard("sources")
    listed.discard("pool")
    listed -= set(key_list("keys_pool")) - {"name"}
    unprinted = sorted(listed - names)
    assert not unprinted, "src/config.c knows %s, which --check-config " \
        "does not print: print every key (tor_config_print)" % unprinted
    docs = documented_keys()
    missing = sorted(leaves - set(docs))
    assert not missing, "keys the loader knows that docs/configuration.md " \
        "does not document: %s" % missing
    unknown = sorted(set(docs) - set(known))
    assert not unknown, "keys docs/configuration.md documents that the " \
        "loader does not print: %s" % unknown
    print("  %d keys (%d values), all documented" % (len(known),
                                                       len(leaves)))


def key_list(name):
    """The names of src/config.c's key list `name`."""
    body = re.search(r"%s\[\] = \{(.*?)\};" % name, read(CONFIG_C), re.S)
    assert body, "no %s in src/config.c" % name
    return re.findall(r'"([a-z_]+)"', body.group(1))


def test_sources_form_is_documented():
    """Every key src/config.c allows in a `sources` entry and beside
    `sources`, and every `pool` key, is named in docs/configuration.md's
    "Several sources"."""
    doc = read(CONFIG_DOC)
    section = doc[doc.index("## Several sources"):]
    section = section[:section.index("\n## ", 1)]
    names = set()
    for name in ("keys_source", "keys_top_sources"):
        names.update(key_list(name))
    names.update("pool.%s" % k for k in key_list("keys_pool"))
    missing = sorted(n for n in names if "`%s`" % n not in section)
    assert not missing, "keys of the sources form that docs/" \
        "configuration.md's \"Several sources\" does not name: %s" % missing
    print("  %d keys of the sources form documented" % len(names))


def put(tree, path, value):
    """tree with path (a.b[].c) set to value; a list of groups on the way
    gets its first element (a fresh one when there is none)."""
    parts = path.split(".")
    node = tree
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        name, is_list = part[:-2] if part.endswith("[]") else part, \
            part.endswith("[]")
        if is_list:
            if not isinstance(node.get(name), list) or not node[name]:
                node[name] = [{}]
            node = node[name][0]
        elif last:
            node.setdefault(name, value)
        else:
            node = node.setdefault(name, {})
    return tree


def sample_value(full, path):
    node = full
    for part in path.split("."):
        if part.endswith("[]"):
            node = node[part[:-2]][0]
        else:
            node = node[part]
    return node


def test_documented_keys_are_known_to_the_loader():
    """Each key of docs/configuration.md, set alone in a config that
    loads, is not an unknown key to tor; a made-up key in each of their
    groups is (so the check does look at every group)."""
    docs = documented_keys()
    with Scratch() as s:
        full = parse_libconfig(check_config(
            s, merged(MINIMAL, FULL_EXTRA)).stdout)
        for key in sorted(docs):
            try:
                value = sample_value(full, key)
            except (KeyError, IndexError, TypeError):
                value = "x"
            p = check_config(s, put(copy.deepcopy(MINIMAL), key, value))
            assert "unknown key" not in p.stderr, (key, p.stderr)
        parents = {k.rsplit(".", 1)[0] if "." in k else "" for k in docs}
        for parent in sorted(parents):
            key = (parent + "." if parent else "") + "no_such_key"
            p = check_config(s, put(copy.deepcopy(MINIMAL), key, "x"))
            assert p.returncode == 2 and "no_such_key: unknown key" in \
                p.stderr, (key, p.returncode, p.stderr)
    print("  %d documented keys loaded, %d groups refuse a made-up key" %
          (len(docs), len(parents)))


# ---------------------------------------------------------------------------
# tests: links


def test_relative_links_resolve():
    """Each relative link of README.md and docs/*.md names a file that
    exists, and its #anchor a heading of that file (GitHub's slugs)."""
    bad, n = [], 0
    for path in doc_files():
        for target, line in links(path):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                continue        # http:, https:, mailto: ...
            n += 1
            where = "%s:%d: %s" % (os.path.relpath(path, REPO), line, target)
            file, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path),
                                                 file)) if file else path
            if not os.path.exists(dest):
                bad.append("%s: no such file" % where)
            elif anchor and dest.endswith(".md") and \
                    anchor not in anchors(dest):
                bad.append("%s: no heading with that anchor" % where)
    assert not bad, "broken links:\n  " + "\n  ".join(bad)
    print("  %d relative links in %d files resolve" % (n, len(doc_files())))


# ---------------------------------------------------------------------------
# tests: the command line


def test_help_of_tor_and_of_each_command():
    """tor --help and tor <command> --help exit 0 with their usage on
    stdout; --help names every long option of src/main.c, and each
    command's help starts with its own synopsis."""
    p = tor("--help")
    assert p.returncode == 0 and p.stderr == "" and \
        p.stdout.startswith("usage: tor"), (p.returncode, p.stderr)
    unnamed = sorted(set(options()) - flags_in(p.stdout))
    assert not unnamed, "tor --help does not name %s" % unnamed
    cmds = commands()
    assert {"status", "decode", "checkpoint show", "checkpoint set",
            "checkpoint import"} <= set(cmds), cmds
    for words in sorted(cmds) + ["checkpoint"]:
        p = tor(*(words.split() + ["--help"]))
        assert p.returncode == 0 and p.stderr == "", (words, p.returncode,
                                                      p.stderr)
        assert p.stdout.startswith("usage: tor " + words), (words, p.stdout)
    p = tor("checkpoint", "--help")
    assert all("tor " + w in p.stdout for w in cmds if
               w.startswith("checkpoint ")), p.stdout
    p = tor("--version")
    assert p.returncode == 0 and p.stdout.startswith("tor "), p.stdout
    print("  %d commands, %d options" % (len(cmds), len(options())))


def test_each_command_takes_the_flags_its_help_names():
    """Each command run as its --help synopsis shows it, with every option,
    gets past its options (here to a refused connection or a missing file);
    each other option added to it is a usage error.  So a command's help
    names exactly the flags it takes.  `tor --check-config` the same, with
    the flags `tor --help` names outside the commands."""
    opts = options()
    checks = []
    for words in sorted(commands()):
        text = tor(*(words.split() + ["--help"])).stdout
        found = synopses(text)
        # Never the bare `tor -c FILE`: that would run a replica.
        assert found and found[0][0] == words, \
            "tor %s --help does not start with its synopsis" % words
        checks.append((words, found[0][1], flags_in(text)))
    check = [s for w, s in synopses(tor("--help").stdout)
             if not w and "--check-config" in s]
    assert check, "tor --help shows no --check-config synopsis"
    checks.append(("", check[0], top_level_flags()))
    with Scratch() as s:
        cfg = s.config(MINIMAL)
        for words, syn, named in checks:
            args = probe_args(syn, cfg)
            p = tor(*args)
            assert not usage_error(p), (args, p.stderr)
            n = len(words.split())
            for name in sorted(set(opts) - named - {"help", "config",
                                                    "version"}):
                extra = ["--" + name] + (["1"] if opts[name] else [])
                p = tor(*(args[:n] + extra + args[n:]))
                assert usage_error(p), ("tor %s takes --%s, which its help "
                                        "does not name" % (words, name),
                                        p.returncode, p.stderr)
    print("  %d commands probed against %d options" % (len(checks),
                                                        len(opts)))


def test_docs_use_only_flags_their_command_takes():
    """Every `tor <command> ... --flag` in the code of README.md and
    docs/*.md names a command tor has and a flag of that command's
    --help; and every command and option tor has appears in them."""
    cmds = commands()
    helps = {w: flags_in(tor(*(w.split() + ["--help"])).stdout) |
             {"help", "config"} for w in cmds}
    top = top_level_flags()
    bad, n, seen_cmds = [], 0, set()
    text = ""
    for path in doc_files():
        text += read(path)
        name = os.path.relpath(path, REPO)
        for words, flags, line in doc_invocations(path):
            cmd = " ".join(words)
            while cmd and cmd not in cmds and \
                    not any(c.startswith(cmd + " ") for c in cmds):
                cmd = " ".join(cmd.split()[:-1])
            if cmd in cmds:
                seen_cmds.add(cmd)
                allowed = helps[cmd]
            elif not words:
                allowed = top
            elif flags:
                bad.append("%s: `%s`: tor has no command '%s'" %
                           (name, line, " ".join(words)))
                continue
            else:
                continue        # prose such as `tor redis-lost-data`
            n += 1
            for f in sorted(flags - allowed):
                bad.append("%s: `%s`: --%s is not an option of tor%s" %
                           (name, line, f, " " + cmd if cmd else ""))
    assert not bad, "\n  ".join(["the docs show flags tor does not take:"] +
                                bad)
    undocumented = sorted(set(cmds) - seen_cmds)
    assert not undocumented, "commands the docs never show: %s" % \
        undocumented
    unnamed = sorted(f for f in options()
                     if not re.search(r"(?<![\w-])--%s\b" % f, text))
    assert not unnamed, "options the docs never name: %s" % unnamed
    print("  %d tor command lines in the docs checked" % n)

"""The monitoring files (deploy/monitoring/, and the Prometheus Operator
objects in deploy/k8s/): the alert rules pass `promtool check rules`, their
unit tests pass `promtool test rules`, and those tests are shown to fail on
rules that are broken on purpose (an alert that never fires, a threshold,
a `for` or a filter loosened); every alert has its annotations and a runbook
line in docs/monitoring.md; the PrometheusRule holds the same groups as the rule
file and the ServiceMonitor selects the metrics Service; every metric, label
and label value the dashboard and the rules name is one a running replica
exports (scraped from a real replica against the local stack).

promtool comes from Debian's prometheus package (make deps).
"""

import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import tempfile

import yaml
from prometheus_client.parser import text_string_to_metric_families

import harness
from test_deploy import K8S, load_docs, selects
from test_http import free_port, get, published, replica, samples, value, \
    wait_until
from test_relay import insert_range, make_outbox

REPO = harness.REPO
MON = os.path.join(REPO, "deploy", "monitoring")
OPERATOR = os.path.join(K8S, "prometheus-operator")
RULES = os.path.join(MON, "tor-alerts.yaml")
RULE_TESTS = os.path.join(MON, "tor-alerts.test.yaml")
DASHBOARD = os.path.join(MON, "tor-dashboard.json")
RUNBOOK = os.path.join(REPO, "docs", "monitoring.md")
PORT = 9187

# Labels Prometheus attaches to a target's series: not tor's to export.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service",
                 "endpoint", "container"}

# Metric names in a PromQL expression: tor's own, and the process metric it
# exports.  (No label or function of ours starts with "tor_".)
METRIC_NAME = re.compile(r"\b(tor_[a-z_]+|process_start_time_seconds)\b")

# Each alert's rule loosened so that a series its tests say must stay quiet
# fires: (alert, field, text in the field, replacement, the case that must
# catch it).  A test that passes also with the change would not be testing
# the threshold, `for` or filter it is about.
LOOSENED = [
    ("TorNoLeader", "for", "1m", "0s", "a handover's two empty scrapes"),
    ("TorNoLeader", "expr", "by (namespace, job, group)",
     "by (namespace, job)", "one group of two without a leader"),
    ("TorNoReplicaScraped", "expr", " unless on (namespace, job) tor_build_info",
     "", "one replica still scraped"),
    ("TorSeveralLeaders", "for", "2m", "0s", "two leaders for two scrapes"),
    ("TorSeveralLeaders", "expr", "by (namespace, job, group)",
     "by (namespace, job)", "two groups led by two replicas"),
    ("TorSteppingDownStuck", "for", "1m", "0s", "a graceful stop's flush"),
    ("TorLeaderFlapping", "expr", "> 4", "> 2", "a rolling restart"),
    ("TorBinlogLag", "expr", "> 60", "> 30", "a leader 45 s behind"),
    ("TorBinlogLag", "expr", " and tor_leader == 1", "", "a follower's gauge"),
    ("TorBinlogLag", "expr", " and changes(tor_binlog_lag_seconds[3m]) > 0",
     "", "an old transaction read after a quiet spell"),
    ("TorBinlogLag", "expr", "[3m]", "[10m]", "one late transaction"),
    ("TorBinlogStalled", "expr", " and tor_leader == 1", "",
     "a follower, which reads nothing"),
    ("TorBinlogStalled", "for", "3m", "0s", "a MySQL restart"),
    ("TorCheckpointStale", "expr",
     " and changes(tor_binlog_lag_seconds[10m]) > 0", "", "a quiet database"),
    ("TorCheckpointStale", "expr", " and tor_leader == 1", "",
     "a follower's age"),
    ("TorCheckpointStale", "expr", "> 60", "> 20", "a long transaction"),
    ("TorEventsSkipped", "expr", '{reason=~"unrouted|oversized"}', "",
     "updates and deletes"),
    ("TorKafkaErrors", "for", "10m", "0s", "a broker restart's burst"),
    ("TorKafkaErrors", "expr", "> 5", "> 1", "a trickle of idle disconnects"),
    ("TorRestarting", "expr", "> 2", "> 1", "two rollouts"),
    ("TorRestarting", "expr",
     " and ignoring (version) max_over_time(tor_build_info[30m])", "",
     "another program's restarts"),
    ("TorCheckpointRestored", "expr", "> 0", ">= 0", "no restore"),
    ("TorBinlogRetentionLow", "expr", "< 3600", "< 7200",
     "a checkpoint file 90 minutes from its purge"),
    ("TorBinlogRetentionLow", "expr", " and tor_leader == 1", "",
     "a follower's gauge"),
    ("TorBinlogRetentionLow", "for", "5m", "0s",
     "a checkpoint trailing a rotation for minutes"),
]


# ---------------------------------------------------------------------------
# helpers


def promtool(*args, cwd=None):
    """(exit status, output) of promtool ARGS."""
    binary = shutil.which("promtool")
    assert binary, ("promtool is not installed (Debian package prometheus: "
                    "make deps)")
    p = subprocess.run([binary] + list(args), cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=120)
    return p.returncode, p.stdout.decode(errors="replace")


def rule_groups():
    with open(RULES) as f:
        return yaml.safe_load(f)["groups"]


def alerts():
    """{alert name: rule} of tor-alerts.yaml."""
    out = {}
    for g in rule_groups():
        for r in g["rules"]:
            if "alert" in r:
                assert r["alert"] not in out, "alert %s twice" % r["alert"]
                out[r["alert"]] = r
    assert out, "%s holds no alert" % RULES
    return out


def rule_exprs():
    return [r["expr"] for g in rule_groups() for r in g["rules"]]


def dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def dashboard_panels(d):
    """Every panel, rows' panels included."""
    out = []
    for p in d.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def dashboard_targets(d):
    """[(panel title, target)] of every panel's query."""
    return [(p.get("title", ""), t) for p in dashboard_panels(d)
            for t in p.get("targets", []) if t.get("expr")]


def dashboard_exprs(d):
    """Every PromQL expression: the panels' and the template variables'."""
    out = [t["expr"] for _, t in dashboard_targets(d)]
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]
            out.append(q["query"] if isinstance(q, dict) else q)
    return out


def as_promql(expr):
    """A dashboard query with Grafana's variables filled in as Prometheus
    would receive them."""
    for var, val in (("$__rate_interval", "1m"), ("$__interval", "15s"),
                     ("$__range", "1h"), ("$job", ".+"), ("$group", ".+")):
        expr = expr.replace(var, val)
    return expr


def run_rule_tests_with(job):
    """promtool test rules against `rules` (a document like
    tor-alerts.yaml's), in a folder of its own, with the tests of
    tor-alerts.test.yaml that check `alert` (the others cannot notice a
    change of its rule, and promtool spends a second or two on all of
    them); first checks that the rules load.  job: (alert, rules)."""
    alert, rules = job
    with open(RULE_TESTS) as f:
        tests = yaml.safe_load(f)
    tests["tests"] = [t for t in tests["tests"] if any(
        a.get("alertname") == alert for a in t.get("alert_rule_test", ()))]
    assert tests["tests"], "no test checks %s" % alert
    tmp = tempfile.mkdtemp(prefix="tor-mon-")
    try:
        with open(os.path.join(tmp, "tor-alerts.yaml"), "w") as f:
            yaml.safe_dump(rules, f, sort_keys=False)
        with open(os.path.join(tmp, "tor-alerts.test.yaml"), "w") as f:
            yaml.safe_dump(tests, f, sort_keys=False)
        rc, out = promtool("check", "rules", "tor-alerts.yaml", cwd=tmp)
        assert rc == 0, "the changed rules do not even load:\n%s" % out
        return promtool("test", "rules", "tor-alerts.test.yaml", cwd=tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_each(jobs):
    """[(rc, output)] of run_rule_tests_with on each document, a few at a
    time (promtool spends a second or two on the tests)."""
    with concurrent.futures.ThreadPoolExecutor(
            max_workers=max(2, os.cpu_count() or 2)) as pool:
        return list(pool.map(run_rule_tests_with, jobs))


def with_rule_changed(alert, change):
    """tor-alerts.yaml's document with change(rule) applied to alert's."""
    with open(RULES) as f:
        doc = yaml.safe_load(f)
    found = [r for g in doc["groups"] for r in g["rules"]
             if r.get("alert") == alert]
    assert len(found) == 1, alert
    change(found[0])
    return doc


def selectors(expr):
    """[(metric name, [(label, op, value)])] of every metric in expr,
    with the matchers of its selector."""
    out = []
    for m in METRIC_NAME.finditer(expr):
        rest = expr[m.end():]
        matchers = []
        sel = re.match(r"\s*\{([^}]*)\}", rest)
        if sel:
            matchers = re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"',
                                  sel.group(1))
        out.append((m.group(1), matchers))
    return out


def grouping_labels(expr):
    """Labels of every by (...) / without (...) / on (...) / ignoring (...)
    in expr."""
    out = set()
    for m in re.finditer(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        out |= {s.strip() for s in m.group(1).split(",") if s.strip()}
    return out


def scrape_a_leader(stack):
    """Starts a replica, lets it lead and publish to both topics, and
    returns its metric families (prometheus_client's parser)."""
    name = "mon_scrape"
    table, overrides = make_outbox(stack, name)
    port = free_port()
    r1 = replica(stack, overrides, port, "r1", harness.unique_group()).start()
    wait_until("r1 leading and ready", lambda: get(port, "/metrics")[0] == 200
               and value(samples(port), "tor_leader") == 1
               and get(port, "/readyz")[0] == 200, timeout=60, tor=r1)
    insert_range(stack, table, 0, 30, 5)
    wait_until("30 published and acknowledged", lambda: (
        lambda s: published(s) == 30 and
        value(s, "tor_publish_latency_seconds_count") >= 30)(samples(port)),
        timeout=60, tor=r1)
    status, body, _ = get(port, "/metrics")
    assert status == 200, (status, body)
    r1.stop()
    return list(text_string_to_metric_families(body))


def exported(families):
    """{sample name: {label: {values}}} and {sample name: family type}."""
    labels, types = {}, {}
    for fam in families:
        for s in fam.samples:
            entry = labels.setdefault(s.name, {})
            for k, v in s.labels.items():
                entry.setdefault(k, set()).add(v)
            types[s.name] = fam.type
    return labels, types


def check_names_exported(what, expr, labels, types):
    """Every metric expr names is a sample the replica exports, with the
    labels and label values its matchers ask for; histogram_quantile reads
    a histogram's buckets; grouping labels exist.  Returns the problems."""
    problems = []
    names = set()
    for name, matchers in selectors(expr):
        names.add(name)
        if name not in labels:
            problems.append("%s: %s is not exported" % (what, name))
            continue
        for label, op, val in matchers:
            if label in TARGET_LABELS:
                continue
            have = labels[name].get(label)
            if have is None:
                problems.append("%s: %s has no label %s" % (what, name, label))
            elif op == "=" and val not in have:
                problems.append("%s: %s{%s} has no value %r (%s)" % (
                    what, name, label, val, sorted(have)))
            elif op == "=~" and re.fullmatch(r"[\w|]+", val):
                for alt in val.split("|"):
                    if alt not in have:
                        problems.append("%s: %s{%s} has no value %r (%s)" % (
                            what, name, label, alt, sorted(have)))
    for m in re.finditer(r"histogram_quantile\s*\(", expr):
        inner = [n for n in METRIC_NAME.findall(expr[m.end():])][:1]
        for n in inner:
            base = n[:-len("_bucket")] if n.endswith("_bucket") else None
            if base is None or types.get(n) != "histogram" or \
                    "le" not in labels.get(n, {}):
                problems.append("%s: histogram_quantile over %s, not a "
                                "histogram's _bucket series" % (what, n))
    known = set(TARGET_LABELS) | {"le"}
    for n in names:
        known |= set(labels.get(n, {}))
    for label in grouping_labels(expr) - known:
        problems.append("%s: groups by %s, which no series of %s has" % (
            what, label, sorted(names)))
    return problems, names


def readme_runbook():
    """{alert: its line} of docs/monitoring.md's runbook: the list items "- **Name**
    ..." (with their continuation lines) after the heading "Runbook"."""
    with open(RUNBOOK) as f:
        text = f.read()
    m = re.search(r"^#+ Runbook\b.*$", text, re.M)
    assert m, "docs/monitoring.md has no Runbook heading"
    body = text[m.end():]
    nxt = re.search(r"^#+ ", body, re.M)
    body = body[:nxt.start()] if nxt else body
    out = {}
    for item in re.split(r"\n(?=- )", body):
        mm = re.match(r"- \*\*(Tor\w+)\*\*", item)
        if mm:
            out[mm.group(1)] = " ".join(item.split())
    return out


# ---------------------------------------------------------------------------
# the alert rules


def test_promtool_checks_the_rules():
    rc, out = promtool("check", "rules", RULES)
    assert rc == 0, "promtool check rules %s: exit %d\n%s" % (RULES, rc, out)
    assert "SUCCESS: %d rules found" % len(rule_exprs()) in out, out


def test_promtool_rule_tests_pass():
    rc, out = promtool("test", "rules", os.path.basename(RULE_TESTS), cwd=MON)
    assert rc == 0, "promtool test rules: exit %d\n%s" % (rc, out)
    assert "SUCCESS" in out, out


def test_every_alert_fires_and_stays_quiet_in_its_tests():
    """Each alert has a test time where it fires and one where it must not;
    the tests name no alert the rules lack."""
    with open(RULE_TESTS) as f:
        doc = yaml.safe_load(f)
    assert doc["rule_files"] == ["tor-alerts.yaml"], doc["rule_files"]
    fires, quiet = set(), set()
    for t in doc["tests"]:
        for a in t.get("alert_rule_test", []):
            (fires if a.get("exp_alerts") else quiet).add(a["alertname"])
    names = set(alerts())
    assert (fires | quiet) <= names, "tests of unknown alerts: %s" % sorted(
        (fires | quiet) - names)
    assert not names - fires, "alerts never shown to fire: %s" % sorted(
        names - fires)
    assert not names - quiet, "alerts never shown to stay quiet: %s" % sorted(
        names - quiet)


def test_rule_tests_catch_an_alert_that_never_fires():
    def never(rule):
        rule["expr"] = "vector(1) < 0"
    names = list(alerts())
    # Each alert's own tests pass on the rules as they are: what fails
    # below fails for the change.
    for alert, (rc, out) in zip(names, run_each(
            [(a, with_rule_changed(a, lambda rule: None)) for a in names])):
        assert rc == 0, (alert, out)
    results = run_each([(a, with_rule_changed(a, never)) for a in names])
    for alert, (rc, out) in zip(names, results):
        assert rc != 0, ("the rule tests pass with %s never firing:\n%s" %
                         (alert, out))
        assert "alertname: %s," % alert in out, (alert, out)


def test_rule_tests_catch_a_loosened_threshold_for_or_filter():
    rules = alerts()
    covered = {a for a, *_ in LOOSENED}
    assert covered == set(rules), (
        "alerts without a loosened variant here: %s" % sorted(
            set(rules) - covered))
    docs = []
    for alert, field, old, new, case in LOOSENED:
        have = str(rules[alert].get(field, ""))
        if field == "for":
            assert have == old, "%s: for is %r, not %r" % (alert, have, old)
        else:
            assert have.count(old) == 1, "%s: %r not once in %r" % (
                alert, old, have)

        def loosen(rule, field=field, old=old, new=new):
            rule[field] = new if field == "for" else \
                rule[field].replace(old, new)
        docs.append((alert, with_rule_changed(alert, loosen)))
    for (alert, field, old, new, case), (rc, out) in zip(LOOSENED,
                                                         run_each(docs)):
        assert rc != 0, ("the rule tests pass with %s's %s %r -> %r: no test "
                         "covers %s\n%s" % (alert, field, old, new, case, out))
        assert "alertname: %s," % alert in out, (alert, out)


def test_every_alert_has_annotations_and_a_runbook_line():
    runbook = readme_runbook()
    for name, rule in alerts().items():
        assert rule.get("labels", {}).get("severity") in (
            "critical", "warning"), "%s: severity %r" % (name, rule.get(
                "labels"))
        ann = rule.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert ann.get(key), "%s has no annotation %s" % (name, key)
        assert name in ann["runbook"] and \
            "docs/monitoring.md" in ann["runbook"], (
            name, ann["runbook"])
        assert name in runbook, "docs/monitoring.md's runbook has no line for %s" % name
        # A line says what the alert means and what to do: more than a name.
        assert len(runbook[name]) > 80, runbook[name]
    extra = set(runbook) - set(alerts())
    assert not extra, "docs/monitoring.md's runbook names alerts the rules lack: %s" % (
        sorted(extra))


# ---------------------------------------------------------------------------
# the dashboard


def test_dashboard_shows_what_an_operator_needs():
    d = dashboard()
    assert d.get("title") and d.get("uid"), "a dashboard needs a title and uid"
    targets = dashboard_targets(d)
    assert targets, "the dashboard has no query"
    for title, t in targets:
        assert t.get("refId"), "%s: a target without refId" % title
    names = set()
    for e in dashboard_exprs(d):
        names |= set(METRIC_NAME.findall(e))
    for need in ("tor_leader", "tor_lease_epoch", "tor_events_published_total",
                 "tor_events_skipped_total", "tor_binlog_lag_seconds",
                 "tor_checkpoint_age_seconds",
                 "tor_publish_latency_seconds_bucket",
                 "tor_kafka_queue_messages", "tor_kafka_errors_total",
                 "tor_reconnects_total", "tor_failovers_total",
                 "process_start_time_seconds"):
        assert need in names, "no panel shows %s" % need
    exprs = " ".join(t["expr"] for _, t in targets)
    assert re.search(r"sum by \(topic\) \(rate\(tor_events_published_total",
                     exprs), "no publish rate per topic"
    assert re.search(r"by \(reason\) \(\w+\(tor_events_skipped_total", exprs)
    for q in ("0.5", "0.99"):
        assert "histogram_quantile(%s, sum by (le)" % q in exprs, q
    # One group's replicas: every series of a group is filtered on the
    # group variable, or a panel would add several groups up.
    for title, t in targets:
        for name, matchers in selectors(t["expr"]):
            if name not in ("tor_build_info", "process_start_time_seconds"):
                assert ("group", "=~", "$group") in matchers, (title, name)
    # Every panel's datasource is the dashboard's variable, so an import
    # asks for a Prometheus once.
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for p in dashboard_panels(d):
        if p.get("type") != "row":
            assert p.get("datasource", {}).get("uid") == "${datasource}", (
                p.get("title"), p.get("datasource"))


def test_dashboard_queries_are_valid_promql():
    """promtool parses each query (as a recording rule)."""
    tmp = tempfile.mkdtemp(prefix="tor-mon-")
    try:
        rules = [{"record": "tor_dashboard:query_%d" % i,
                  "expr": as_promql(e)}
                 for i, e in enumerate(dashboard_exprs(dashboard()))
                 if not e.startswith("label_values(")]
        path = os.path.join(tmp, "dashboard-queries.yaml")
        with open(path, "w") as f:
            yaml.safe_dump({"groups": [{"name": "dashboard",
                                        "rules": rules}]}, f)
        rc, out = promtool("check", "rules", path)
        assert rc == 0, "a dashboard query does not parse:\n%s" % out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_dashboard_and_rules_name_only_exported_metrics(stack):
    """A real replica, leading and having published to both topics, is
    scraped; every metric, label and label value that a dashboard query,
    a legend or an alert rule names is in the scrape."""
    labels, types = exported(scrape_a_leader(stack))
    problems = []
    used = set()
    d = dashboard()
    for title, t in dashboard_targets(d):
        p, names = check_names_exported("dashboard %r" % title, t["expr"],
                                        labels, types)
        problems += p
        used |= names
        known = set(TARGET_LABELS)
        for n in names:
            known |= set(labels.get(n, {}))
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}",
                                t.get("legendFormat", "")):
            if label not in known:
                problems.append("dashboard %r: legend {{%s}}, a label none "
                                "of %s has" % (title, label, sorted(names)))
    for e in dashboard_exprs(d):
        if e.startswith("label_values("):
            problems += check_names_exported("variable %r" % e, e, labels,
                                             types)[0]
    for name, rule in alerts().items():
        p, names = check_names_exported("alert %s" % name, rule["expr"],
                                        labels, types)
        problems += p
        used |= names
    assert not problems, "\n".join(problems)
    # The checks saw the labelled series they are about.
    topics = labels["tor_events_published_total"]["topic"]
    assert {"mon_scrape.order", "mon_scrape.invoice"} <= topics, topics
    assert len(used) >= 15, sorted(used)
    # ...and would have told a wrong name, label, value or histogram.
    for bad in ('tor_events_publish_total',
                'tor_events_skipped_total{reason="misrouted"}',
                'tor_events_skipped_total{reason=~"unrouted|misrouted"}',
                'tor_reconnects_total{host="mysql"}',
                'sum by (topics) (tor_events_published_total)',
                'histogram_quantile(0.5, rate(tor_kafka_queue_messages[1m]))',
                'histogram_quantile(0.5, tor_publish_latency_seconds_sum)'):
        assert check_names_exported("bad", bad, labels, types)[0], bad


# ---------------------------------------------------------------------------
# Kubernetes: the Prometheus Operator's objects


def operator_object(kind):
    """The one object of that kind in deploy/k8s/prometheus-operator."""
    found = [o for f in ("servicemonitor.yaml", "prometheusrule.yaml")
             for o in load_docs(os.path.join(OPERATOR, f))
             if o.get("kind") == kind]
    assert len(found) == 1, (kind, found)
    return found[0]


def test_prometheusrule_holds_the_rule_files_groups():
    rule = operator_object("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1", rule["apiVersion"]
    assert rule["spec"]["groups"] == rule_groups(), (
        "deploy/k8s/prometheus-operator/prometheusrule.yaml's spec.groups "
        "differ from %s" % RULES)
    # The text too, comments included: spec is the rule file's groups,
    # indented by two.
    with open(RULES) as f:
        rules_text = f.read()
    body = rules_text[rules_text.index("groups:"):]
    want = "".join(("  " + line) if line.strip() else line
                   for line in body.splitlines(True))
    with open(os.path.join(OPERATOR, "prometheusrule.yaml")) as f:
        text = f.read()
    assert text.endswith("spec:\n" + want), (
        "prometheusrule.yaml is not 'spec:' and %s indented by two (see "
        "deploy/monitoring/README.md)" % RULES)


def test_servicemonitor_selects_the_metrics_service():
    sm = operator_object("ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1", sm["apiVersion"]
    services = [o for o in load_docs(os.path.join(K8S, "service-metrics.yaml"))
                if o.get("kind") == "Service"]
    assert len(services) == 1, services
    svc = services[0]
    spec = sm["spec"]
    assert selects(spec["selector"], svc["metadata"]["labels"]), (
        "the ServiceMonitor's selector %s misses the Service's labels %s" % (
            spec["selector"], svc["metadata"]["labels"]))
    # ...and no other Service (the headless one shares the name label).
    for other in [o for o in load_docs(os.path.join(K8S,
                                                    "service-headless.yaml"))
                  if o.get("kind") == "Service"]:
        assert not selects(spec["selector"], other["metadata"].get(
            "labels", {})), "the ServiceMonitor also selects %s" % (
                other["metadata"]["name"])
    ports = {p.get("name"): p for p in svc["spec"]["ports"]}
    assert len(spec["endpoints"]) == 1, spec["endpoints"]
    ep = spec["endpoints"][0]
    assert ep["port"] in ports, "endpoint port %r: the Service's are %s" % (
        ep["port"], sorted(ports))
    assert ports[ep["port"]]["port"] == PORT, ports[ep["port"]]
    assert ep.get("path") == "/metrics", ep
    assert svc["metadata"]["annotations"]["prometheus.io/path"] == ep["path"]


def test_kustomization_lists_the_monitoring_objects():
    """The operator's objects are an overlay on deploy/k8s, so that the base
    applies on a cluster without the operator's CRDs."""
    k = load_docs(os.path.join(OPERATOR, "kustomization.yaml"))[0]
    assert k["kind"] == "Kustomization", k
    assert k["resources"] == ["../", "servicemonitor.yaml",
                              "prometheusrule.yaml"], k["resources"]
    base = load_docs(os.path.join(K8S, "kustomization.yaml"))[0]
    kinds = {o.get("kind") for r in base["resources"]
             for o in load_docs(os.path.join(K8S, r))}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}, kinds

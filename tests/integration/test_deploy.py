"""The deployment files (DESIGN.md §8 deploy/): Kubernetes manifests, the
systemd unit for an active/standby pair of VMs, the container files.

Nothing here needs the stack: the manifests are parsed and checked for the
shape the operations work promises (3 replicas spread over nodes, probes on
9187, resources, secrets from a Secret, the config from a ConfigMap), every
tor.cfg shipped with them passes `tor --check-config`, the unit passes
`systemd-analyze verify`, and the Dockerfile and compose file have the stages,
user and services they should.  No Docker engine is assumed: the image and the
compose stack are checked, not built or run.
"""

import glob
import os
import re
import shutil
import subprocess
import tempfile

import yaml

import harness

REPO = harness.REPO
K8S = os.path.join(REPO, "deploy", "k8s")
SYSTEMD = os.path.join(REPO, "deploy", "systemd")
DOCKER = os.path.join(REPO, "deploy", "docker")
UNIT = os.path.join(SYSTEMD, "tor.service")
PORT = 9187
SECRET_ENV = ("TOR_MYSQL_PASSWORD", "TOR_REDIS_PASSWORD", "TOR_CHECKPOINT_KEY")


# ---------------------------------------------------------------------------
# helpers


def yaml_files(folder):
    return sorted(glob.glob(os.path.join(folder, "*.yaml")) +
                  glob.glob(os.path.join(folder, "*.yml")))


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def k8s_objects():
    """[(file name, object)] of every manifest under deploy/k8s but the
    kustomization."""
    out = []
    for path in yaml_files(K8S):
        for doc in load_docs(path):
            if doc.get("kind") != "Kustomization":
                out.append((os.path.basename(path), doc))
    return out


def objects_of(kind):
    return [o for _, o in k8s_objects() if o.get("kind") == kind]


def one_of(kind):
    objs = objects_of(kind)
    assert len(objs) == 1, "expected one %s in deploy/k8s, found %d" % (
        kind, len(objs))
    return objs[0]


def statefulset():
    return one_of("StatefulSet")


def tor_container(sts):
    containers = sts["spec"]["template"]["spec"]["containers"]
    named = [c for c in containers if c.get("name") == "tor"]
    assert named, "no container named tor in the StatefulSet: %s" % [
        c.get("name") for c in containers]
    return named[0]


def selects(selector, labels):
    """A label selector (matchLabels, or a Service's plain map) matches."""
    match = selector.get("matchLabels", selector)
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def clean_env():
    """The environment without the secrets a developer may have exported."""
    env = dict(os.environ)
    for k in SECRET_ENV:
        env.pop(k, None)
    return env


def tor_binary():
    binary = harness.default_tor_binary()
    assert os.access(binary, os.X_OK), (
        "%s is not built (make build/asan/tor, or set TOR_BIN)" % binary)
    return binary


def check_config(cfg_text, env=None, name="tor.cfg"):
    """Runs tor --check-config on cfg_text; (exit status, output)."""
    tmp = tempfile.mkdtemp(prefix="tor-deploy-")
    try:
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write(cfg_text)
        p = subprocess.run([tor_binary(), "--check-config", "-c", path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env=env if env is not None else clean_env(),
                           timeout=60)
        return p.returncode, p.stdout.decode(errors="replace")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def assert_config_ok(cfg_text, what, expect):
    """cfg_text passes --check-config and its effective config has each
    `key = value;` line of expect (section-less keys: enough to tell the
    hosts apart)."""
    rc, out = check_config(cfg_text)
    assert rc == 0, "%s: tor --check-config exit %d:\n%s" % (what, rc, out)
    for line in expect:
        assert re.search(r"^\s*%s\s*$" % re.escape(line), out, re.M), (
            "%s: effective config has no line %r:\n%s" % (what, line, out))
    return out


def unit_settings(path):
    """{(section, key): [values]} of a systemd unit file."""
    out = {}
    section = None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            key, sep, value = line.partition("=")
            assert sep, "%s: not key=value: %r" % (path, line)
            out.setdefault((section, key.strip()), []).append(value.strip())
    return out


def dockerfile_instructions(path):
    """[(INSTRUCTION, arguments)] with continuations joined."""
    out = []
    cur = ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not cur and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.rstrip().endswith("\\"):
                cur += line.rstrip()[:-1] + " "
                continue
            cur += line
            word, _, rest = cur.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            cur = ""
    return out


def compose():
    docs = load_docs(os.path.join(DOCKER, "compose.yaml"))
    assert len(docs) == 1, "compose.yaml: expected one document"
    return docs[0]


def tor_services(c):
    """The compose services built from deploy/docker/Dockerfile."""
    out = {}
    for name, svc in c["services"].items():
        build = svc.get("build")
        if isinstance(build, dict) and str(build.get("dockerfile", "")).endswith(
                "deploy/docker/Dockerfile"):
            out[name] = svc
    return out


def env_map(env):
    if isinstance(env, dict):
        return {k: "" if v is None else str(v) for k, v in env.items()}
    out = {}
    for item in env or []:
        k, _, v = str(item).partition("=")
        out[k] = v
    return out


def seconds(duration):
    m = re.fullmatch(r"(\d+)(s|m)?", str(duration).strip())
    assert m, "unreadable duration %r" % duration
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1)


# ---------------------------------------------------------------------------
# every file


def test_every_yaml_file_parses():
    files = yaml_files(K8S) + yaml_files(DOCKER) + \
        yaml_files(os.path.join(K8S, "chaos")) + \
        yaml_files(os.path.join(K8S, "prometheus-operator"))
    assert len(yaml_files(K8S)) >= 7, "deploy/k8s: %s" % yaml_files(K8S)
    assert os.path.join(DOCKER, "compose.yaml") in files, files
    for path in files:
        try:
            docs = load_docs(path)
        except yaml.YAMLError as e:
            raise AssertionError("%s does not parse: %s" % (path, e))
        assert docs, "%s holds no document" % path
        for d in docs:
            assert isinstance(d, dict), "%s: a document is not a mapping" % path
    for name, obj in k8s_objects():
        assert obj.get("apiVersion") and obj.get("kind") and \
            obj.get("metadata", {}).get("name"), (
                "%s: an object without apiVersion, kind or name" % name)


# ---------------------------------------------------------------------------
# Kubernetes


def test_statefulset_spreads_three_replicas_over_nodes():
    sts = statefulset()
    assert sts["metadata"]["name"] == "tor"
    spec = sts["spec"]
    assert spec["replicas"] == 3, spec["replicas"]
    pod_labels = spec["template"]["metadata"]["labels"]
    assert selects(spec["selector"], pod_labels), "selector misses the pods"
    pod = spec["template"]["spec"]
    anti = pod.get("affinity", {}).get("podAntiAffinity")
    assert anti, "no podAntiAffinity"
    terms = [t["podAffinityTerm"] for t in
             anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])]
    terms += anti.get("requiredDuringSchedulingIgnoredDuringExecution", [])
    assert any(t.get("topologyKey") == "kubernetes.io/hostname" and
               selects(t["labelSelector"], pod_labels) for t in terms), (
        "no anti-affinity term across kubernetes.io/hostname for tor's pods")
    # SIGTERM -> final checkpoint, which waits up to 10 s for Kafka.
    assert pod["terminationGracePeriodSeconds"] >= 20, \
        pod["terminationGracePeriodSeconds"]


def test_statefulset_container_probes_resources_security():
    sts = statefulset()
    pod = sts["spec"]["template"]["spec"]
    c = tor_container(sts)
    assert c["command"] == ["tor", "-c", "/etc/tor/tor.cfg"], c["command"]
    assert any(p["containerPort"] == PORT for p in c["ports"]), c["ports"]

    for probe, path in (("livenessProbe", "/healthz"),
                        ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path, (probe, get)
        named = {p.get("name"): p["containerPort"] for p in c["ports"]}
        port = named.get(get["port"], get["port"])
        assert port == PORT, (probe, get)

    res = c["resources"]
    assert res["requests"]["cpu"] and res["requests"]["memory"], res
    assert res["limits"]["memory"], res

    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"], sc["capabilities"]
    assert sc.get("runAsNonRoot") or pod["securityContext"]["runAsNonRoot"]


def test_statefulset_takes_secrets_and_the_configmap():
    sts = statefulset()
    pod = sts["spec"]["template"]["spec"]
    c = tor_container(sts)
    secret = one_of("Secret")
    env = {e["name"]: e for e in c.get("env", [])}
    for name in SECRET_ENV:
        assert name in env, "env %s not set" % name
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"], ref
        keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
        assert ref["key"] in keys, "Secret has no key %s" % ref["key"]

    cm = one_of("ConfigMap")
    assert "tor.cfg" in cm["data"], list(cm["data"])
    vols = {v["name"]: v for v in pod["volumes"]}
    mounts = [m for m in c["volumeMounts"]
              if vols.get(m["name"], {}).get("configMap", {}).get("name") ==
              cm["metadata"]["name"]]
    assert mounts, "the ConfigMap %s is not mounted" % cm["metadata"]["name"]
    m = mounts[0]
    vol = vols[m["name"]]["configMap"]
    items = {i["key"]: i["path"] for i in vol.get("items", [])} or \
        {k: k for k in cm["data"]}
    if m.get("subPath"):
        mounted = {m["mountPath"]: m["subPath"]}
        assert mounted == {"/etc/tor/tor.cfg": items["tor.cfg"]}, m
    else:
        assert os.path.join(m["mountPath"], items["tor.cfg"]) == \
            "/etc/tor/tor.cfg", (m, items)


def test_configmap_tor_cfg_passes_check_config():
    cm = one_of("ConfigMap")
    assert_config_ok(cm["data"]["tor.cfg"], "deploy/k8s ConfigMap tor.cfg", [
        'host = "mysql";', 'host = "redis";', 'brokers = "kafka:9092";',
        'listen = "0.0.0.0:9187";', "lease_ms = 3000;", "renew_ms = 1000;",
        "retry_ms = 200;"])
    # instance "" is what lets each pod be named by $HOSTNAME.
    rc, out = check_config(cm["data"]["tor.cfg"],
                           env=dict(clean_env(), HOSTNAME="tor-1"))
    assert rc == 0 and re.search(r'^instance = "tor-1";$', out, re.M), out


def test_secret_placeholder_key_is_refused():
    """A Secret applied without its values replaced must not run: the
    placeholder checkpoint key is refused as a configuration error."""
    secret = one_of("Secret")
    values = secret.get("stringData") or {}
    assert set(SECRET_ENV) <= set(values), values.keys()
    for k in SECRET_ENV:
        assert "REPLACE" in values[k], "%s is not a placeholder" % k
    cm = one_of("ConfigMap")
    env = dict(clean_env(), TOR_CHECKPOINT_KEY=values["TOR_CHECKPOINT_KEY"])
    rc, out = check_config(cm["data"]["tor.cfg"], env=env)
    assert rc == 2 and "TOR_CHECKPOINT_KEY" in out, (rc, out)
    assert values["TOR_CHECKPOINT_KEY"] not in out, "the value was echoed"


def test_services_and_disruption_budget():
    sts = statefulset()
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    services = {s["metadata"]["name"]: s for s in objects_of("Service")}

    headless = services.get(sts["spec"]["serviceName"])
    assert headless, "no Service named %s (serviceName)" % \
        sts["spec"]["serviceName"]
    assert headless["spec"]["clusterIP"] == "None"
    assert selects(headless["spec"]["selector"], pod_labels)

    metrics = [s for s in services.values()
               if s["metadata"].get("annotations", {}).get(
                   "prometheus.io/scrape") == "true"]
    assert len(metrics) == 1, "one Service with prometheus.io/scrape"
    ann = metrics[0]["metadata"]["annotations"]
    assert ann["prometheus.io/port"] == str(PORT), ann
    assert ann["prometheus.io/path"] == "/metrics", ann
    assert selects(metrics[0]["spec"]["selector"], pod_labels)
    assert any(p["port"] == PORT for p in metrics[0]["spec"]["ports"])

    pdb = one_of("PodDisruptionBudget")
    spec = pdb["spec"]
    assert selects(spec["selector"], pod_labels), "the PDB misses the pods"
    assert spec.get("minAvailable") == 2 or spec.get("maxUnavailable") == 1, \
        spec


def test_kustomization_lists_every_file():
    kpath = os.path.join(K8S, "kustomization.yaml")
    k = load_docs(kpath)[0]
    assert k["kind"] == "Kustomization"
    listed = k["resources"]
    assert len(listed) == len(set(listed)), "listed twice: %s" % listed
    for r in listed:
        assert os.path.isfile(os.path.join(K8S, r)), "missing: %s" % r
    files = {os.path.basename(p) for p in yaml_files(K8S)} - \
        {"kustomization.yaml"}
    assert set(listed) == files, "kustomization lists %s, folder has %s" % (
        sorted(listed), sorted(files))


def test_chaos_overlay_shares_the_process_namespace():
    # tests/chaos/backends.py's Kubernetes pause signals tor from inside the
    # pod; that reaches tor only when tor is not the namespace's PID 1.
    d = os.path.join(K8S, "chaos")
    k = load_docs(os.path.join(d, "kustomization.yaml"))[0]
    assert k["kind"] == "Kustomization" and k["resources"] == ["../"], k
    paths = [p["path"] for p in k["patches"]]
    assert paths == ["share-process-namespace.yaml"], paths
    patch = load_docs(os.path.join(d, paths[0]))[0]
    assert (patch["kind"], patch["metadata"]["name"]) == (
        "StatefulSet", statefulset()["metadata"]["name"]), patch
    assert patch["spec"]["template"]["spec"]["shareProcessNamespace"] is True


# ---------------------------------------------------------------------------
# systemd


def test_systemd_unit_settings():
    s = unit_settings(UNIT)
    want = {
        ("Service", "Type"): "simple",
        ("Service", "ExecStart"): "/usr/local/bin/tor -c /etc/tor/tor.cfg",
        ("Service", "Restart"): "always",
        ("Service", "RestartSec"): "1",
        ("Service", "TimeoutStopSec"): "30",
        ("Service", "KillSignal"): "SIGTERM",
        ("Service", "EnvironmentFile"): "-/etc/tor/tor.env",
        ("Service", "User"): "tor",
        ("Service", "NoNewPrivileges"): "yes",
        ("Service", "ProtectSystem"): "strict",
        ("Service", "ProtectHome"): "yes",
        ("Service", "PrivateTmp"): "yes",
        ("Service", "PrivateDevices"): "yes",
        ("Service", "ProtectKernelTunables"): "yes",
        ("Service", "ProtectKernelModules"): "yes",
        ("Service", "RestrictAddressFamilies"): "AF_INET AF_INET6 AF_UNIX",
        ("Service", "CapabilityBoundingSet"): "",
        ("Service", "MemoryMax"): "256M",
        ("Unit", "After"): "network-online.target",
        ("Unit", "Wants"): "network-online.target",
    }
    for key, value in want.items():
        assert value in s.get(key, []), "%s [%s] %s=%r: has %r" % (
            UNIT, key[0], key[1], value, s.get(key))
    assert "@system-service" in s.get(("Service", "SystemCallFilter"), []), s
    assert s.get(("Install", "WantedBy")), "no [Install] WantedBy"


def test_systemd_analyze_verify():
    analyze = shutil.which("systemd-analyze")
    assert analyze, ("systemd-analyze is not installed (Debian package "
                     "systemd): the unit cannot be verified here")
    binary = tor_binary()
    tmp = tempfile.mkdtemp(prefix="tor-unit-")
    try:
        # The unit as shipped, but ExecStart at the binary built here, so that
        # verify's "is it executable" check does not need /usr/local/bin/tor.
        with open(UNIT) as f:
            text = f.read()
        assert "ExecStart=/usr/local/bin/tor " in text
        text = text.replace("ExecStart=/usr/local/bin/tor ",
                            "ExecStart=%s " % binary)
        unit = os.path.join(tmp, "tor.service")
        with open(unit, "w") as f:
            f.write(text)
        p = subprocess.run([analyze, "verify", unit], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        out = p.stdout.decode(errors="replace")
        assert p.returncode == 0, "systemd-analyze verify exit %d:\n%s" % (
            p.returncode, out)
        # Unknown keys and bad values are only warnings: fail on them too.
        complaints = [line for line in out.splitlines() if "tor.service" in line]
        assert not complaints, "systemd-analyze verify:\n%s" % out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------
# containers


def test_dockerfile_stages_user_entrypoint():
    path = os.path.join(DOCKER, "Dockerfile")
    ins = dockerfile_instructions(path)
    froms = [i for i, (w, _) in enumerate(ins) if w == "FROM"]
    assert len(froms) >= 2, "expected a multi-stage build: %d FROM" % len(froms)
    assert ins[froms[0]][1].startswith("debian:bookworm"), ins[froms[0]]
    build_stage = " ".join(a for w, a in ins[froms[0]:froms[-1]])
    for pkg in ("libmariadb-dev", "librdkafka-dev", "libhiredis-dev",
                "libssl-dev", "libsodium-dev", "libconfig-dev", "libmicrohttpd-dev",
                "zlib1g-dev", "libjemalloc-dev"):
        assert pkg in build_stage, "build stage does not install %s" % pkg
    assert "make" in build_stage and "bin/tor" in build_stage

    final = ins[froms[-1]:]
    runtime = " ".join(a for w, a in final if w == "RUN")
    for pkg in ("libmariadb3", "librdkafka1", "libhiredis0.14", "libssl3",
                "libsodium23",
                "libconfig9", "libmicrohttpd12", "libjemalloc2", "zlib1g"):
        assert re.search(r"(^|\s)%s(\s|$)" % re.escape(pkg), runtime), (
            "runtime stage does not install %s" % pkg)
    assert "-dev" not in runtime, "a -dev package in the runtime stage"

    users = [a for w, a in final if w == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), "USER %s is root" % users[-1]
    assert ("EXPOSE", "9187") in final
    assert ("ENTRYPOINT", '["tor"]') in final
    assert ("CMD", '["-c", "/etc/tor/tor.cfg"]') in final

    # What the stages copy exists (the context is the repository root).
    for w, a in ins:
        if w == "COPY" and "--from=" not in a:
            for src in a.split()[:-1]:
                assert os.path.exists(os.path.join(REPO, src)), \
                    "COPY %s: no such path in the repository" % src


def test_compose_services():
    c = compose()
    svcs = c["services"]

    mysql = svcs["mysql"]
    assert re.fullmatch(r"mysql:8(\.\d+)*", mysql["image"]), mysql["image"]
    cmd = mysql["command"]
    cmd = cmd.split() if isinstance(cmd, str) else cmd
    for flag in ("--binlog-format=ROW", "--binlog-row-image=FULL",
                 "--binlog-row-metadata=FULL", "--gtid-mode=ON",
                 "--enforce-gtid-consistency=ON", "--server-id=1",
                 "--binlog-transaction-compression=OFF"):
        assert flag in cmd, "mysql command lacks %s" % flag
    assert any(f == "--log-bin" or f.startswith("--log-bin=") for f in cmd)
    init = [v for v in mysql["volumes"] if "docker-entrypoint-initdb.d" in v]
    assert init, "no init SQL mounted into mysql"
    init_file = os.path.join(DOCKER, init[0].split(":")[0])
    with open(init_file) as f:
        sql = f.read()
    assert re.search(r"CREATE TABLE\s+shop\.outbox", sql), init_file
    assert re.search(r"GRANT\s+REPLICATION SLAVE,\s*REPLICATION CLIENT\s+ON "
                     r"\*\.\*\s+TO\s+'tor'", sql), init_file
    assert re.search(r"GRANT\s+SELECT\s+ON\s+\S+\s+TO\s+'tor'", sql)

    kafka = svcs["kafka"]
    kenv = env_map(kafka.get("environment"))
    assert kafka["image"].startswith("apache/kafka"), kafka["image"]
    assert "controller" in kenv.get("KAFKA_PROCESS_ROLES", ""), kenv
    assert kenv.get("KAFKA_CONTROLLER_QUORUM_VOTERS"), "no KRaft quorum"
    assert not any("zookeeper" in k.lower() for k in kenv), "ZooKeeper?"

    assert re.fullmatch(r"redis:7(\.\d+)*(-\S+)?", svcs["redis"]["image"])

    tors = tor_services(c)
    assert len(tors) == 3, "tor services: %s" % sorted(tors)
    names = set()
    for name, svc in tors.items():
        assert svc["build"]["context"] == "../..", svc["build"]
        env = env_map(svc.get("environment"))
        for k in SECRET_ENV:
            assert env.get(k), "%s: no %s" % (name, k)
        assert seconds(svc["stop_grace_period"]) >= 20, name
        deps = svc["depends_on"]
        assert {"mysql", "kafka", "redis"} <= set(deps), (name, deps)
        names.add(svc.get("hostname", name))
    assert len(names) == 3, "the replicas need distinct hostnames: %s" % names


def test_compose_tor_cfg_passes_check_config():
    c = compose()
    for name, svc in tor_services(c).items():
        cfgs = [v for v in svc["volumes"] if ":/etc/tor/tor.cfg" in v]
        assert cfgs, "%s: nothing mounted at /etc/tor/tor.cfg" % name
        path = os.path.normpath(os.path.join(DOCKER, cfgs[0].split(":")[0]))
        with open(path) as f:
            text = f.read()
        out = assert_config_ok(text, path, [
            'host = "mysql";', 'host = "redis";', 'brokers = "kafka:9092";',
            'listen = "0.0.0.0:9187";'])
        # With the secrets compose gives the replica: the key is accepted.
        env = dict(clean_env(), **{k: v for k, v in env_map(
            svc["environment"]).items() if k in SECRET_ENV})
        rc, out = check_config(text, env=env)
        assert rc == 0, "%s with %s's environment: %s" % (path, name, out)

"""Structural test of rendered kspm manifests.

Usage: python3 kubernetes_structure.py LABEL NAMESPACE FILE [MODE]

MODE is how agents get their node certificate: token (enrolment with a projected service-account
token, the default) or static (one certificate per node from a Secret).
"""
import os
import sys

import yaml

sys.dont_write_bytecode = True  # no __pycache__ in the source tree from the import below
import rbac_rules  # noqa: E402

label, namespace, path = sys.argv[1:4]
mode = sys.argv[4] if len(sys.argv) > 4 else "token"
assert mode in ("token", "static"), mode
errors = []


def err(msg):
    errors.append(msg)


docs = [d for d in yaml.safe_load_all(open(path)) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d.get("kind"), []).append(d)


def one(kind, name):
    found = [d for d in by_kind.get(kind, []) if d["metadata"]["name"] == name]
    if len(found) != 1:
        err(f"expected one {kind} {name}, found {len(found)}")
        return None
    return found[0]


def get(obj, *keys, default=None):
    for k in keys:
        if not isinstance(obj, dict) or k not in obj:
            return default
        obj = obj[k]
    return obj


# Every namespaced object lives in the kspm namespace.
cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
for d in docs:
    if d["kind"] not in cluster_scoped and d["metadata"].get("namespace") != namespace:
        err(f"{d['kind']} {d['metadata']['name']} not in namespace {namespace}")

ENROLL_AUDIENCE = "kspm-collector"
CA_KEY_SECRET = "kspm-ca-key"
MAX_TOKEN_SECONDS = 3600      # the README promises a stolen token is good for an hour at most
MAX_CERT_HOURS = 24           # and a stolen enrolled node key for a day at most
AGENT_STATE_DIR = "/var/lib/kspm-agent"  # kspm-agent's --state-dir default
AGENT_CAPS = {"DAC_READ_SEARCH", "SYS_PTRACE", "BPF", "PERFMON", "SYS_RESOURCE"}
# Host paths the agent mounts, and whether each may be written.
AGENT_HOST_PATHS = {"/": False, "/sys/kernel/btf": False, "/sys/kernel/tracing": False,
                    "/sys/fs/bpf": False, "/var/lib/kspm-agent": True}


def pod_containers(spec):
    return (spec.get("containers") or []) + (spec.get("initContainers") or [])


def no_privileged(kind, spec):
    for c in pod_containers(spec):
        sc = c.get("securityContext") or {}
        if sc.get("privileged") is True:
            err(f"{kind}: container {c['name']} is privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            err(f"{kind}: container {c['name']} allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            err(f"{kind}: container {c['name']} root file system is not read-only")
        if "ALL" not in (get(sc, "capabilities", "drop") or []):
            err(f"{kind}: container {c['name']} does not drop ALL capabilities")


def probes(kind, c, port_number, paths):
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
    for probe, want in zip(("livenessProbe", "readinessProbe"), paths):
        hg = get(c, probe, "httpGet")
        if not hg:
            err(f"{kind}: no {probe} httpGet")
            continue
        port = ports.get(hg.get("port"), hg.get("port"))
        if port != port_number or hg.get("path") != want:
            err(f"{kind}: {probe} is {hg.get('path')} on {port}, expected {want} on {port_number}")


def volume_secrets(v):
    """Secrets a volume carries, projected sources included."""
    names = {get(v, "secret", "secretName")} if "secret" in v else set()
    return names | {get(s, "secret", "name") for s in get(v, "projected", "sources") or []
                    if "secret" in s}


def secret_names(spec):
    return set().union(*[volume_secrets(v) for v in spec.get("volumes") or []])


def flag_values(args):
    """--name=value arguments as {"--name": value} (the last one wins, as in the programs)."""
    return dict(a.split("=", 1) for a in args if a.startswith("--") and "=" in a)


def env_from_field(env, name, field):
    return get(env.get(name, {}), "valueFrom", "fieldRef", "fieldPath") == field


# ---- agent DaemonSet
ds = one("DaemonSet", "kspm-agent")
if ds:
    spec = ds["spec"]["template"]["spec"]
    kind = "DaemonSet kspm-agent"
    tol = spec.get("tolerations") or []
    if not any(t.get("operator") == "Exists" and not t.get("key") and not t.get("effect")
               for t in tol):
        err(f"{kind}: no toleration {{operator: Exists}} (every node, control plane included)")
    if spec.get("hostPID") is not True:
        err(f"{kind}: hostPID is not true")
    for k in ("hostNetwork", "hostIPC"):
        if spec.get(k):
            err(f"{kind}: {k} is set")
    if spec.get("automountServiceAccountToken") is not False:
        err(f"{kind}: the agent must not mount an API token")
    if spec.get("serviceAccountName") != "kspm-agent":
        err(f"{kind}: serviceAccountName is {spec.get('serviceAccountName')}")
    no_privileged(kind, spec)
    cs = spec.get("containers") or []
    c = cs[0] if cs else {}
    sc = c.get("securityContext") or {}
    added = set(get(sc, "capabilities", "add") or [])
    if added != AGENT_CAPS:
        err(f"{kind}: capabilities added {sorted(added)}, expected {sorted(AGENT_CAPS)}")
    req = get(c, "resources", "requests") or {}
    if str(req.get("cpu")) != "10m" or str(req.get("memory")) != "32Mi":
        err(f"{kind}: requests {req}, expected cpu 10m memory 32Mi")
    if not get(c, "resources", "limits", "memory"):
        err(f"{kind}: no memory limit")
    env = {e["name"]: e for e in c.get("env") or []}
    if get(env.get("NODE_NAME", {}), "valueFrom", "fieldRef", "fieldPath") != "spec.nodeName":
        err(f"{kind}: NODE_NAME does not come from fieldRef spec.nodeName")
    probes(kind, c, 9090, ("/healthz", "/readyz"))
    args = [str(a) for a in c.get("args") or []]
    for want in ("run", "--host-root=/host", "--health-listen=0.0.0.0:9090"):
        if want not in args:
            err(f"{kind}: argument {want} missing from {args}")
    if not any(a.startswith(f"--collector=kspm-collector.{namespace}.svc:7443") for a in args):
        err(f"{kind}: --collector is not kspm-collector.{namespace}.svc:7443")
    agent_flags = flag_values(args)
    if not agent_flags.get("--tls-ca"):
        err(f"{kind}: no --tls-ca to verify the collector")
    vols = {v["name"]: v for v in spec.get("volumes") or []}
    mounts = {m["name"]: m for m in c.get("volumeMounts") or []}
    host_paths = {}
    for name, v in vols.items():
        if "hostPath" in v:
            host_paths[v["hostPath"]["path"]] = (name, mounts.get(name))
    if set(host_paths) != set(AGENT_HOST_PATHS):
        err(f"{kind}: host paths {sorted(host_paths)}, expected {sorted(AGENT_HOST_PATHS)}")
    for hp, (name, m) in host_paths.items():
        if m is None:
            err(f"{kind}: host path {hp} is not mounted")
        elif not AGENT_HOST_PATHS.get(hp, False) and m.get("readOnly") is not True:
            err(f"{kind}: host path {hp} is mounted writable")
    root = host_paths.get("/", (None, None))[1]
    if not root or root.get("mountPath") != "/host" or root.get("readOnly") is not True:
        err(f"{kind}: the host's / is not mounted read-only at /host")
    elif root.get("mountPropagation") != "HostToContainer":
        err(f"{kind}: /host mountPropagation is not HostToContainer")
    # Projected service-account tokens: (volume name, source).
    tokens = [(name, s["serviceAccountToken"]) for name, v in vols.items()
              for s in get(v, "projected", "sources") or [] if "serviceAccountToken" in s]
    token_env = env.get("KSPM_ENROLL_TOKEN_FILE")
    if mode == "token":
        # The node makes its own key: no node key in any Secret, none passed by flag.
        if secret_names(spec) != {"kspm-ca"}:
            err(f"{kind}: secrets {secret_names(spec)}, expected kspm-ca only (no node keys)")
        for v in vols.values():
            if "kspm-ca" in volume_secrets(v) and \
                    [i.get("key") for i in get(v, "secret", "items") or []] != ["ca.crt"]:
                err(f"{kind}: volume {v['name']} takes more than ca.crt from kspm-ca")
        for a in args:
            if a.startswith(("--tls-cert", "--tls-key")):
                err(f"{kind}: {a}: an enrolling agent has no static certificate")
        if len(tokens) != 1:
            err(f"{kind}: {len(tokens)} projected serviceAccountToken sources, expected 1")
        else:
            name, sat = tokens[0]
            if sat.get("audience") != ENROLL_AUDIENCE:
                err(f"{kind}: token audience {sat.get('audience')}, expected {ENROLL_AUDIENCE}")
            secs = sat.get("expirationSeconds")
            if not isinstance(secs, int) or not 600 <= secs <= MAX_TOKEN_SECONDS:
                err(f"{kind}: token expirationSeconds {secs}, expected 600..{MAX_TOKEN_SECONDS}")
            m = mounts.get(name)
            if not m or m.get("readOnly") is not True:
                err(f"{kind}: token volume {name} is not mounted read-only")
            elif get(token_env or {}, "value") != f"{m['mountPath'].rstrip('/')}/{sat.get('path')}":
                err(f"{kind}: KSPM_ENROLL_TOKEN_FILE is {get(token_env or {}, 'value')}, not "
                    f"the token at {m['mountPath']}/{sat.get('path')}")
        # The node's key and certificate live in STATE_DIR/identity/: on the host, so that they
        # outlive the pod (a new pod would enrol again, but reports spooled meanwhile need them).
        state = agent_flags.get("--state-dir", AGENT_STATE_DIR).rstrip("/")
        if not any(m and m.get("mountPath", "").rstrip("/") == state and not m.get("readOnly")
                   for hp, (_, m) in host_paths.items()):
            err(f"{kind}: state dir {state} is not a writable host path mount")
    else:
        if "--tls-cert=/etc/kspm/tls/$(NODE_NAME).crt" not in args or \
                "--tls-key=/etc/kspm/tls/$(NODE_NAME).key" not in args:
            err(f"{kind}: the node's certificate and key are not chosen by $(NODE_NAME)")
        if secret_names(spec) != {"kspm-ca", "kspm-agent-tls"}:
            err(f"{kind}: secrets {secret_names(spec)}, expected kspm-ca and kspm-agent-tls")
        if tokens:
            err(f"{kind}: a projected serviceAccountToken in static mode")
        if token_env:
            err(f"{kind}: KSPM_ENROLL_TOKEN_FILE set in static mode")
    if get(spec, "securityContext", "seccompProfile", "type") != "RuntimeDefault":
        err(f"{kind}: seccomp profile is not RuntimeDefault")

# ---- collector Deployment
dep = one("Deployment", "kspm-collector")
if dep:
    kind = "Deployment kspm-collector"
    spec = dep["spec"]["template"]["spec"]
    c0 = (spec.get("containers") or [{}])[0]
    store = next((str(a)[len("--store="):] for a in c0.get("args") or []
                  if str(a).startswith("--store=")), "")
    postgres = store.startswith(("postgres://", "postgresql://"))
    if not postgres:
        if dep["spec"].get("replicas") != 1:
            err(f"{kind}: replicas is not 1 (sqlite has one writer)")
        if get(dep, "spec", "strategy", "type") != "Recreate":
            err(f"{kind}: strategy is not Recreate")
    else:
        # Several collectors share the database: rolled one at a time, kept up by a PDB.
        if get(dep, "spec", "strategy", "type") != "RollingUpdate" or \
                get(dep, "spec", "strategy", "rollingUpdate", "maxUnavailable") != 0:
            err(f"{kind}: on PostgreSQL the strategy is not RollingUpdate with maxUnavailable 0")
        pdb = one("PodDisruptionBudget", "kspm-collector")
        if pdb and get(pdb, "spec", "selector", "matchLabels") != \
                get(dep, "spec", "selector", "matchLabels"):
            err(f"{kind}: the PodDisruptionBudget does not select the collector's pods")
        userinfo = store.split("://", 1)[1].split("@", 1)[0] if "@" in store else ""
        if ":" in userinfo or "password=" in store:
            err(f"{kind}: the --store URL carries a password")
    psc = spec.get("securityContext") or {}
    if psc.get("runAsNonRoot") is not True or psc.get("runAsUser") in (None, 0):
        err(f"{kind}: does not run as non-root (runAsNonRoot true, runAsUser set, not 0)")
    for k in ("hostPID", "hostNetwork", "hostIPC"):
        if spec.get(k):
            err(f"{kind}: {k} is set")
    if any("hostPath" in v for v in spec.get("volumes") or []):
        err(f"{kind}: mounts a host path")
    no_privileged(kind, spec)
    c = (spec.get("containers") or [{}])[0]
    sc = c.get("securityContext") or {}
    if sc.get("runAsNonRoot") is False or sc.get("runAsUser") == 0:
        err(f"{kind}: container overrides non-root")
    if get(sc, "capabilities", "add"):
        err(f"{kind}: adds capabilities {get(sc, 'capabilities', 'add')}")
    probes(kind, c, 8080, ("/healthz", "/readyz"))
    args = [str(a) for a in c.get("args") or []]
    for want in ("serve", "--health-listen=0.0.0.0:8080") + \
            (() if postgres else ("--db=/var/lib/kspm/kspm.db",)):
        if want not in args:
            err(f"{kind}: argument {want} missing from {args}")
    # The cluster the agents report under is the one the collector files cluster results under.
    if not any(a.startswith("--cluster-name=") and len(a) > len("--cluster-name=") for a in args):
        err(f"{kind}: the collector is not told the cluster name (--cluster-name)")
    if "--cluster-name=$(KSPM_CLUSTER)" in args and not any(
            str(get(e, "configMapRef", "name") or "").startswith("kspm-agent-settings")
            for e in c.get("envFrom") or []):
        err(f"{kind}: --cluster-name uses $(KSPM_CLUSTER) but not the agents' settings ConfigMap")
    claim = None
    for v in spec.get("volumes") or []:
        if "persistentVolumeClaim" in v:
            m = [m for m in c.get("volumeMounts") or [] if m["name"] == v["name"]]
            if m and m[0]["mountPath"] == "/var/lib/kspm":
                claim = v["persistentVolumeClaim"]["claimName"]
    if postgres:
        if claim or any(d and d.get("kind") == "PersistentVolumeClaim" for d in docs):
            err(f"{kind}: a PersistentVolumeClaim on PostgreSQL (replicas cannot share it)")
    elif not claim:
        err(f"{kind}: no PersistentVolumeClaim mounted at /var/lib/kspm")
    else:
        one("PersistentVolumeClaim", claim)
    flags = flag_values(args)
    # The database password: a file in a read-only Secret mount (--store-password-file).
    store_secret = set()
    if postgres:
        pw = flags.get("--store-password-file", "")
        for v in spec.get("volumes") or []:
            mounts = [m for m in c.get("volumeMounts") or [] if m["name"] == v["name"]]
            if mounts and pw.startswith(mounts[0]["mountPath"].rstrip("/") + "/") and "secret" in v:
                store_secret = volume_secrets(v)
                if not mounts[0].get("readOnly"):
                    err(f"{kind}: the PostgreSQL Secret is mounted writable")
        if not store_secret:
            err(f"{kind}: --store-password-file {pw!r} is not in a Secret mount")
    enrol_flags = sorted(f for f in flags if f.startswith(("--enroll-", "--agent-")))
    # An alerts Secret (webhook URLs) is the one more the collector may mount: read-only, at
    # /etc/kspm/alerts, and read through --config.
    alerts = set()
    for v in spec.get("volumes") or []:
        mounts = [m for m in c.get("volumeMounts") or [] if m["name"] == v["name"]]
        if mounts and mounts[0]["mountPath"] == "/etc/kspm/alerts" and "secret" in v:
            alerts = volume_secrets(v)
            if not mounts[0].get("readOnly"):
                err(f"{kind}: the alerts Secret is mounted writable")
            if flags.get("--config") != "/etc/kspm/alerts/collector.toml":
                err(f"{kind}: the alerts Secret is mounted but --config does not read it")
    if mode == "token":
        want = {"kspm-ca", "kspm-collector-tls", CA_KEY_SECRET} | alerts | store_secret
        if secret_names(spec) != want:
            err(f"{kind}: secrets {secret_names(spec)}, expected {sorted(want)}")
        key = flags.get("--enroll-ca-key")
        vols = {v["name"]: v for v in spec.get("volumes") or []}
        mounted = {m["mountPath"].rstrip("/"): m for m in c.get("volumeMounts") or []}
        if not key:
            err(f"{kind}: no --enroll-ca-key: agents cannot enrol")
        else:
            m = mounted.get(os.path.dirname(key))
            v = vols.get(m["name"]) if m else None
            items = {i.get("key"): i for i in get(v, "secret", "items") or []}
            if not v or get(v, "secret", "secretName") != CA_KEY_SECRET:
                err(f"{kind}: --enroll-ca-key {key} is not in a mount of Secret {CA_KEY_SECRET}")
            elif set(items) != {"ca.key"} or items["ca.key"].get("path") != os.path.basename(key):
                err(f"{kind}: {CA_KEY_SECRET} volume does not hold exactly ca.key at {key}")
            elif items["ca.key"].get("mode", get(v, "secret", "defaultMode")) != 0o400:
                err(f"{kind}: the CA key's mode is not 0400")
            elif m.get("readOnly") is not True:
                err(f"{kind}: the CA key is mounted writable")
        if flags.get("--enroll-audience", ENROLL_AUDIENCE) != ENROLL_AUDIENCE:
            err(f"{kind}: --enroll-audience is not {ENROLL_AUDIENCE}, the agents' token audience")
        hours = flags.get("--enroll-cert-hours", "24")
        if not hours.isdigit() or not 1 <= int(hours) <= MAX_CERT_HOURS:
            err(f"{kind}: --enroll-cert-hours {hours}, expected 1..{MAX_CERT_HOURS}")
        for flag, want in (("--agent-service-account", "kspm-agent"),
                           ("--agent-daemonset", "kspm-agent")):
            if flags.get(flag, want) != want:
                err(f"{kind}: {flag} is {flags.get(flag)}, expected {want}")
        cenv = {e["name"]: e for e in c.get("env") or []}
        ns = flags.get("--agent-namespace", "$(POD_NAMESPACE)")
        if ns != namespace and not (ns == "$(POD_NAMESPACE)" and
                                    env_from_field(cenv, "POD_NAMESPACE", "metadata.namespace")):
            err(f"{kind}: --agent-namespace {ns} is not the agents' namespace {namespace}")
        if spec.get("automountServiceAccountToken") is not True:
            err(f"{kind}: no API token: enrolment needs TokenReview")
    else:
        if secret_names(spec) != {"kspm-ca", "kspm-collector-tls"} | alerts | store_secret:
            err(f"{kind}: secrets {secret_names(spec)}, expected kspm-ca and kspm-collector-tls")
        if enrol_flags:
            err(f"{kind}: enrolment flags {enrol_flags} in static mode")
    if spec.get("serviceAccountName") != "kspm-collector":
        err(f"{kind}: serviceAccountName is {spec.get('serviceAccountName')}")
    svc = one("Service", "kspm-collector")
    if svc:
        labels = dep["spec"]["template"]["metadata"]["labels"]
        sel = svc["spec"].get("selector") or {}
        if not sel or any(labels.get(k) != v for k, v in sel.items()):
            err("Service kspm-collector does not select the collector's pods")
        if 7443 not in [p.get("port") for p in svc["spec"].get("ports") or []]:
            err("Service kspm-collector does not serve port 7443")

# ---- RBAC: exactly the grants derived from the collector's code (rbac_rules.py), never Secrets.
errors.extend(rbac_rules.check(by_kind, namespace, mode))
for name in ("kspm-agent", "kspm-collector"):
    sa = one("ServiceAccount", name)
    if sa and sa.get("automountServiceAccountToken") is not False:
        err(f"ServiceAccount {name}: token automount not off by default")

# ---- NetworkPolicies
def policy_ports(rules):
    return {p.get("port") for r in rules or [] for p in r.get("ports") or []}


npc = one("NetworkPolicy", "kspm-collector")
if npc:
    ingress = npc["spec"].get("ingress") or []
    grpc = [r for r in ingress if 7443 in policy_ports([r])]
    if not grpc or not any(get(f, "podSelector", "matchLabels", "app.kubernetes.io/name") ==
                           "kspm-agent" for r in grpc for f in r.get("from") or []):
        err("NetworkPolicy kspm-collector: agents cannot reach 7443")
    if any(not r.get("from") for r in grpc):
        err("NetworkPolicy kspm-collector: 7443 open to every source")
    if policy_ports(ingress) != {7443, 8080}:
        err(f"NetworkPolicy kspm-collector: ingress ports {policy_ports(ingress)}")
npa = one("NetworkPolicy", "kspm-agent")
if npa:
    egress = npa["spec"].get("egress") or []
    if policy_ports(egress) != {7443, 53}:
        err(f"NetworkPolicy kspm-agent: egress ports {policy_ports(egress)}, expected 7443, 53")
    if "Egress" not in (npa["spec"].get("policyTypes") or []):
        err("NetworkPolicy kspm-agent: egress not restricted")

# ---- Namespace, when rendered
for ns in by_kind.get("Namespace", []):
    if ns["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") != "privileged":
        err(f"Namespace {ns['metadata']['name']}: the agent needs PSA enforce=privileged")

# Nothing anywhere is privileged, whatever its kind; only the collector holds the CA key.
for d in docs:
    spec = get(d, "spec", "template", "spec") or (d.get("spec") if d["kind"] == "Pod" else None)
    if spec:
        for c in pod_containers(spec):
            if get(c, "securityContext", "privileged") is True:
                err(f"{d['kind']} {d['metadata']['name']}: privileged container")
        if CA_KEY_SECRET in secret_names(spec) and \
                (d["kind"], d["metadata"]["name"]) != ("Deployment", "kspm-collector"):
            err(f"{d['kind']} {d['metadata']['name']}: mounts the CA key")

for e in errors:
    print(f"{label}: {e}")
print(f"{label}: {len(docs)} objects, {mode} mode, {len(errors)} problems")
sys.exit(1 if errors else 0)

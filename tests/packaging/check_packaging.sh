#!/usr/bin/env bash
# Checks kspm's packaging against what the agent and the collector actually need:
#   1. systemd units: `systemd-analyze verify` (no warning tolerated), the hardening each unit
#      promises, and `systemd-analyze security` exposure thresholds;
#   2. Kubernetes: the Kustomize base renders, and a structural test of the rendered objects
#      (every toleration, host mount, capability and RBAC rule of the agent and the collector,
#      and how agents get their node certificate: token enrolment in the base, static
#      certificates with components/static-certs);
#   3. Helm: template syntax (balanced actions and blocks, defined includes, existing values),
#      then the chart rendered (by helm when installed, else by a small renderer of the template
#      subset the chart uses) in both enrolment modes and put through the same structural test;
#   4. Debian maintainer scripts: POSIX syntax, shellcheck, and a sandboxed install, upgrade,
#      remove and purge (a private mount namespace with /etc, /usr and /var on overlays, as root);
#   5. Dockerfiles: multi-stage on Debian 12, slim runtime, the collector non-root.
# Usage: tests/packaging/check_packaging.sh   (from anywhere; exits non-zero on any failure)
# Needs: systemd-analyze, kubectl, python3 with PyYAML; shellcheck, unshare and root are optional
# (what cannot run is reported as SKIP).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PKG="$ROOT/packaging"

# ---------------------------------------------------------------------------------------------
# 4b. Sandboxed maintainer-script run. Invoked by this script itself inside `unshare -m`.
# ---------------------------------------------------------------------------------------------
if [[ "${1:-}" == "--debian-sandbox" ]]; then
  sb="$2"
  fail=0
  bad() { echo "FAIL debian sandbox: $*"; fail=1; }
  mount --make-rprivate / || exit 3
  mount -t tmpfs -o mode=0700 kspm-sandbox "$sb" || exit 3
  dirs=(etc usr var)
  [[ -L /lib ]] || dirs+=(lib)  # not merged-/usr: /lib/systemd/system is a directory of its own
  for d in "${dirs[@]}"; do
    mkdir -p "$sb/$d/upper" "$sb/$d/work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$sb/$d/upper,workdir=$sb/$d/work" "/$d" \
      || exit 3
  done
  # Hide a running systemd: the scripts must not touch the real service manager from here.
  if [[ -d /run/systemd/system ]]; then mount -t tmpfs tmpfs /run/systemd || exit 3; fi
  if getent passwd kspm >/dev/null || getent group kspm >/dev/null; then
    userdel kspm >/dev/null 2>&1; groupdel kspm >/dev/null 2>&1  # only inside the overlay
  fi
  wants=/etc/systemd/system/multi-user.target.wants
  # What dpkg unpacks before postinst.
  install -m 0644 "$PKG/systemd/kspm-agent.service" "$PKG/systemd/kspm-collector.service" \
    /lib/systemd/system/
  install -d /usr/share/kspm
  install -m 0644 "$PKG/debian/agent.yaml" "$PKG/debian/collector.env" /usr/share/kspm/
  has_dsh=0
  command -v deb-systemd-helper >/dev/null && has_dsh=1
  # As dpkg runs them: deb-systemd-helper refuses to act outside a maintainer script.
  maint() {  # package script args...
    DPKG_MAINTSCRIPT_PACKAGE=$1 DPKG_MAINTSCRIPT_NAME=$2 sh "$PKG/debian/$1/$2" "${@:3}"
  }

  # Install: collector first, then the agent (either order must work; this is the harder one
  # for /etc/kspm/tls, which the collector creates in group kspm).
  maint kspm-collector postinst configure "" >/dev/null \
    || bad "kspm-collector postinst configure failed"
  maint kspm-agent postinst configure "" >/dev/null || bad "kspm-agent postinst configure failed"
  if ! pw=$(getent passwd kspm); then
    bad "user kspm not created"
  else
    IFS=: read -r _ _ uid gid _ home shell <<<"$pw"
    ((uid < 1000)) || bad "kspm is not a system user (uid $uid)"
    [[ "$home" == /var/lib/kspm ]] || bad "kspm's home is $home, expected /var/lib/kspm"
    [[ "$shell" == */nologin ]] || bad "kspm's shell is $shell, expected nologin"
    [[ "$(getent group kspm | cut -d: -f3)" == "$gid" ]] || bad "kspm's primary group is not kspm"
  fi
  expect_stat() {  # path, "owner:group mode"
    local got
    got=$(stat -c '%U:%G %a' "$1" 2>/dev/null) || { bad "$1 missing"; return; }
    [[ "$got" == "$2" ]] || bad "$1 is $got, expected $2"
  }
  expect_stat /var/lib/kspm "kspm:kspm 750"
  expect_stat /var/lib/kspm-agent "root:root 700"
  expect_stat /etc/kspm "root:root 755"
  expect_stat /etc/kspm/tls "root:kspm 750"
  expect_stat /etc/kspm/agent.yaml "root:root 644"
  expect_stat /etc/kspm/collector.env "root:root 644"
  if ((has_dsh)); then
    for u in kspm-agent kspm-collector; do
      [[ -L "$wants/$u.service" ]] || bad "$u.service not enabled by postinst"
    done
  fi

  # Upgrade: postinst configure OLD-VERSION keeps local edits and modes.
  echo "# local edit" >>/etc/kspm/agent.yaml
  echo "KSPM_LOG_LEVEL=debug" >>/etc/kspm/collector.env
  chmod 0700 /etc/kspm/tls
  maint kspm-collector postinst configure 0.0.9 >/dev/null \
    || bad "kspm-collector postinst upgrade failed"
  maint kspm-agent postinst configure 0.0.9 >/dev/null || bad "kspm-agent postinst upgrade failed"
  grep -q "local edit" /etc/kspm/agent.yaml || bad "upgrade overwrote /etc/kspm/agent.yaml"
  grep -q "KSPM_LOG_LEVEL=debug" /etc/kspm/collector.env \
    || bad "upgrade overwrote /etc/kspm/collector.env"
  expect_stat /etc/kspm/tls "root:kspm 700"
  chmod 0750 /etc/kspm/tls
  [[ $(getent passwd | grep -c '^kspm:') == 1 ]] || bad "upgrade duplicated user kspm"

  # An administrator's certificate, which no purge may delete.
  echo key >/etc/kspm/tls/collector.key
  chgrp kspm /etc/kspm/tls/collector.key
  chmod 0640 /etc/kspm/tls/collector.key

  # Remove: prerm, dpkg deletes the package's files, postrm. Data and user stay.
  for p in kspm-agent kspm-collector; do
    maint $p prerm remove >/dev/null || bad "$p prerm remove failed"
  done
  rm -f /lib/systemd/system/kspm-agent.service /lib/systemd/system/kspm-collector.service \
    /usr/share/kspm/agent.yaml /usr/share/kspm/collector.env
  rmdir /usr/share/kspm
  for p in kspm-agent kspm-collector; do
    maint $p postrm remove >/dev/null || bad "$p postrm remove failed"
  done
  [[ -d /var/lib/kspm ]] || bad "remove (not purge) deleted /var/lib/kspm"
  getent passwd kspm >/dev/null || bad "remove (not purge) deleted user kspm"
  [[ -e "$wants/kspm-agent.service" ]] && bad "kspm-agent.service still enabled after remove"

  # Purge: state, settings, unit state and the user go; the administrator's key stays.
  for p in kspm-agent kspm-collector; do
    maint $p postrm purge >/dev/null || bad "$p postrm purge failed"
  done
  for path in /var/lib/kspm /var/lib/kspm-agent /etc/kspm/agent.yaml /etc/kspm/collector.env \
    "$wants/kspm-agent.service" "$wants/kspm-collector.service" \
    /etc/systemd/system/kspm-agent.service /etc/systemd/system/kspm-collector.service; do
    [[ -e "$path" || -L "$path" ]] && bad "$path left after purge"
  done
  find /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
    -name '*kspm*' 2>/dev/null | grep -q . \
    && bad "deb-systemd-helper state of kspm left after purge"
  getent passwd kspm >/dev/null && bad "user kspm left after purge"
  getent group kspm >/dev/null && bad "group kspm left after purge"
  expect_stat /etc/kspm/tls/collector.key "root:root 640"

  # Purge with nothing of the administrator's left: /etc/kspm disappears entirely.
  rm -f /etc/kspm/tls/collector.key
  maint kspm-collector postrm purge >/dev/null || bad "second purge failed"
  [[ -e /etc/kspm ]] && bad "/etc/kspm left after purge of both packages"
  exit "$fail"
fi

# ---------------------------------------------------------------------------------------------
failures=()
fail() { failures+=("$*"); echo "FAIL $*"; }
ok() { echo "ok   $*"; }
skip() { echo "SKIP $*"; }

TMP=$(mktemp -d /tmp/kspm-packaging.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

need() { command -v "$1" >/dev/null 2>&1; }
if ! need python3 || ! python3 -c 'import yaml' 2>/dev/null; then
  fail "python3 with PyYAML is required (Debian: apt-get install python3 python3-yaml)"
  HAVE_PY=0
else
  HAVE_PY=1
fi

# ---------------------------------------------------------------------------------------------
# 1. systemd units
# ---------------------------------------------------------------------------------------------
check_unit() {
  local name=$1 threshold=$2
  local src="$PKG/systemd/$name.service" dir="$TMP/systemd"
  mkdir -p "$dir/bin"
  [[ -f "$src" ]] || { fail "systemd: $src missing"; return; }
  # verify insists that ExecStart names an executable: point /usr/bin/ at stubs.
  printf '#!/bin/sh\nexit 0\n' >"$dir/bin/$name"
  chmod 0755 "$dir/bin/$name"
  sed "s#/usr/bin/#$dir/bin/#g" "$src" >"$dir/$name.service"
  local out rc
  out=$(cd "$dir" && systemd-analyze verify "./$name.service" 2>&1)
  rc=$?
  if ((rc != 0)) || [[ -n "$out" ]]; then
    fail "systemd: systemd-analyze verify $name.service (rc $rc): $out"
  else
    ok "systemd: systemd-analyze verify $name.service"
  fi
  out=$(cd "$dir" && systemd-analyze security --offline=true --threshold="$threshold" \
    "./$name.service" 2>&1)
  rc=$?
  local level
  level=$(grep -o 'Overall exposure level.*' <<<"$out" | head -1)
  if ((rc != 0)); then
    fail "systemd: $name.service exposure above $((threshold / 10)).$((threshold % 10)): $level"
  else
    ok "systemd: $name.service $level"
  fi
}

unit_has() {  # unit, directive line (exact)
  grep -qxF "$2" "$PKG/systemd/$1.service" || fail "systemd: $1.service lacks '$2'"
}

if need systemd-analyze; then
  check_unit kspm-agent 35
  check_unit kspm-collector 20
else
  fail "systemd: systemd-analyze not found (Debian package systemd)"
fi
for u in kspm-agent kspm-collector; do
  for d in ProtectSystem=strict NoNewPrivileges=yes PrivateTmp=yes Restart=on-failure \
    ConfigurationDirectory=kspm ProtectKernelModules=yes ProtectKernelTunables=yes \
    ProtectControlGroups=yes RestrictSUIDSGID=yes; do
    unit_has "$u" "$d"
  done
done
unit_has kspm-agent "ProtectHome=read-only"
unit_has kspm-agent \
  "CapabilityBoundingSet=CAP_DAC_READ_SEARCH CAP_SYS_PTRACE CAP_BPF CAP_PERFMON CAP_SYS_RESOURCE"
unit_has kspm-agent "StateDirectory=kspm-agent"
unit_has kspm-collector "ProtectHome=yes"
unit_has kspm-collector "User=kspm"
unit_has kspm-collector "CapabilityBoundingSet="
unit_has kspm-collector "StateDirectory=kspm"
# ExecStart as one line (systemd joins lines ending in a backslash).
exec_start() {
  sed -e ':a' -e '/\\$/N; s/\\\n */ /; ta' "$PKG/systemd/$1.service" | grep '^ExecStart='
}
agent_exec=$(exec_start kspm-agent)
[[ "$agent_exec" == "ExecStart=/usr/bin/kspm-agent "*" run --config /etc/kspm/agent.yaml"* ]] \
  || fail "systemd: kspm-agent ExecStart is not 'run --config /etc/kspm/agent.yaml'"
for want in " serve " " --db /var/lib/kspm/kspm.db " " --tls-ca /etc/kspm/tls/ca.crt " \
  " --tls-cert /etc/kspm/tls/collector.crt " " --tls-key /etc/kspm/tls/collector.key "; do
  [[ "$(exec_start kspm-collector)" == *"$want"* ]] \
    || fail "systemd: kspm-collector ExecStart lacks '$want'"
done
grep -q '^User=' "$PKG/systemd/kspm-agent.service" && fail "systemd: the agent must run as root"
grep -q '^ProtectProc=invisible' "$PKG/systemd/kspm-agent.service" \
  && fail "systemd: ProtectProc=invisible hides the processes the agent discovers"

# ---------------------------------------------------------------------------------------------
# Structural test, shared by the Kustomize and the Helm renderings.
# ---------------------------------------------------------------------------------------------
cat >"$TMP/structure.py" <<'PY'
"""Structural test of rendered kspm manifests: python3 structure.py LABEL NAMESPACE FILE [MODE].

MODE is how agents get their node certificate: token (enrolment with a projected service-account
token, the default) or static (one certificate per node from a Secret).
"""
import os
import sys
import yaml

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

# What the collector's cluster checks read: (apiGroup, resource), each with get, list and watch.
CHECK_READS = {
    ("", "pods"), ("", "namespaces"), ("", "serviceaccounts"), ("", "nodes"),
    ("", "services"), ("", "replicationcontrollers"),
    ("apps", "deployments"), ("apps", "daemonsets"), ("apps", "statefulsets"),
    ("apps", "replicasets"), ("batch", "jobs"), ("batch", "cronjobs"),
    ("networking.k8s.io", "networkpolicies"),
    ("rbac.authorization.k8s.io", "roles"), ("rbac.authorization.k8s.io", "rolebindings"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
    ("admissionregistration.k8s.io", "validatingadmissionpolicybindings"),
}
READ_VERBS = {"get", "list", "watch"}
# Token enrolment: review an agent's token, then read the pod it names (already granted by the
# checks: listing it here says enrolment needs it, not that it is granted twice).
ENROLMENT_GRANTS = {("authentication.k8s.io", "tokenreviews", "create"), ("", "pods", "get")}
# The ClusterRole grants exactly these (apiGroup, resource, verb); anything more fails.
EXPECTED_GRANTS = {(g, r, v) for g, r in CHECK_READS for v in READ_VERBS}
if mode == "token":
    EXPECTED_GRANTS |= ENROLMENT_GRANTS
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
    if dep["spec"].get("replicas") != 1:
        err(f"{kind}: replicas is not 1 (sqlite has one writer)")
    if get(dep, "spec", "strategy", "type") != "Recreate":
        err(f"{kind}: strategy is not Recreate")
    spec = dep["spec"]["template"]["spec"]
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
    for want in ("serve", "--db=/var/lib/kspm/kspm.db", "--health-listen=0.0.0.0:8080"):
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
    if not claim:
        err(f"{kind}: no PersistentVolumeClaim mounted at /var/lib/kspm")
    else:
        one("PersistentVolumeClaim", claim)
    flags = flag_values(args)
    enrol_flags = sorted(f for f in flags if f.startswith(("--enroll-", "--agent-")))
    if mode == "token":
        want = {"kspm-ca", "kspm-collector-tls", CA_KEY_SECRET}
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
        if secret_names(spec) != {"kspm-ca", "kspm-collector-tls"}:
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

# ---- RBAC: exactly what the cluster checks read (+ enrolment in token mode), never Secrets.
role = one("ClusterRole", "kspm-collector-read")
if role:
    granted = set()
    for r in role.get("rules") or []:
        if r.get("nonResourceURLs"):
            err("ClusterRole: grants nonResourceURLs")
        if r.get("resourceNames"):
            err("ClusterRole: resourceNames (this test does not model them)")
        for g in r.get("apiGroups") or []:
            for res in r.get("resources") or []:
                for verb in r.get("verbs") or []:
                    granted.add((g, res, verb))
    for g, res, verb in sorted(granted):
        if "*" in (g, res, verb) or "/" in res:
            err(f"ClusterRole: wildcard or subresource {g}/{res} {verb}")
        if res in ("secrets", "configmaps"):
            err(f"ClusterRole: grants {res}")
    if granted != EXPECTED_GRANTS:
        extra, missing = granted - EXPECTED_GRANTS, EXPECTED_GRANTS - granted
        err(f"ClusterRole ({mode} mode): extra {sorted(extra)} missing {sorted(missing)}")
for kind in ("Role", "ClusterRole"):
    for r in by_kind.get(kind, []):
        if r["metadata"]["name"] != "kspm-collector-read":
            err(f"unexpected {kind} {r['metadata']['name']}")
for kind in ("RoleBinding", "ClusterRoleBinding"):
    for b in by_kind.get(kind, []):
        subjects = [(s.get("kind"), s.get("name"), s.get("namespace"))
                    for s in b.get("subjects") or []]
        if b["metadata"]["name"] != "kspm-collector-read" or \
                b["roleRef"]["name"] != "kspm-collector-read" or \
                subjects != [("ServiceAccount", "kspm-collector", namespace)]:
            err(f"{kind} {b['metadata']['name']}: binds {b['roleRef']['name']} to {subjects}")
if not by_kind.get("ClusterRoleBinding"):
    err("no ClusterRoleBinding for kspm-collector-read")
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
PY

structure() {  # label namespace file [token|static]
  local out
  if out=$(python3 "$TMP/structure.py" "$@" 2>&1); then
    ok "$(tail -1 <<<"$out")"
  else
    while IFS= read -r line; do fail "$line"; done <<<"$out"
  fi
}

# ---------------------------------------------------------------------------------------------
# 2. Kustomize base
# ---------------------------------------------------------------------------------------------
if need kubectl; then
  if kubectl kustomize "$PKG/kubernetes/base" >"$TMP/kustomize.yaml" 2>"$TMP/kustomize.err"; then
    ok "kubernetes: kubectl kustomize packaging/kubernetes/base"
    ((HAVE_PY)) && structure kustomize kspm-system "$TMP/kustomize.yaml" token
  else
    fail "kubernetes: kubectl kustomize failed: $(cat "$TMP/kustomize.err")"
  fi
  # The static-certs component, through an overlay as a user would write it (kustomize takes
  # relative paths only).
  mkdir -p "$TMP/static-overlay"
  rel=$(realpath --relative-to="$TMP/static-overlay" "$PKG/kubernetes")
  printf 'resources: [%s/base]\ncomponents: [%s/components/static-certs]\n' "$rel" "$rel" \
    >"$TMP/static-overlay/kustomization.yaml"
  if kubectl kustomize "$TMP/static-overlay" >"$TMP/kustomize-static.yaml" \
    2>"$TMP/kustomize.err"; then
    ok "kubernetes: kubectl kustomize base + components/static-certs"
    ((HAVE_PY)) && structure "kustomize (static-certs)" kspm-system "$TMP/kustomize-static.yaml" \
      static
  else
    fail "kubernetes: static-certs component failed: $(cat "$TMP/kustomize.err")"
  fi
else
  fail "kubernetes: kubectl not found"
fi
grep -q 'kspmctl certs init' "$PKG/kubernetes/README.md" \
  || fail "kubernetes: README does not say how to create the certificates"
for s in kspm-ca kspm-ca-key kspm-collector-tls kspm-agent-tls; do
  grep -q "create secret .*$s" "$PKG/kubernetes/README.md" \
    || fail "kubernetes: README does not create Secret $s"
done
for cmd in 'kspmctl nodes revoke' 'kspmctl nodes allow' 'kspmctl certs issue'; do
  grep -q "$cmd" "$PKG/kubernetes/README.md" || fail "kubernetes: README does not explain $cmd"
done
if grep -rqE '^kind: Secret' "$PKG/kubernetes" "$PKG/helm/kspm/templates"; then
  fail "kubernetes: a Secret is in the manifests; certificates are created by the user"
fi

# ---------------------------------------------------------------------------------------------
# 3. Helm chart
# ---------------------------------------------------------------------------------------------
cat >"$TMP/helm_render.py" <<'PY'
"""Lints and renders the kspm chart without Helm.

Usage: python3 helm_render.py CHART NAMESPACE OUT [--set KEY=VALUE ...]
Lint: balanced {{ }} and blocks, every include defined, every .Values path present.
Render: the subset of Go templates and Helm functions the chart uses (if/else/with/define/end,
include, toYaml, nindent, indent, quote, default, printf, replace, eq, fail); anything else is an
error, so that a template construct this renderer does not know fails loudly instead of passing.
--set as Helm's for plain dotted keys (the value read as YAML: true, 24, static).
"""
import json
import os
import re
import sys
import yaml

chart_dir, namespace, out_path = sys.argv[1:4]
errors = []

chart = yaml.safe_load(open(os.path.join(chart_dir, "Chart.yaml")))
values = yaml.safe_load(open(os.path.join(chart_dir, "values.yaml")))
overrides = sys.argv[4:]
while overrides:
    if overrides[0] != "--set" or len(overrides) < 2 or "=" not in overrides[1]:
        sys.exit(f"helm: bad arguments {overrides}")
    key, value = overrides[1].split("=", 1)
    *parents, leaf = key.split(".")
    node = values
    for k in parents:
        node = node.setdefault(k, {})
    node[leaf] = yaml.safe_load(value)
    overrides = overrides[2:]
for k in ("apiVersion", "name", "version", "appVersion"):
    if k not in chart:
        errors.append(f"Chart.yaml: no {k}")
if chart.get("apiVersion") != "v2":
    errors.append("Chart.yaml: apiVersion is not v2")
for k in ("clusterName",):
    if k not in values:
        errors.append(f"values.yaml: no {k}")
for path in (("agent", "image", "repository"), ("agent", "image", "tag"), ("agent", "interval"),
             ("agent", "resources"), ("agent", "tolerations"), ("agent", "nodeSelector"),
             ("collector", "image", "repository"), ("collector", "resources"),
             ("collector", "storage", "size"), ("enrollment", "mode"),
             ("enrollment", "certificateHours"), ("tls", "caKeySecret")):
    v = values
    for k in path:
        v = v.get(k) if isinstance(v, dict) else None
        if v is None and k != "tag":
            errors.append(f"values.yaml: no {'.'.join(path)}")
            break

ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)


class TemplateError(Exception):
    pass


def lex(text, name):
    if text.count("{{") != text.count("}}"):
        raise TemplateError(f"{name}: {text.count('{{')} '{{{{' but {text.count('}}')} '}}}}'")
    tokens, pos = [], 0
    for m in ACTION.finditer(text):
        tokens.append(["text", text[pos:m.start()]])
        tokens.append(["action", m.group(2).strip(), bool(m.group(1)), bool(m.group(3))])
        pos = m.end()
    tokens.append(["text", text[pos:]])
    for i, t in enumerate(tokens):
        if t[0] != "action":
            continue
        if t[2] and i > 0:
            tokens[i - 1][1] = tokens[i - 1][1].rstrip(" \t\r\n")
        if t[3] and i + 1 < len(tokens):
            tokens[i + 1][1] = tokens[i + 1][1].lstrip(" \t\r\n")
    return tokens


def parse(tokens, name):
    """Returns (nodes, defines). Nodes: ("text", s) ("expr", p) ("if"|"with", p, body, else)."""
    defines = {}
    stack = [("root", [], None)]
    for t in tokens:
        if t[0] == "text":
            if t[1]:
                stack[-1][1].append(("text", t[1]))
            continue
        body = t[1]
        if body.startswith("/*"):
            if not body.endswith("*/"):
                raise TemplateError(f"{name}: unterminated comment")
            continue
        word = body.split(None, 1)[0] if body else ""
        rest = body[len(word):].strip()
        if word in ("if", "with", "define"):
            stack.append((word, [], rest))
        elif word == "range":
            raise TemplateError(f"{name}: range is not supported by this renderer")
        elif word == "else":
            if rest or stack[-1][0] not in ("if", "with"):
                raise TemplateError(f"{name}: unsupported else")
            kind, nodes, arg = stack.pop()
            stack.append((kind + "-else", [], (arg, nodes)))
        elif word == "end":
            if len(stack) == 1:
                raise TemplateError(f"{name}: unbalanced end")
            kind, nodes, arg = stack.pop()
            if kind == "define":
                defines[json.loads(arg)] = nodes
            elif kind.endswith("-else"):
                stack[-1][1].append((kind[:-5], arg[0], arg[1], nodes))
            else:
                stack[-1][1].append((kind, arg, nodes, []))
        else:
            stack[-1][1].append(("expr", body))
    if len(stack) != 1:
        raise TemplateError(f"{name}: {len(stack) - 1} block(s) without end")
    return stack[0][1], defines


TOKEN = re.compile(r'\s*("(?:[^"\\]|\\.)*"|\$|\.[A-Za-z0-9_.]*|-?\d+|[A-Za-z_][A-Za-z0-9_]*)')


def split_pipeline(p):
    parts, cur, quoted = [], "", False
    for ch in p:
        if ch == '"':
            quoted = not quoted
        if ch == "|" and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [x.strip() for x in parts]


def tokens_of(cmd):
    out, pos = [], 0
    while pos < len(cmd.rstrip()):
        m = TOKEN.match(cmd, pos)
        if not m:
            raise TemplateError(f"cannot parse {cmd!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def gostr(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def truthy(v):
    return v not in (None, False, 0, "", [], {})


class Renderer:
    def __init__(self, root, defines):
        self.root = root
        self.defines = defines

    def value(self, tok, dot):
        if tok.startswith('"'):
            return json.loads(tok)
        if re.fullmatch(r"-?\d+", tok):
            return int(tok)
        if tok == "$":
            return self.root
        if tok.startswith("."):
            v = dot
            path = [p for p in tok.split(".") if p]
            for i, k in enumerate(path):
                if not isinstance(v, dict) or k not in v:
                    raise TemplateError(f"{tok}: no {'.'.join(path[:i + 1])}")
                v = v[k]
            return v
        raise TemplateError(f"unknown function or value {tok}")

    def call(self, fn, args):
        if fn == "include":
            name, ctx = args
            if name not in self.defines:
                raise TemplateError(f"include of undefined template {name!r}")
            return self.render(self.defines[name], ctx)
        if fn == "toYaml":
            return yaml.safe_dump(args[0], default_flow_style=False, sort_keys=True).rstrip("\n")
        if fn == "nindent":
            return "\n" + self.call("indent", args)
        if fn == "indent":
            pad = " " * args[0]
            return "\n".join(pad + line for line in gostr(args[1]).split("\n"))
        if fn == "quote":
            return json.dumps(gostr(args[0]))
        if fn == "default":
            return args[1] if truthy(args[1]) else args[0]
        if fn == "printf":
            return args[0].replace("%v", "%s") % tuple(gostr(a) for a in args[1:])
        if fn == "replace":
            return gostr(args[2]).replace(args[0], args[1])
        if fn == "eq":
            return args[0] == args[1]
        if fn == "fail":
            raise TemplateError(f"fail: {args[0]}")
        raise TemplateError(f"function {fn} is not supported by this renderer")

    def pipeline(self, p, dot):
        result, first = None, True
        for cmd in split_pipeline(p):
            toks = tokens_of(cmd)
            if not toks:
                raise TemplateError(f"empty command in {p!r}")
            head = toks[0]
            if head.startswith(('"', ".", "$")) or re.fullmatch(r"-?\d+", head):
                if len(toks) != 1 or not first:
                    raise TemplateError(f"cannot parse {cmd!r}")
                result = self.value(head, dot)
            else:
                args = [self.value(t, dot) for t in toks[1:]]
                if not first:
                    args.append(result)
                result = self.call(head, args)
            first = False
        return result

    def render(self, nodes, dot):
        out = []
        for n in nodes:
            if n[0] == "text":
                out.append(n[1])
            elif n[0] == "expr":
                out.append(gostr(self.pipeline(n[1], dot)))
            else:
                v = self.pipeline(n[1], dot)
                if truthy(v):
                    out.append(self.render(n[2], v if n[0] == "with" else dot))
                else:
                    out.append(self.render(n[3], dot))
        return "".join(out)


tdir = os.path.join(chart_dir, "templates")
parsed, defines = {}, {}
for f in sorted(os.listdir(tdir)):
    if f == "NOTES.txt" or not (f.endswith(".yaml") or f.endswith(".tpl") or f.endswith(".txt")):
        continue
    try:
        nodes, d = parse(lex(open(os.path.join(tdir, f)).read(), f), f)
    except TemplateError as e:
        errors.append(str(e))
        continue
    defines.update(d)
    parsed[f] = nodes

root = {
    "Values": values,
    "Release": {"Name": "kspm", "Namespace": namespace, "Service": "Helm"},
    "Chart": {"Name": chart.get("name"), "Version": chart.get("version"),
              "AppVersion": chart.get("appVersion")},
}
renderer = Renderer(root, defines)
docs = []
for f, nodes in parsed.items():
    if f.startswith("_"):
        continue
    for namespace_create in (False, True):
        values.setdefault("namespace", {})["create"] = namespace_create
        try:
            text = renderer.render(nodes, root)
            rendered = [d for d in yaml.safe_load_all(text) if d]
        except (TemplateError, yaml.YAMLError) as e:
            errors.append(f"{f}: {e}")
            break
        # The namespace is rendered once (create=true); every other file does not depend on it.
        if (f == "namespace.yaml") == namespace_create:
            docs.append(f"# Source: {f}\n" + text.strip("\n"))
try:
    nodes, _ = parse(lex(open(os.path.join(tdir, "NOTES.txt")).read(), "NOTES.txt"), "NOTES.txt")
    renderer.render(nodes, root)
except (OSError, TemplateError) as e:
    errors.append(f"NOTES.txt: {e}")

open(out_path, "w").write("\n---\n".join(docs) + "\n")
for e in errors:
    print(f"helm: {e}")
sys.exit(1 if errors else 0)
PY

CHART="$PKG/helm/kspm"
if ((HAVE_PY)); then
  # Balanced actions, independently of the renderer.
  for f in "$CHART"/templates/*; do
    o=$(grep -o '{{' "$f" | wc -l)
    c=$(grep -o '}}' "$f" | wc -l)
    ((o == c)) || fail "helm: $(basename "$f"): $o '{{' but $c '}}'"
  done
  # helm_template OUT [--set K=V ...]: the chart rendered by helm, else by the built-in renderer.
  helm_template() {
    local out=$1
    shift
    if need helm; then
      helm template kspm "$CHART" --namespace kspm-system --set namespace.create=true "$@" \
        >"$out" 2>"$out.log"
    else
      python3 "$TMP/helm_render.py" "$CHART" kspm-system "$out" "$@" >"$out.log" 2>&1
    fi
  }
  if need helm; then
    if helm lint --strict "$CHART" >"$TMP/helm.log" 2>&1 && helm_template "$TMP/helm.yaml"; then
      ok "helm: helm lint --strict and helm template"
    else
      fail "helm: $(cat "$TMP/helm.log" "$TMP/helm.yaml.log" 2>/dev/null)"
    fi
  elif helm_template "$TMP/helm.yaml"; then
    ok "helm: chart lint and render (helm is not installed: built-in renderer)"
  else
    while IFS= read -r line; do fail "$line"; done <"$TMP/helm.yaml.log"
  fi
  [[ -s "$TMP/helm.yaml" ]] && structure helm kspm-system "$TMP/helm.yaml" token
  if helm_template "$TMP/helm-static.yaml" --set enrollment.mode=static; then
    structure "helm (enrollment.mode=static)" kspm-system "$TMP/helm-static.yaml" static
  else
    fail "helm: enrollment.mode=static: $(cat "$TMP/helm-static.yaml.log")"
  fi
  if helm_template "$TMP/helm-bad.yaml" --set enrollment.mode=tokn; then
    fail "helm: enrollment.mode=tokn rendered instead of failing"
  elif grep -q 'enrollment.mode must be token or static' "$TMP/helm-bad.yaml.log"; then
    ok "helm: an unknown enrollment.mode fails the rendering"
  else
    fail "helm: enrollment.mode=tokn failed for another reason: $(cat "$TMP/helm-bad.yaml.log")"
  fi
  # Both ways install the same RBAC rules, in either mode.
  for m in "" -static; do
    [[ -s "$TMP/helm$m.yaml" && -s "$TMP/kustomize$m.yaml" ]] || continue
    python3 - "$TMP/kustomize$m.yaml" "$TMP/helm$m.yaml" <<'PY' \
      || fail "helm: ClusterRole rules differ from the Kustomize base${m:+ with static-certs}"
import sys, yaml
def rules(p):
    return [d["rules"] for d in yaml.safe_load_all(open(p)) if d and d["kind"] == "ClusterRole"]
sys.exit(0 if rules(sys.argv[1]) == rules(sys.argv[2]) else 1)
PY
  done
fi

# ---------------------------------------------------------------------------------------------
# 4. Debian maintainer scripts
# ---------------------------------------------------------------------------------------------
for p in kspm-agent kspm-collector; do
  for s in postinst prerm postrm; do
    f="$PKG/debian/$p/$s"
    if [[ ! -f "$f" ]]; then
      fail "debian: $p/$s missing"
      continue
    fi
    [[ -x "$f" ]] || fail "debian: $p/$s is not executable"
    head -1 "$f" | grep -qx '#!/bin/sh' || fail "debian: $p/$s is not #!/bin/sh"
    grep -qx 'set -e' "$f" || fail "debian: $p/$s lacks set -e"
    sh -n "$f" || fail "debian: $p/$s: sh syntax"
    if need dash; then dash -n "$f" || fail "debian: $p/$s: dash syntax"; fi
  done
done
if need shellcheck; then
  if shellcheck -s sh "$PKG"/debian/*/postinst "$PKG"/debian/*/prerm "$PKG"/debian/*/postrm \
    >"$TMP/shellcheck.log" 2>&1; then
    ok "debian: shellcheck -s sh on the maintainer scripts"
  else
    fail "debian: shellcheck: $(cat "$TMP/shellcheck.log")"
  fi
else
  skip "debian: shellcheck not installed"
fi
if ((HAVE_PY)); then
  python3 -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$PKG/debian/agent.yaml" \
    || fail "debian: agent.yaml is not valid YAML"
fi
if [[ $(id -u) -eq 0 ]] && need unshare && need getent; then
  mkdir -p "$TMP/sandbox"
  out=$(unshare -m bash "${BASH_SOURCE[0]}" --debian-sandbox "$TMP/sandbox" 2>&1)
  rc=$?
  if ((rc == 0)); then
    ok "debian: install, upgrade, remove, purge in a sandbox (postinst, prerm, postrm)"
  elif ((rc == 3)); then
    skip "debian: no mount namespace with overlays here: $out"
  else
    while IFS= read -r line; do fail "${line#FAIL }"; done <<<"$out"
  fi
else
  skip "debian: sandboxed install needs root and unshare"
fi

# ---------------------------------------------------------------------------------------------
# 5. Dockerfiles (no container engine here: text checks only)
# ---------------------------------------------------------------------------------------------
for img in agent collector; do
  f="$PKG/docker/Dockerfile.$img"
  [[ -f "$f" ]] || { fail "docker: Dockerfile.$img missing"; continue; }
  grep -q '^FROM debian:12 AS build' "$f" || fail "docker: $img: no debian:12 build stage"
  [[ $(grep '^FROM ' "$f" | tail -1) == "FROM debian:12-slim" ]] \
    || fail "docker: $img: runtime stage is not debian:12-slim"
  grep -q -- '-DKSPM_BUILD_TESTS=OFF' "$f" || fail "docker: $img: builds the tests"
  [[ -f "$f.dockerignore" ]] || fail "docker: $img: no $f.dockerignore (build/ in the context)"
done
grep -qx 'USER 65532:65532' "$PKG/docker/Dockerfile.collector" \
  || fail "docker: the collector image does not run as uid 65532"
for lib in libgrpc++1.51 libprotobuf32 libsqlite3-0 libspdlog1.10 libcurl4; do
  grep -q "$lib" "$PKG/docker/Dockerfile.collector" || fail "docker: collector lacks $lib"
done
for lib in libgrpc++1.51 libprotobuf32 libyaml-cpp0.7 libspdlog1.10 libbpf1; do
  grep -q "$lib" "$PKG/docker/Dockerfile.agent" || fail "docker: agent lacks $lib"
done

echo
if ((${#failures[@]})); then
  echo "packaging: ${#failures[@]} check(s) failed"
  exit 1
fi
echo "packaging: all checks passed"

"""The collector's RBAC rules, derived from its code, and the check of rendered roles against them.

python3 rbac_rules.py [token|static]   prints the expected (apiGroup, resource, verb) grants.

Derived from the C++ sources (collector/src/kspm/collector):
  k8s/resources.h      ReadResources(): the (group, resource) of every kind the cluster scan lists;
  k8s/api_client.cc    the verb each ApiClient call needs (the `verb` its requests name in a 403
                       message: List -> list, GetObject -> get, Create -> create, Watch -> watch,
                       named in its own 403 message "kspm needs 'watch'"), that FetchSnapshot
                       lists every ReadResources() type, and the non-resource URL it reads
                       (/version);
  cluster/watch.cc     that the watched cluster watches each kind the first list read (a Watch
                       call inside WatchKind, started for every FetchStats::listed entry);
  any other source     every "/api/..." or "/apis/..." path literal passed to GetObject or Create;
                       inside a KubernetesReviewer implementation (cluster/serve_flags.cc) it is
                       an enrolment grant, elsewhere a grant of every mode. A path literal in any
                       other position fails the derivation, so new API access cannot go unseen.
Not derivable, hence explicit below: the get the manifests add to each listed kind,
that enrolment grants belong to token mode only, and that /version needs no rule.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(ROOT, "collector", "src", "kspm", "collector")
RESOURCES_H = os.path.join(SRC, "k8s", "resources.h")
API_CLIENT_CC = os.path.join(SRC, "k8s", "api_client.cc")
WATCH_CC = os.path.join(SRC, "cluster", "watch.cc")
SCANNED_DIRS = (os.path.join(ROOT, "collector", "src"), os.path.join(ROOT, "collector", "cli"))

# Not in the code: the collector lists and watches the kinds it reads, and the manifests grant
# the conventional read-only set (get, list, watch) on each. Kept explicit, so that any other
# verb, or a missing one, still fails; dropping get from the manifests means emptying this set.
EXTRA_READ_VERBS = {"get"}
# Not in the code: enrolment with service-account tokens is on only when the collector has a CA
# key (--enroll-ca-key, Fleet::enrolment_enabled); the static mode passes none (the structural
# test checks it), so its grants belong to token mode only.
ENROLMENT_MODES = {"token"}
# GET /version is a non-resource URL every client may read through the default ClusterRoleBinding
# system:public-info-viewer: the collector's role needs no rule for it (and grants none).
DEFAULT_NON_RESOURCE_URLS = {"/version"}
# Policy, stated in resources.h: listing them grants their contents. The derivation refuses them.
NEVER_GRANTED = {"secrets", "configmaps"}
ROLE = "kspm-collector-read"
# The opt-in of ConfigMap scanning (k8s/resources.h ConfigMapResource(), listed only with
# --scan-configmaps): a ClusterRole of its own with exactly these grants, present exactly when
# the collector runs with the flag (Helm collector.scanConfigMaps, components/scan-configmaps).
OPT_IN_ROLE = "kspm-collector-configmaps"
OPT_IN_GRANTS = {("", "configmaps", v) for v in ("get", "list", "watch")}
OPT_IN_FLAG = "--scan-configmaps"


class DerivationError(Exception):
    pass


LEXEME = re.compile(r'("(?:\\.|[^"\\\n])*")|(\'(?:\\.|[^\'\\\n])*\')|//[^\n]*|/\*.*?\*/', re.S)


def strip_comments(text):
    """C++ source without comments; string and character literals are kept as they are."""
    def keep(m):
        if m.group(1) or m.group(2):
            return m.group(0)
        return "\n" * m.group(0).count("\n")  # keeps line numbers
    return LEXEME.sub(keep, text)


def block(text, open_brace):
    """The text between the brace at `open_brace` and its match (literals skipped)."""
    depth, i = 0, open_brace
    while i < len(text):
        m = LEXEME.match(text, i)
        if m and (m.group(1) or m.group(2)):
            i = m.end()
            continue
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_brace + 1:i]
        i += 1
    raise DerivationError("unbalanced braces")


def rel(path):
    return os.path.relpath(path, ROOT)


def read(path):
    with open(path) as f:
        return strip_comments(f.read())


RESOURCE_ENTRY = re.compile(
    r'\{\s*"([\w.]+)"\s*,\s*"([a-z0-9.]*)"\s*,\s*"(\w+)"\s*,\s*"([a-z]+)"\s*,\s*(true|false)'
    r'\s*(?:,\s*(true|false)\s*)?\}')


def read_resources(text):
    """[(group, resource)] of ReadResources()'s initializer, every entry in its literal form."""
    m = re.search(r"ReadResources\(\)\s*\{.*?=\s*\{", text, re.S)
    if not m:
        raise DerivationError(f"{rel(RESOURCES_H)}: no ReadResources() initializer")
    body = block(text, m.end() - 1)
    entries = RESOURCE_ENTRY.findall(body)
    if not entries or len(entries) != body.count("{"):
        raise DerivationError(f"{rel(RESOURCES_H)}: {body.count('{')} entries in ReadResources(), "
                              f"{len(entries)} of the form {{kind, group, version, resource, "
                              f"namespaced}} with literals")
    return [(group, resource) for _, group, _, resource, _, _ in entries]


def client_verbs(text):
    """{ApiClient method: (verb, literal path or None)} from the overrides in api_client.cc."""
    verbs = {}
    for m in re.finditer(r"\b(\w+)\([^;{]*\)\s*(?:const\s*)?override\s*\{", text):
        call = re.search(r'\bGet\(\s*("[^"]*"|[^,]+?)\s*,\s*"(\w+)"', block(text, m.end() - 1))
        if call:
            path = call.group(1)
            verbs[m.group(1)] = (call.group(2), path[1:-1] if path.startswith('"') else None)
    m = re.search(r"\bWatch\([^;{]*\)\s*override\s*\{", text)
    needs = re.search(r"kspm needs '(\w+)'", block(text, m.end() - 1)) if m else None
    if needs:
        verbs["Watch"] = (needs.group(1), None)
    for method in ("List", "GetObject", "Create", "Watch"):
        if method not in verbs:
            raise DerivationError(f"{rel(API_CLIENT_CC)}: no verb found for ApiClient::{method}")
    return verbs


def watch_verbs(verbs):
    """{the watch verb} when the watched cluster watches every kind it listed, else {}."""
    text = strip_comments(read(WATCH_CC))
    m = re.search(r"\bvoid\s+WatchKind\([^)]*\)\s*\{", text)
    if not m or not re.search(r"->Watch\(", block(text, m.end() - 1)):
        return set()
    if not re.search(r"for\s*\(\s*const\s+auto\s*&\s*\[\s*type\s*,\s*version\s*\]\s*:\s*"
                     r"stats->listed\s*\)", text):
        raise DerivationError(f"{rel(WATCH_CC)}: WatchKind is not started for every kind listed")
    return {verbs["Watch"][0]}


def fetch_reads(text, verbs):
    """(list verb, non-resource URLs) of FetchSnapshot, which must list every ReadResources()."""
    m = re.search(r"\bFetchSnapshot\([^)]*\)\s*\{", text)
    if not m:
        raise DerivationError(f"{rel(API_CLIENT_CC)}: no FetchSnapshot")
    body = block(text, m.end() - 1)
    loop = re.search(r"for\s*\(\s*const\s+auto\s*&\s*(\w+)\s*:\s*ReadResources\(\)\s*\)", body)
    if not loop or not re.search(rf"\.List\(\s*{loop.group(1)}\b", body):
        raise DerivationError(f"{rel(API_CLIENT_CC)}: FetchSnapshot does not List every "
                              "ReadResources() type")
    urls = set()
    for method, (verb, path) in verbs.items():
        if re.search(rf"\.{method}\(", body) and path is not None:
            urls.add((path, verb))
    return verbs["List"][0], urls


PATH_CALL = re.compile(r"\b(GetObject|Create)\(\s*$")


def api_path(expr, where):
    """(group, resource) of an API path expression such as "/api/v1/namespaces/" + ns + "/pods/"."""
    literals = re.findall(r'"((?:\\.|[^"\\])*)"', expr)
    path = "{}".join(literals) if re.fullmatch(r'\s*"[^"]*"(\s*\+\s*\w+\s*\+\s*"[^"]*")*'
                                               r'(\s*\+\s*\w+)?\s*', expr) else None
    if path is None:
        raise DerivationError(f"{where}: cannot read the API path {expr.strip()}")
    if not expr.rstrip().endswith('"'):
        path += "{}"
    segs = path.strip("/").split("/")
    if segs[0] == "api" and len(segs) >= 3:
        group, rest = "", segs[2:]
    elif segs[0] == "apis" and len(segs) >= 4:
        group, rest = segs[1], segs[3:]
    else:
        raise DerivationError(f"{where}: {path} is not an API resource path")
    if rest[0] == "namespaces" and len(rest) >= 3:
        rest = rest[2:]
    if len(rest) > 2 or "{}" in rest[0]:
        raise DerivationError(f"{where}: {path}: subresources are not modelled")
    return group, rest[0]


def source_calls(verbs):
    """{(group, resource, verb, enrolment?)} of every API path literal outside the k8s client."""
    found = set()
    for top in SCANNED_DIRS:
        for d, _, files in os.walk(top):
            for f in sorted(files):
                p = os.path.join(d, f)
                if not f.endswith((".cc", ".h")) or f.endswith("_test.cc") or \
                        p in (RESOURCES_H, API_CLIENT_CC):
                    continue
                text = read(p)
                reviewers = [(m.end(), m.end() + len(block(text, m.end() - 1)))
                             for m in re.finditer(r"class\s+\w+[^{;]*public\s+(?:\w+::)*"
                                                  r"KubernetesReviewer\b[^{;]*\{", text)]
                for lit in re.finditer(r'"/apis?/', text):
                    where = f"{rel(p)}:{text.count(chr(10), 0, lit.start()) + 1}"
                    call = PATH_CALL.search(text, 0, lit.start())
                    if not call:
                        raise DerivationError(f"{where}: an API path outside GetObject or Create")
                    end = text.find(",", lit.start())
                    while end != -1 and text.count('"', lit.start(), end) % 2:
                        end = text.find(",", end + 1)
                    group, resource = api_path(text[lit.start():end], where)
                    enrolment = any(a <= lit.start() < b for a, b in reviewers)
                    found.add((group, resource, verbs[call.group(1)][0], enrolment))
    return found


def derive():
    """{"reads": {(group, resource, verb)}, "enrolment": {...}, "always": {...}} from the code."""
    header, client = read(RESOURCES_H), read(API_CLIENT_CC)
    verbs = client_verbs(client)
    list_verb, urls = fetch_reads(client, verbs)
    for url, verb in sorted(urls):
        if url not in DEFAULT_NON_RESOURCE_URLS:
            raise DerivationError(f"FetchSnapshot reads {url} ({verb}): a nonResourceURL this "
                                  "test does not model")
    read_verbs = {list_verb} | watch_verbs(verbs) | EXTRA_READ_VERBS
    reads = {(g, r, v) for g, r in read_resources(header) for v in read_verbs}
    calls = source_calls(verbs)
    rules = {"reads": reads,
             "enrolment": {(g, r, v) for g, r, v, e in calls if e},
             "always": {(g, r, v) for g, r, v, e in calls if not e}}
    for g, r, v in sorted(set().union(*rules.values())):
        if r in NEVER_GRANTED:
            raise DerivationError(f"the collector's code reads {r} ({v}): never granted")
    return rules


def expected_grants(mode, rules=None):
    """The exact set of (apiGroup, resource, verb) the collector's ClusterRole grants in `mode`."""
    rules = rules or derive()
    grants = rules["reads"] | rules["always"]
    if mode in ENROLMENT_MODES:
        grants |= rules["enrolment"]
    return grants


def check(by_kind, namespace, mode):
    """Problems with the rendered RBAC objects (by_kind: kind -> [object]); [] when exact."""
    errors = []
    try:
        expected = expected_grants(mode)
    except (OSError, DerivationError) as e:
        return [f"RBAC rules cannot be derived from the collector's code: {e}"]
    roles = [r for r in by_kind.get("ClusterRole", []) if r["metadata"]["name"] == ROLE]
    if len(roles) != 1:
        errors.append(f"expected one ClusterRole {ROLE}, found {len(roles)}")
    else:
        granted = set()
        for r in roles[0].get("rules") or []:
            if r.get("nonResourceURLs"):
                errors.append("ClusterRole: grants nonResourceURLs")
            if r.get("resourceNames"):
                errors.append("ClusterRole: resourceNames (this test does not model them)")
            for g in r.get("apiGroups") or []:
                for res in r.get("resources") or []:
                    for verb in r.get("verbs") or []:
                        granted.add((g, res, verb))
        for g, res, verb in sorted(granted):
            if "*" in (g, res, verb) or "/" in res:
                errors.append(f"ClusterRole: wildcard or subresource {g}/{res} {verb}")
            if res in NEVER_GRANTED:
                errors.append(f"ClusterRole: grants {res}")
        if granted != expected:
            extra, missing = granted - expected, expected - granted
            errors.append(f"ClusterRole ({mode} mode): extra {sorted(extra)} "
                          f"missing {sorted(missing)}")
    opt_in = False
    for kind in ("Role", "ClusterRole"):
        for r in by_kind.get(kind, []):
            name = r["metadata"]["name"]
            if kind == "ClusterRole" and name == OPT_IN_ROLE:
                opt_in = True
                granted = {(g, res, v) for rule in r.get("rules") or []
                           for g in rule.get("apiGroups") or []
                           for res in rule.get("resources") or []
                           for v in rule.get("verbs") or []}
                if granted != OPT_IN_GRANTS or any(rule.get("resourceNames") or
                                                   rule.get("nonResourceURLs")
                                                   for rule in r.get("rules") or []):
                    errors.append(f"ClusterRole {OPT_IN_ROLE}: grants {sorted(granted)}, "
                                  f"expected {sorted(OPT_IN_GRANTS)}")
            elif name != ROLE:
                errors.append(f"unexpected {kind} {name}")
    args = []
    for d in by_kind.get("Deployment", []):
        if d["metadata"]["name"] == "kspm-collector":
            for c in d["spec"]["template"]["spec"].get("containers") or []:
                args += c.get("args") or []
    if opt_in != (OPT_IN_FLAG in args):
        errors.append(f"ClusterRole {OPT_IN_ROLE} {'present' if opt_in else 'absent'} but the "
                      f"collector runs {'without' if opt_in else 'with'} {OPT_IN_FLAG}")
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        for b in by_kind.get(kind, []):
            subjects = [(s.get("kind"), s.get("name"), s.get("namespace"))
                        for s in b.get("subjects") or []]
            allowed = {ROLE, OPT_IN_ROLE} if kind == "ClusterRoleBinding" else {ROLE}
            if b["metadata"]["name"] not in allowed or \
                    b["roleRef"]["name"] != b["metadata"]["name"] or \
                    subjects != [("ServiceAccount", "kspm-collector", namespace)]:
                errors.append(f"{kind} {b['metadata']['name']}: binds {b['roleRef']['name']} "
                              f"to {subjects}")
    if not by_kind.get("ClusterRoleBinding"):
        errors.append(f"no ClusterRoleBinding for {ROLE}")
    return errors


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "token"
    try:
        for grant in sorted(expected_grants(mode)):
            print(*grant)
    except DerivationError as e:
        sys.exit(f"rbac_rules: {e}")

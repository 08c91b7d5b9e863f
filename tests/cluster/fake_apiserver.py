#!/usr/bin/env python3
"""A local HTTPS server that follows the Kubernetes API's conventions, for kspm's tests.

No Kubernetes API server can run on the build machine. This one serves the objects of a fixture
directory (YAML manifests, e.g. tests/fixtures/cluster/kubeadm) the way the API server does:

  * GET /version, /apis (discovery: an APIGroupList), /api/v1/<resource>,
    /apis/<group>/<version>/<resource> (custom groups only with --crd GROUP),
    /api/v1/namespaces/<ns>/pods/<name>; POST /apis/authentication.k8s.io/v1/tokenreviews;
    any other path 404 with a metav1.Status body; any other POST/PUT/PATCH/DELETE 405;
  * bearer token authentication (Authorization: Bearer <token>), or a client certificate signed
    by --client-ca; without either, 401 Unauthorized;
  * lists as <Kind>List with apiVersion and metadata.resourceVersion, items WITHOUT kind and
    apiVersion (as the real server omits them), sorted by namespace and name;
  * paging: `limit` caps a page, metadata.continue carries an opaque token and
    metadata.remainingItemCount the rest; a continue token for another resource is 400;
  * --forbid RESOURCE: 403 with the real server's message naming user, verb, resource and group
    (RESOURCE is a listed resource, `tokenreviews`, `pods-get` for the single-Pod GET, or
    RESOURCE-watch for its watches only, as a ClusterRole with list but not watch);
  * --throttle RESOURCE=N: the first N requests get 429 with Retry-After: 1;
  * --fail RESOURCE=N: the first N requests get 500 (both take the same names as --forbid);
  * --expire RESOURCE: the first request with a continue token gets 410 Gone (Expired);
  * --watch-garbage RESOURCE: its watches start with a line that is not JSON (invalid UTF-8);
  * watch: `?watch=1&resourceVersion=RV` streams (chunked, one JSON event per line) ADDED,
    MODIFIED and DELETED events of the resource after RV, BOOKMARK events every
    --bookmark-seconds with allowWatchBookmarks=true, and ends after timeoutSeconds; a RV older
    than the last compaction is an ERROR event with a 410 Expired Status, as etcd's compaction
    gives. --fail/--throttle RESOURCE-watch inject errors into watch requests only.

Test control (bearer token required, never part of the real API):
  * POST /_test/events {"type": "ADDED"|"MODIFIED"|"DELETED", "object": {...}}: changes the
    stored objects (later lists see it), gives the object the next resourceVersion and sends the
    event to open watches of its kind; answers {"resourceVersion": RV}.
  * POST /_test/compact: every resourceVersion so far is compacted away: open watches end with
    an ERROR 410 event and watches from an older RV get one at once; a new list works.

Node enrolment with projected service-account tokens: --identities FILE, a JSON file read again
on every request that uses it (tests replace it atomically to add nodes), holds
  {"tokens": {TOKEN: {"username", "uid", "audiences", "expired", "pod": {"name", "uid"},
                      "node": {"name", "uid"}}},   # pod and node optional
   "pods": [Pod objects, as JSON objects or YAML/JSON strings]}
A TokenReview (201) is answered as pkg/serviceaccount does: unknown token, audiences that miss
the requested ones (default: the server's, https://kubernetes.default.svc.cluster.local),
expiry, and a bound pod that is gone (or has another uid) give authenticated: false with the
real error text; success gives the user (service-account groups, extra pod-name/pod-uid/
node-name/node-uid/credential-id as far as known) and the audiences matched. The single-Pod GET
serves the identities' pods, then the fixture's; otherwise 404 `pods "<name>" not found`.
Lists serve only the fixture objects. A TokenReview body that is not one is 400, a Content-Type
other than JSON/YAML 415, a missing one taken for JSON, as the real server does.

Every request is appended to --log as one JSON line (method, path, query, auth kind, status), so
tests can check what the client sent. The chosen port is written to --port-file once listening.
"""
import argparse
import base64
import glob
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

RESOURCES = {
    # resource path -> (kind, namespaced)
    "/api/v1/namespaces": ("Namespace", False),
    "/api/v1/nodes": ("Node", False),
    "/api/v1/pods": ("Pod", True),
    "/api/v1/serviceaccounts": ("ServiceAccount", True),
    "/api/v1/services": ("Service", True),
    "/api/v1/configmaps": ("ConfigMap", True),
    "/api/v1/replicationcontrollers": ("ReplicationController", True),
    "/api/v1/limitranges": ("LimitRange", True),
    "/api/v1/resourcequotas": ("ResourceQuota", True),
    "/apis/apps/v1/deployments": ("Deployment", True),
    "/apis/apps/v1/replicasets": ("ReplicaSet", True),
    "/apis/apps/v1/statefulsets": ("StatefulSet", True),
    "/apis/apps/v1/daemonsets": ("DaemonSet", True),
    "/apis/batch/v1/jobs": ("Job", True),
    "/apis/batch/v1/cronjobs": ("CronJob", True),
    "/apis/rbac.authorization.k8s.io/v1/roles": ("Role", True),
    "/apis/rbac.authorization.k8s.io/v1/rolebindings": ("RoleBinding", True),
    "/apis/rbac.authorization.k8s.io/v1/clusterroles": ("ClusterRole", False),
    "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings": ("ClusterRoleBinding", False),
    "/apis/networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", True),
    "/apis/networking.k8s.io/v1/ingresses": ("Ingress", True),
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations":
        ("ValidatingWebhookConfiguration", False),
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations":
        ("MutatingWebhookConfiguration", False),
    # Not served: like a server older than 1.30, validatingadmissionpolicybindings is 404.
}

# Custom resources, served (and shown by discovery) only for the groups given with --crd, as
# when a CNI's CRDs are installed. Calico's NetworkPolicy is kept apart from networking.k8s.io's.
CUSTOM = {
    "cilium.io": {
        "/apis/cilium.io/v2/ciliumnetworkpolicies": ("CiliumNetworkPolicy", True),
        "/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies":
            ("CiliumClusterwideNetworkPolicy", False)},
    "projectcalico.org": {
        "/apis/projectcalico.org/v3/networkpolicies": ("NetworkPolicy.projectcalico.org", True),
        "/apis/projectcalico.org/v3/globalnetworkpolicies": ("GlobalNetworkPolicy", False)},
    "crd.projectcalico.org": {
        "/apis/crd.projectcalico.org/v1/networkpolicies":
            ("NetworkPolicy.projectcalico.org", True),
        "/apis/crd.projectcalico.org/v1/globalnetworkpolicies": ("GlobalNetworkPolicy", False)},
    "policy.networking.k8s.io": {
        "/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies":
            ("AdminNetworkPolicy", False),
        "/apis/policy.networking.k8s.io/v1alpha1/baselineadminnetworkpolicies":
            ("BaselineAdminNetworkPolicy", False)},
}

TOKENREVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
POD_PREFIX = "/api/v1/namespaces/"  # + <ns>/pods/<name>
# The audiences a kubeadm API server accepts (--api-audiences defaults to the issuer).
API_AUDIENCES = ["https://kubernetes.default.svc.cluster.local"]
EXTRA = "authentication.kubernetes.io/"


def status(code, reason, message, details=None):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


def forbidden(user, verb, resource, group, namespace=None, name=None):
    """The real server's 403 (apiserver's forbiddenMessage and errors.NewForbidden)."""
    qualified = resource + ("." + group if group else "")
    scope = ('in the namespace "%s"' % namespace) if namespace else "at the cluster scope"
    message = ('%s is forbidden: User "%s" cannot %s resource "%s" in API group "%s" %s'
               % (qualified + (' "%s"' % name if name else ""), user, verb, resource, group,
                  scope))
    details = {"name": name} if name else {}
    if group or not name:  # the list's 403 has always named the (empty) core group
        details["group"] = group
    details["kind"] = resource
    return status(403, "Forbidden", message, details)


def go_quote(strings):
    """Go's %q of a []string: ["a" "b"]."""
    return "[" + " ".join(json.dumps(x) for x in strings) + "]"


def object_kind(doc):
    kind = doc["kind"]
    if kind == "NetworkPolicy" and "projectcalico.org/" in doc.get("apiVersion", ""):
        return "NetworkPolicy.projectcalico.org"
    return kind


def load_objects(directories):
    objects = {}
    for directory in directories:
        for path in sorted(glob.glob(os.path.join(directory, "*.yaml"))):
            with open(path) as f:
                for doc in yaml.safe_load_all(f):
                    if doc:
                        objects.setdefault(object_kind(doc), []).append(doc)
    for kind in objects:
        objects[kind].sort(key=lambda o: (o["metadata"].get("namespace", ""),
                                          o["metadata"]["name"]))
    return objects


class State:
    def __init__(self, args):
        self.args = args
        self.objects = load_objects(args.fixtures)
        self.lock = threading.RLock()  # send() logs under it too
        self.throttle = dict(parse_counts(args.throttle))
        self.fail = dict(parse_counts(args.fail))
        self.expire = set(args.expire)
        self.resource_version = 4711
        self.compacted = 0  # watches from an older resourceVersion get 410
        self.events = []    # (resourceVersion, kind, event) in order
        self.changed = threading.Condition()  # notified on every event and compaction
        self.resources = dict(RESOURCES)
        for group in args.crd:
            self.resources.update(CUSTOM[group])

    def discovery(self):
        """GET /apis: an APIGroupList of the groups served (the core group is at /api)."""
        versions = {}
        for path in self.resources:
            parts = path.split("/")
            if parts[1] == "apis":
                versions.setdefault(parts[2], [])
                if parts[3] not in versions[parts[2]]:
                    versions[parts[2]].append(parts[3])
        groups = []
        for name, vs in sorted(versions.items()):
            entries = [{"groupVersion": name + "/" + v, "version": v} for v in vs]
            groups.append({"name": name, "versions": entries, "preferredVersion": entries[0]})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def identities(self):
        """The --identities file as it is now: (tokens, pods). Missing file: nothing."""
        if not self.args.identities:
            return {}, []
        try:
            with open(self.args.identities) as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}, []
        pods = []
        for pod in data.get("pods") or []:
            pods.append(yaml.safe_load(pod) if isinstance(pod, str) else pod)
        return data.get("tokens") or {}, pods

    def pod(self, pods, namespace, name):
        """The Pod namespace/name: the identities' pods first, then the fixture's."""
        for pod in list(pods) + self.objects.get("Pod", []):
            meta = pod.get("metadata") or {}
            if meta.get("name") == name and meta.get("namespace", "default") == namespace:
                return pod
        return None


def parse_counts(items):
    for item in items:
        name, _, n = item.partition("=")
        yield name, int(n or 1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None

    def log_message(self, fmt, *args):  # quiet: the request log is the record
        pass

    def record(self, code, auth):
        if not self.state.args.log:
            return
        url = urllib.parse.urlsplit(self.path)
        line = {"method": self.command, "path": url.path,
                "query": dict(urllib.parse.parse_qsl(url.query)), "auth": auth, "status": code}
        with self.state.lock, open(self.state.args.log, "a") as f:
            f.write(json.dumps(line) + "\n")

    def send(self, code, body, auth, headers=None):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.record(code, auth)

    def authenticate(self):
        header = self.headers.get("Authorization", "")
        if header == "Bearer " + self.state.args.token:
            return "token", "system:serviceaccount:kspm:kspm-collector"
        cert = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        if cert:
            subject = dict(x[0] for x in cert.get("subject", ()))
            return "certificate", subject.get("commonName", "")
        return None, None

    def read_body(self):
        """The request body (Content-Length or chunked), read whole so the connection stays
        usable for the next request."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def injected(self, key, auth):
        """--throttle / --fail for `key`: True when a 429 or 500 has been sent."""
        with self.state.lock:
            if self.state.throttle.get(key, 0) > 0:
                self.state.throttle[key] -= 1
                self.send(429, status(429, "TooManyRequests", "too many requests, please try "
                                      "again later"), auth, {"Retry-After": "1"})
                return True
            if self.state.fail.get(key, 0) > 0:
                self.state.fail[key] -= 1
                self.send(500, status(500, "InternalError", "etcdserver: request timed out"),
                          auth)
                return True
        return False

    def do_POST(self):
        body = self.read_body()
        if self.command == "POST" and urllib.parse.urlsplit(self.path).path == TOKENREVIEWS:
            self.token_review(body)
            return
        if self.command == "POST" and self.path in ("/_test/events", "/_test/compact"):
            self.control(body)
            return
        self.send(405, status(405, "MethodNotAllowed", "kspm's test server is read-only"), None)

    do_PUT = do_PATCH = do_DELETE = do_POST

    def token_review(self, body):
        auth, user = self.authenticate()
        if auth is None:
            self.send(401, status(401, "Unauthorized", "Unauthorized"), None)
            return
        if self.injected("tokenreviews", auth):
            return
        if "tokenreviews" in self.state.args.forbid:
            self.send(403, forbidden(user, "create", "tokenreviews", "authentication.k8s.io"),
                      auth)
            return
        media = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media not in ("", "application/json", "application/yaml"):
            self.send(415, status(415, "UnsupportedMediaType", "the body of the request was in an "
                                  "unknown format - accepted media types include: "
                                  "application/json, application/yaml, "
                                  "application/vnd.kubernetes.protobuf"), auth)
            return
        try:
            review = (yaml.safe_load if media == "application/yaml" else json.loads)(body)
        except Exception as e:
            self.send(400, status(400, "BadRequest", "couldn't get version/kind; json parse "
                                  "error: %s" % e), auth)
            return
        error = self.review_error(review, body)
        if error:
            self.send(400, status(400, "BadRequest", error), auth)
            return
        spec = review.get("spec") or {}
        try:
            tokens, pods = self.state.identities()
        except Exception as e:  # a half-written identities file is the test's bug
            self.send(500, status(500, "InternalError", "identities: %s" % e), auth)
            return
        result = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                  "metadata": {"creationTimestamp": None}, "spec": spec,
                  "status": self.review_status(spec, tokens, pods)}
        self.send(201, result, auth)

    def control(self, body):
        """The test-only endpoints: inject one event, or compact the event history."""
        auth, _ = self.authenticate()
        if auth is None:
            self.send(401, status(401, "Unauthorized", "Unauthorized"), None)
            return
        state = self.state
        with state.changed, state.lock:  # a list sees the objects and their version together
            if self.path == "/_test/compact":
                state.resource_version += 1
                state.compacted = state.resource_version
                state.events = []
                state.changed.notify_all()
                self.send(200, {"resourceVersion": str(state.resource_version)}, auth)
                return
            try:
                event = json.loads(body)
                kind, obj = object_kind(event["object"]), event["object"]
                meta = obj.setdefault("metadata", {})
                key = (meta.get("namespace", ""), meta["name"])
                if event["type"] not in ("ADDED", "MODIFIED", "DELETED"):
                    raise ValueError("type must be ADDED, MODIFIED or DELETED")
            except Exception as e:
                self.send(400, status(400, "BadRequest", "event: %s" % e), auth)
                return
            state.resource_version += 1
            meta["resourceVersion"] = str(state.resource_version)
            items = [o for o in state.objects.get(kind, [])
                     if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) != key]
            if event["type"] != "DELETED":
                items.append(obj)
            items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
            state.objects[kind] = items
            state.events.append((state.resource_version, kind,
                                 {"type": event["type"], "object": obj}))
            state.changed.notify_all()
            self.send(200, {"resourceVersion": str(state.resource_version)}, auth)

    def watch(self, kind, resource, auth, query):
        """A watch stream: events of `kind` after the resourceVersion asked for."""
        state = self.state
        if self.injected(resource + "-watch", auth):
            return
        try:
            since = int(query.get("resourceVersion") or 0)
        except ValueError:
            self.send(400, status(400, "BadRequest", "invalid resourceVersion"), auth)
            return
        if not since:
            since = state.resource_version
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 1800)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.record(200, auth)

        def emit(events):
            data = b"".join((json.dumps(e) + "\n").encode() for e in events)
            self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
            self.wfile.flush()

        def gone():
            return {"type": "ERROR", "object": status(
                410, "Expired", "too old resource version: %d (%d)" % (since, state.compacted))}
        last_bookmark = time.monotonic()
        try:
            if resource in self.state.args.watch_garbage:
                data = b'{"type": "ADDED", "object": {"kind": "Pod", \xff\xfe garbage\n'
                self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
                self.wfile.flush()
            while True:
                with state.changed:
                    if since < state.compacted:
                        emit([gone()])
                        break
                    pending = [e for rv, k, e in state.events if rv > since and k == kind]
                    now = time.monotonic()
                    if not pending:
                        if now >= deadline:
                            break
                        if bookmarks and now - last_bookmark >= self.state.args.bookmark_seconds:
                            last_bookmark = now
                            since = state.resource_version
                            pending = [{"type": "BOOKMARK", "object": {
                                "kind": kind.split(".")[0],
                                "metadata": {"resourceVersion": str(since)}}}]
                        else:
                            state.changed.wait(min(deadline - now,
                                                   self.state.args.bookmark_seconds))
                            continue
                    else:
                        since = max(rv for rv, k, e in state.events if rv > since and k == kind)
                emit(pending)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass  # the client went away
        self.close_connection = True

    @staticmethod
    def review_error(review, body):
        """Why a decoded body is not a TokenReview the server would take, or None."""
        if not isinstance(review, dict):
            return "couldn't get version/kind; json parse error: not an object"
        if not review.get("kind"):
            return "Object 'Kind' is missing in '%s'" % body.decode("utf-8", "replace")
        if review.get("apiVersion") != "authentication.k8s.io/v1":
            return ("the API version in the data (%s) does not match the expected API version "
                    "(authentication.k8s.io/v1)" % review.get("apiVersion", ""))
        if review["kind"] != "TokenReview":
            return ("the kind in the data (%s) does not match the expected kind (TokenReview)"
                    % review["kind"])
        spec = review.get("spec")
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            return ("TokenReview in version \"v1\" cannot be handled as a TokenReview: json: "
                    "cannot unmarshal into Go struct field TokenReview.spec")
        token, audiences = spec.get("token", ""), spec.get("audiences") or []
        if not isinstance(token, str) or not isinstance(audiences, list) or \
                not all(isinstance(a, str) for a in audiences):
            return ("TokenReview in version \"v1\" cannot be handled as a TokenReview: json: "
                    "cannot unmarshal into Go struct field TokenReviewSpec.spec")
        if not token:
            return "token is required for TokenReview in authentication"
        return None

    def review_status(self, spec, tokens, pods):
        """status as the API server fills it (authenticator/token, pkg/serviceaccount)."""
        def failed(reason):
            return {"authenticated": False, "user": {},
                    "error": "[invalid bearer token, %s]" % reason}
        token = spec["token"]
        entry = tokens.get(token)
        if not isinstance(entry, dict):
            return failed("square/go-jose: error in cryptographic primitive")
        token_audiences = list(entry.get("audiences") or []) or API_AUDIENCES
        requested = list(spec.get("audiences") or []) or API_AUDIENCES
        audiences = [a for a in requested if a in token_audiences]
        if not audiences:
            return failed("token audiences %s is invalid for the target audiences %s"
                          % (go_quote(token_audiences), go_quote(requested)))
        if entry.get("expired"):
            return failed("service account token has expired")
        username = entry.get("username", "")
        parts = username.split(":")
        service_account = len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]
        namespace = parts[2] if service_account else "default"
        extra = {}
        bound_pod = entry.get("pod")
        if bound_pod:
            pod = self.state.pod(pods, bound_pod.get("namespace", namespace),
                                 bound_pod.get("name"))
            if pod is None:
                return failed("service account token has been invalidated")
            pod_uid = (pod.get("metadata") or {}).get("uid", "")
            if pod_uid != bound_pod.get("uid"):
                return failed("pod UID (%s) does not match service account pod ref claim (%s)"
                              % (pod_uid, bound_pod.get("uid", "")))
            extra[EXTRA + "pod-name"] = [bound_pod["name"]]
            extra[EXTRA + "pod-uid"] = [bound_pod.get("uid", "")]
        node = entry.get("node")
        if node:
            extra[EXTRA + "node-name"] = [node.get("name", "")]
            extra[EXTRA + "node-uid"] = [node.get("uid", "")]
        jti = entry.get("jti") or str(uuid.uuid5(uuid.NAMESPACE_URL, "kspm-token:" + token))
        extra[EXTRA + "credential-id"] = ["JTI=" + jti]
        groups = (["system:serviceaccounts", "system:serviceaccounts:" + namespace]
                  if service_account else []) + ["system:authenticated"]
        user = {"username": username, "uid": entry.get("uid", ""), "groups": groups,
                "extra": extra}
        return {"authenticated": True, "user": user, "audiences": audiences}

    def get_pod(self, path, auth, user):
        parts = path[len(POD_PREFIX):].split("/")
        if len(parts) != 3 or parts[1] != "pods" or not parts[0] or not parts[2]:
            self.send(404, status(404, "NotFound", "the server could not find the requested "
                                  "resource"), auth)
            return
        namespace, _, name = parts
        if self.injected("pods-get", auth):
            return
        if "pods-get" in self.state.args.forbid:
            self.send(403, forbidden(user, "get", "pods", "", namespace, name), auth)
            return
        try:
            _, pods = self.state.identities()
        except Exception as e:
            self.send(500, status(500, "InternalError", "identities: %s" % e), auth)
            return
        pod = self.state.pod(pods, namespace, name)
        if pod is None:
            self.send(404, status(404, "NotFound", 'pods "%s" not found' % name,
                                  {"name": name, "kind": "pods"}), auth)
            return
        self.send(200, dict(pod, kind="Pod", apiVersion="v1"), auth)

    def do_GET(self):
        auth, user = self.authenticate()
        if auth is None:
            self.send(401, status(401, "Unauthorized", "Unauthorized"), None)
            return
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/version":
            self.send(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.2",
                            "platform": "linux/amd64"}, auth)
            return
        if url.path.startswith(POD_PREFIX) and url.path.count("/") == 6:
            self.get_pod(url.path, auth, user)
            return
        if url.path == "/apis":
            self.send(200, self.state.discovery(), auth)
            return
        if url.path not in self.state.resources:
            self.send(404, status(404, "NotFound", "the server could not find the requested "
                                  "resource"), auth)
            return
        kind, _ = self.state.resources[url.path]
        parts = url.path.split("/")
        resource = parts[-1]
        group = "" if parts[1] == "api" else parts[2]
        version = parts[2] if parts[1] == "api" else parts[3]
        watching = query.get("watch") in ("1", "true")
        if resource in self.state.args.forbid or \
                (watching and resource + "-watch" in self.state.args.forbid):
            self.send(403, forbidden(user, "watch" if watching else "list", resource, group),
                      auth)
            return
        if watching:
            self.watch(kind, resource, auth, query)
            return
        if self.injected(resource, auth):
            return
        with self.state.lock:
            items = list(self.state.objects.get(kind, []))
            list_version = self.state.resource_version
        offset = 0
        token = query.get("continue")
        if token:
            with self.state.lock:
                if resource in self.state.expire:
                    self.state.expire.discard(resource)
                    self.send(410, status(410, "Expired", "The provided continue parameter is "
                                          "too old to display a consistent list result."), auth)
                    return
            try:
                decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
                if decoded["resource"] != resource:
                    raise ValueError("token of another resource")
                offset = int(decoded["offset"])
            except Exception:  # an invalid token is the client's error
                self.send(400, status(400, "BadRequest", "invalid continue token"), auth)
                return
        limit = int(query.get("limit", "0") or 0)
        end = len(items) if limit <= 0 else min(len(items), offset + limit)
        page = []
        for obj in items[offset:end]:
            item = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
            page.append(item)
        meta = {"resourceVersion": str(list_version)}
        if end < len(items):
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(
                {"resource": resource, "offset": end}).encode()).decode()
            meta["remainingItemCount"] = len(items) - end
        body = {"kind": kind + "List", "apiVersion": (group + "/" if group else "") + version,
                "metadata": meta, "items": page}
        self.send(200, body, auth)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fixtures", action="append", required=True,
                   help="a directory of YAML manifests; repeatable")
    p.add_argument("--crd", action="append", default=[], choices=sorted(CUSTOM),
                   help="serve this custom resource group (and show it in /apis)")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--client-ca")
    p.add_argument("--token", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--log")
    p.add_argument("--forbid", action="append", default=[])
    p.add_argument("--throttle", action="append", default=[])
    p.add_argument("--fail", action="append", default=[])
    p.add_argument("--expire", action="append", default=[])
    p.add_argument("--identities", help="JSON file of tokens and pods, read on every request")
    p.add_argument("--watch-garbage", action="append", default=[],
                   help="watches of this resource send a line that is not JSON (invalid UTF-8)")
    p.add_argument("--bookmark-seconds", type=float, default=1.0,
                   help="how often an idle watch gets a BOOKMARK event")
    args = p.parse_args()

    Handler.state = State(args)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        context.load_verify_locations(args.client_ca)
        context.verify_mode = ssl.CERT_OPTIONAL
    server.socket = context.wrap_socket(server.socket, server_side=True)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

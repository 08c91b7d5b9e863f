#!/usr/bin/env python3
"""A local HTTPS server that follows the Kubernetes API's conventions, for kspm's tests.

No Kubernetes API server can run on the build machine. This one serves the objects of a fixture
directory (YAML manifests, e.g. tests/fixtures/cluster/kubeadm) the way the API server does:

  * GET /version, /api/v1/<resource>, /apis/<group>/<version>/<resource>; anything else 404
    with a metav1.Status body; anything but GET 405;
  * bearer token authentication (Authorization: Bearer <token>), or a client certificate signed
    by --client-ca; without either, 401 Unauthorized;
  * lists as <Kind>List with apiVersion and metadata.resourceVersion, items WITHOUT kind and
    apiVersion (as the real server omits them), sorted by namespace and name;
  * paging: `limit` caps a page, metadata.continue carries an opaque token and
    metadata.remainingItemCount the rest; a continue token for another resource is 400;
  * --forbid RESOURCE: 403 with the real server's message naming user, verb, resource and group;
  * --throttle RESOURCE=N: the first N requests get 429 with Retry-After: 1;
  * --fail RESOURCE=N: the first N requests get 500;
  * --expire RESOURCE: the first request with a continue token gets 410 Gone (Expired).

Every request is appended to --log as one JSON line (path, query, auth kind, status), so tests
can check what the client sent. The chosen port is written to --port-file once listening.
"""
import argparse
import base64
import glob
import json
import os
import ssl
import sys
import threading
import urllib.parse
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
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations":
        ("ValidatingWebhookConfiguration", False),
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations":
        ("MutatingWebhookConfiguration", False),
    # Not served: like a server older than 1.30, validatingadmissionpolicybindings is 404.
}


def status(code, reason, message, details=None):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


def load_objects(directory):
    objects = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.yaml"))):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    objects.setdefault(doc["kind"], []).append(doc)
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
        line = {"path": url.path, "query": dict(urllib.parse.parse_qsl(url.query)),
                "auth": auth, "status": code}
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

    def do_POST(self):
        self.send(405, status(405, "MethodNotAllowed", "kspm's test server is read-only"), None)

    do_PUT = do_PATCH = do_DELETE = do_POST

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
        if url.path not in RESOURCES:
            self.send(404, status(404, "NotFound", "the server could not find the requested "
                                  "resource"), auth)
            return
        kind, _ = RESOURCES[url.path]
        parts = url.path.split("/")
        resource = parts[-1]
        group = "" if parts[1] == "api" else parts[2]
        version = parts[2] if parts[1] == "api" else parts[3]
        with self.state.lock:
            if self.state.throttle.get(resource, 0) > 0:
                self.state.throttle[resource] -= 1
                self.send(429, status(429, "TooManyRequests", "too many requests, please try "
                                      "again later"), auth, {"Retry-After": "1"})
                return
            if self.state.fail.get(resource, 0) > 0:
                self.state.fail[resource] -= 1
                self.send(500, status(500, "InternalError", "etcdserver: request timed out"),
                          auth)
                return
        if resource in self.state.args.forbid:
            scope = "at the cluster scope"
            message = ('%s%s is forbidden: User "%s" cannot list resource "%s" in API group "%s" %s'
                       % (resource, "." + group if group else "", user, resource, group, scope))
            self.send(403, status(403, "Forbidden", message,
                                  {"group": group, "kind": resource}), auth)
            return
        items = self.state.objects.get(kind, [])
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
        meta = {"resourceVersion": str(self.state.resource_version)}
        if end < len(items):
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(
                {"resource": resource, "offset": end}).encode()).decode()
            meta["remainingItemCount"] = len(items) - end
        body = {"kind": kind + "List", "apiVersion": (group + "/" if group else "") + version,
                "metadata": meta, "items": page}
        self.send(200, body, auth)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fixtures", required=True)
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

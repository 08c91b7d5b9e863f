"""Checks a rendering's ServiceMonitor and PodMonitor against what they scrape.

Usage: python3 monitors.py RENDERED.yaml NAMESPACE
The ServiceMonitor must select the collector's Service and name one of its ports; the PodMonitor
must select the agent DaemonSet's pods and name one of their container ports; both at /metrics,
in NAMESPACE. Exit 1 with the reasons otherwise.
"""
import sys

import yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
namespace = sys.argv[2]
errors = []


def one(kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    if len(found) != 1:
        errors.append(f"expected one {kind} {name}, found {len(found)}")
        return None
    if found[0]["metadata"].get("namespace", namespace) != namespace:
        errors.append(f"{kind} {name} is not in {namespace}")
    return found[0]


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def endpoints(kind, listed, ports, what):
    """Each endpoint of a monitor names one of `ports` and scrapes /metrics."""
    for e in listed:
        if e.get("port") not in ports:
            errors.append(f"{kind} port {e.get('port')} is not {what} {ports}")
        if e.get("path") != "/metrics":
            errors.append(f"{kind} path is not /metrics")


service = one("Service", "kspm-collector")
monitor = one("ServiceMonitor", "kspm-collector")
daemonset = one("DaemonSet", "kspm-agent")
pod_monitor = one("PodMonitor", "kspm-agent")
if service and monitor:
    if not selects(monitor["spec"]["selector"], service["metadata"].get("labels", {})):
        errors.append("the ServiceMonitor does not select the collector's Service")
    endpoints("ServiceMonitor", monitor["spec"]["endpoints"],
              {p.get("name") for p in service["spec"]["ports"]}, "a Service port")
if daemonset and pod_monitor:
    template = daemonset["spec"]["template"]
    if not selects(pod_monitor["spec"]["selector"], template["metadata"].get("labels", {})):
        errors.append("the PodMonitor does not select the agent pods")
    endpoints("PodMonitor", pod_monitor["spec"]["podMetricsEndpoints"],
              {p.get("name") for c in template["spec"]["containers"] for p in c.get("ports", [])},
              "an agent port")
for e in errors:
    print(e, file=sys.stderr)
sys.exit(1 if errors else 0)

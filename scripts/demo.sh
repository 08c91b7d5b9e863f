#!/usr/bin/env bash
# `make run`: the main job on the embedded default (sqlite).
#  1. starts kspm-collector on loopback with its database under ./var/
#  2. runs kspm-agent once against this machine and once against the bundled demo node
#     (a misconfigured kubeadm host root, built with real modes and owners from
#     tests/fixtures/hosts/demo-kubeadm-node.yaml)
#  3. evaluates the bundled demo cluster snapshot (tests/fixtures/cluster/demo: a kubeadm-like
#     cluster with a few realistic mistakes) offline with `kspm-collector scan-cluster`; the
#     collector scans the same snapshot at start, so its results join the nodes' as `cluster`
#  4. prints the merged posture summary and the failing findings with their evidence, and writes
#     the HTML report to var/posture.html
#  5. stops the collector with SIGTERM and exits 0
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/bin
var=var
mkdir -p "$var"
rm -f "$var/kspm.db" "$var/kspm.db-wal" "$var/kspm.db-shm" "$var/collector.port"

# Loopback only, so plaintext is acceptable for the demo; production uses mutual TLS.
cluster_snapshot=tests/fixtures/cluster/demo
cluster_exceptions=tests/fixtures/cluster/demo-exceptions.yaml
"$bin/kspm-collector" --log-level warn serve --insecure --listen 127.0.0.1:0 \
  --db "$var/kspm.db" --port-file "$var/collector.port" \
  --cluster-name demo --cluster-snapshot "$cluster_snapshot" --exceptions "$cluster_exceptions" \
  2>"$var/collector.log" &
collector=$!
trap 'kill -TERM $collector 2>/dev/null || true' EXIT
for _ in $(seq 100); do [[ -s "$var/collector.port" ]] && break; sleep 0.05; done
if [[ ! -s "$var/collector.port" ]]; then
  echo "collector did not start; see $var/collector.log" >&2
  cat "$var/collector.log" >&2
  exit 1
fi
addr="127.0.0.1:$(cat "$var/collector.port")"

echo "== kspm-collector listening on $addr (sqlite: $var/kspm.db)"
demo_root="$var/demo-node"
rm -rf "$demo_root"
"$bin/kspm-fixture" build tests/fixtures/hosts/demo-kubeadm-node.yaml "$demo_root"

echo "== kspm-agent: this machine"
"$bin/kspm-agent" --log-level error send --insecure --collector "$addr" --cluster demo
echo "== kspm-agent: bundled demo node (host root $demo_root)"
"$bin/kspm-agent" --log-level error send --insecure --collector "$addr" --cluster demo \
  --host-root "$demo_root"

echo
echo "== kspm-collector scan-cluster: bundled demo cluster snapshot ($cluster_snapshot), offline"
echo "   (NSA/CISA items shown; every CIS section 5 result is in $var/demo-cluster.txt)"
"$bin/kspm-collector" scan-cluster --from "$cluster_snapshot" --cluster-name demo \
  --exceptions "$cluster_exceptions" -o "$var/demo-cluster.txt"
"$bin/kspm-collector" scan-cluster --from "$cluster_snapshot" --cluster-name demo \
  --exceptions "$cluster_exceptions" --benchmark nsa-cisa-1.2

echo
echo "== kspmctl scan-cluster (on demand: the collector scans its snapshot again, now that the nodes reported)"
"$bin/kspmctl" --insecure --collector "$addr" scan-cluster
echo
echo "== kspmctl summary (nodes and cluster together)"
"$bin/kspmctl" --insecure --collector "$addr" summary
echo
echo "== kspmctl nodes"
"$bin/kspmctl" --insecure --collector "$addr" nodes
echo
echo "== kspmctl findings --status FAIL"
"$bin/kspmctl" --insecure --collector "$addr" findings --status FAIL
echo
echo "== kspmctl report: the same posture as one HTML file (open it in a browser)"
"$bin/kspmctl" --insecure --collector "$addr" report -o "$var/posture.html"

kill -TERM "$collector"
wait "$collector"
trap - EXIT
echo
echo "== collector stopped cleanly; posture kept in $var/kspm.db"

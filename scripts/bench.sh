#!/usr/bin/env bash
# `make bench`: runs every benchmark of a Release build and prints its figures.
set -euo pipefail
build=${1:-build-release}
bin="$build/bin"
echo "== agent: full scan vs one shell per audit (kube-bench's way)"
"$bin/kspm-bench-scan" 200
echo
echo "== collector: simulated agents on loopback, and summary over 1,000,000 results"
"$bin/kspm-bench-ingest" 2000 150 64
echo
echo "== agent: drift detection (eBPF) latency, overhead, idle cost"
"$bin/kspm-bench-drift" 40 60
echo
echo "== collector: cluster checks over 10,000, 50,000 and 150,000 pods, streamed to sqlite"
"$bin/kspm-bench-cluster"

#!/usr/bin/env bash
# Checks kspm's packaging against what the agent and the collector actually need:
#   1. systemd units (units.sh): `systemd-analyze verify` (no warning tolerated), the hardening
#      each unit promises, and `systemd-analyze security` exposure thresholds;
#   2. Kubernetes (kubernetes.sh): the Kustomize base renders, and a structural test of the
#      rendered objects (kubernetes_structure.py: every toleration, host mount, capability and
#      RBAC rule of the agent and the collector, the RBAC rules derived from the collector's code
#      by rbac_rules.py, and how agents get their node certificate: token enrolment in the base,
#      static certificates with components/static-certs);
#   3. Helm (helm.sh): template syntax (balanced actions and blocks, defined includes, existing
#      values), then the chart rendered (by helm when installed, else by helm_render.py) in both
#      enrolment modes and put through the same structural test;
#   4. Debian maintainer scripts (debian.sh): POSIX syntax, shellcheck, and a sandboxed install,
#      upgrade, remove and purge (debian_sandbox.sh: a private mount namespace with /etc, /usr and
#      /var on overlays, as root);
#   5. Dockerfiles (dockerfiles.sh): multi-stage on Debian 12, slim runtime, the collector
#      non-root.
# Usage: tests/packaging/check_packaging.sh   (from anywhere; exits non-zero on any failure)
# Needs: systemd-analyze, kubectl, python3 with PyYAML; shellcheck, unshare and root are optional
# (what cannot run is reported as SKIP). helm_render_test.py tests the built-in chart renderer.
# shellcheck source-path=SCRIPTDIR
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PKG="$ROOT/packaging"

failures=()
fail() { failures+=("$*"); echo "FAIL $*"; }
ok() { echo "ok   $*"; }
skip() { echo "SKIP $*"; }
need() { command -v "$1" >/dev/null 2>&1; }

TMP=$(mktemp -d /tmp/kspm-packaging.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

if ! need python3 || ! python3 -c 'import yaml' 2>/dev/null; then
  fail "python3 with PyYAML is required (Debian: apt-get install python3 python3-yaml)"
  HAVE_PY=0
else
  HAVE_PY=1
fi

# In this order: helm.sh compares its ClusterRole with the Kustomize renderings in $TMP.
# shellcheck source=units.sh
. "$HERE/units.sh"
# shellcheck source=kubernetes.sh
. "$HERE/kubernetes.sh"
# shellcheck source=helm.sh
. "$HERE/helm.sh"
# shellcheck source=debian.sh
. "$HERE/debian.sh"
# shellcheck source=dockerfiles.sh
. "$HERE/dockerfiles.sh"

echo
if ((${#failures[@]})); then
  echo "packaging: ${#failures[@]} check(s) failed"
  exit 1
fi
echo "packaging: all checks passed"

# shellcheck shell=bash
# Kubernetes: the Kustomize base renders, alone and with components/static-certs or
# components/scan-configmaps, and each
# rendering passes the structural test (kubernetes_structure.py); the README tells how to create
# the certificates. Sourced by check_packaging.sh (HERE, PKG, TMP, HAVE_PY, ok, fail, need);
# defines structure(), which helm.sh uses too.

structure() {  # label namespace file [token|static]
  local out
  if out=$(python3 "$HERE/kubernetes_structure.py" "$@" 2>&1); then
    ok "$(tail -1 <<<"$out")"
  else
    while IFS= read -r line; do fail "$line"; done <<<"$out"
  fi
}

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
  # The scan-configmaps component: its own role and the flag, checked together.
  mkdir -p "$TMP/configmaps-overlay"
  printf 'resources: [%s/base]\ncomponents: [%s/components/scan-configmaps]\n' "$rel" "$rel" \
    >"$TMP/configmaps-overlay/kustomization.yaml"
  if kubectl kustomize "$TMP/configmaps-overlay" >"$TMP/kustomize-configmaps.yaml" \
    2>"$TMP/kustomize.err"; then
    ok "kubernetes: kubectl kustomize base + components/scan-configmaps"
    ((HAVE_PY)) && structure "kustomize (scan-configmaps)" kspm-system \
      "$TMP/kustomize-configmaps.yaml" token
  else
    fail "kubernetes: scan-configmaps component failed: $(cat "$TMP/kustomize.err")"
  fi
  # The monitoring component: a ServiceMonitor on the Service's health port, a PodMonitor on the
  # agents' (the ports must exist under those names, or Prometheus scrapes nothing).
  mkdir -p "$TMP/monitoring-overlay"
  printf 'resources: [%s/base]\ncomponents: [%s/components/monitoring]\n' "$rel" "$rel" \
    >"$TMP/monitoring-overlay/kustomization.yaml"
  if kubectl kustomize "$TMP/monitoring-overlay" >"$TMP/kustomize-monitoring.yaml" \
    2>"$TMP/kustomize.err"; then
    ok "kubernetes: kubectl kustomize base + components/monitoring"
    ((HAVE_PY)) && python3 "$HERE/monitors.py" "$TMP/kustomize-monitoring.yaml" kspm-system \
      || fail "kubernetes: monitoring component: monitors do not match the ports they scrape"
  else
    fail "kubernetes: monitoring component failed: $(cat "$TMP/kustomize.err")"
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

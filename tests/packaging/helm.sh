# shellcheck shell=bash
# Helm: balanced template actions, then the chart linted and rendered (by helm when installed,
# else by helm_render.py, a renderer of the template subset the chart uses) in both enrolment
# modes and put through the same structural test as the Kustomize base; an unknown mode must
# fail, and both ways must install the same RBAC rules. Sourced by check_packaging.sh after
# kubernetes.sh (HERE, PKG, TMP, HAVE_PY, ok, fail, need, structure).

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
      python3 "$HERE/helm_render.py" "$CHART" kspm-system "$out" "$@" >"$out.log" 2>&1
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
  if helm_template "$TMP/helm-configmaps.yaml" --set collector.scanConfigMaps=true; then
    structure "helm (collector.scanConfigMaps=true)" kspm-system "$TMP/helm-configmaps.yaml" token
    grep -q 'kspm-collector-configmaps' "$TMP/helm-configmaps.yaml" \
      || fail "helm: collector.scanConfigMaps=true rendered no kspm-collector-configmaps role"
  else
    fail "helm: collector.scanConfigMaps=true: $(cat "$TMP/helm-configmaps.yaml.log")"
  fi
  if helm_template "$TMP/helm-monitoring.yaml" --set metrics.serviceMonitor.enabled=true \
    --set collector.alertsSecret=kspm-alerts; then
    structure "helm (metrics.serviceMonitor.enabled=true)" kspm-system \
      "$TMP/helm-monitoring.yaml" token
    python3 "$HERE/monitors.py" "$TMP/helm-monitoring.yaml" kspm-system \
      || fail "helm: serviceMonitor: monitors do not match the ports they scrape"
    grep -q -- '--config=/etc/kspm/alerts/collector.toml' "$TMP/helm-monitoring.yaml" \
      || fail "helm: collector.alertsSecret does not give the collector its --config"
  else
    fail "helm: metrics.serviceMonitor.enabled=true: $(cat "$TMP/helm-monitoring.yaml.log")"
  fi
  if grep -qE 'kind: (ServiceMonitor|PodMonitor)' "$TMP/helm.yaml"; then
    fail "helm: monitors rendered though metrics.serviceMonitor.enabled is false"
  fi
  # PostgreSQL: replicas, a PDB, no PVC, the password from the Secret, egress to the port.
  if helm_template "$TMP/helm-postgres.yaml" --set store.postgres.host=kspm-db-rw.db.svc \
    --set store.postgres.existingSecret=kspm-db-app --set collector.replicas=3 \
    --set store.postgres.writers=3; then
    structure "helm (store.postgres.host)" kspm-system "$TMP/helm-postgres.yaml" token
    python3 - "$TMP/helm-postgres.yaml" <<'PY' || fail "helm: store.postgres: replicas, egress or writers"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "kspm-collector")
pol = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "kspm-collector")
ports = {p["port"] for e in pol["spec"]["egress"] for p in e.get("ports", [])}
args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
sys.exit(0 if dep["spec"]["replicas"] == 3 and 5432 in ports and "--store-writers=3" in args
         else 1)
PY
  else
    fail "helm: store.postgres.host: $(cat "$TMP/helm-postgres.yaml.log")"
  fi
  if helm_template "$TMP/helm-pg-bad.yaml" --set store.postgres.host=db; then
    fail "helm: store.postgres.host without existingSecret rendered instead of failing"
  elif grep -q 'store.postgres.existingSecret must name a Secret' "$TMP/helm-pg-bad.yaml.log"; then
    ok "helm: PostgreSQL without a password Secret fails the rendering"
  else
    fail "helm: store.postgres.host without a Secret failed for another reason"
  fi
  if helm_template "$TMP/helm-bad.yaml" --set enrollment.mode=tokn; then
    fail "helm: enrollment.mode=tokn rendered instead of failing"
  elif grep -q 'enrollment.mode must be token or static' "$TMP/helm-bad.yaml.log"; then
    ok "helm: an unknown enrollment.mode fails the rendering"
  else
    fail "helm: enrollment.mode=tokn failed for another reason: $(cat "$TMP/helm-bad.yaml.log")"
  fi
  # Both ways install the same RBAC rules, in either mode.
  for m in "" -static -configmaps; do
    [[ -s "$TMP/helm$m.yaml" && -s "$TMP/kustomize$m.yaml" ]] || continue
    python3 - "$TMP/kustomize$m.yaml" "$TMP/helm$m.yaml" <<'PY' \
      || fail "helm: ClusterRole rules differ from the Kustomize base${m:+ with the component ($m)}"
import sys, yaml
def rules(p):
    return {d["metadata"]["name"]: d["rules"] for d in yaml.safe_load_all(open(p))
            if d and d["kind"] == "ClusterRole"}
sys.exit(0 if rules(sys.argv[1]) == rules(sys.argv[2]) else 1)
PY
  done
fi

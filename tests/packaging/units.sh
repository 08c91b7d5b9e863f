# shellcheck shell=bash
# systemd units: `systemd-analyze verify` (no warning tolerated), the hardening each unit promises,
# and `systemd-analyze security` exposure thresholds. Sourced by check_packaging.sh (PKG, TMP, ok,
# fail, need).

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

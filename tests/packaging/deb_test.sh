#!/usr/bin/env bash
# Builds the two .deb packages with CPack, installs them on this machine with dpkg, runs what
# they installed, then removes and purges them and checks that nothing is left behind.
# Needs root and dpkg; exits 77 (skipped) without them. Usage: deb_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
if [[ $(id -u) -ne 0 ]] || ! command -v dpkg >/dev/null; then
  echo "SKIP: installing packages needs root and dpkg"
  exit 77
fi
if dpkg -s kspm-agent >/dev/null 2>&1 || dpkg -s kspm-collector >/dev/null 2>&1; then
  echo "SKIP: kspm packages are already installed on this machine; not touching them"
  exit 77
fi
work=$(mktemp -d)
cleanup() {
  dpkg -P kspm-agent kspm-collector >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

(cd "$build" && cpack -G DEB -B "$work" >"$work/cpack.log" 2>&1) || { cat "$work/cpack.log"; fail "cpack"; }
agent_deb=$(ls "$work"/kspm-agent_*.deb)
collector_deb=$(ls "$work"/kspm-collector_*.deb)
echo "built $(basename "$agent_deb") ($(du -k "$agent_deb" | cut -f1) KiB), $(basename "$collector_deb") ($(du -k "$collector_deb" | cut -f1) KiB)"
collector_info=$(dpkg-deb -I "$collector_deb")
agent_info=$(dpkg-deb -I "$agent_deb")
[[ $collector_info == *"Depends: adduser"* ]] || fail "kspm-collector does not depend on adduser"
[[ $agent_info == *libgrpc* ]] || fail "kspm-agent lacks shared-library dependencies"

dpkg -i "$agent_deb" "$collector_deb" >"$work/install.log" 2>&1 || { cat "$work/install.log"; fail "dpkg -i"; }
[[ $(/usr/bin/kspm-agent --version) == "kspm-agent "* ]] || fail "kspm-agent --version"
[[ $(/usr/bin/kspm-collector --version) == "kspm-collector "* ]] || fail "kspm-collector --version"
[[ $(/usr/bin/kspmctl --version) == "kspmctl "* ]] || fail "kspmctl --version"
[[ -f /etc/kspm/agent.yaml ]] || fail "postinst did not install /etc/kspm/agent.yaml"
[[ -f /etc/kspm/collector.env ]] || fail "postinst did not install /etc/kspm/collector.env"
getent passwd kspm >/dev/null || fail "postinst did not create the kspm user"
[[ $(stat -c %U /var/lib/kspm) == kspm ]] || fail "/var/lib/kspm is not owned by kspm"
for unit in kspm-agent kspm-collector; do
  path=/usr/lib/systemd/system/$unit.service
  [[ -f $path ]] || path=/lib/systemd/system/$unit.service
  out=$(systemd-analyze verify "$path" 2>&1) || fail "systemd-analyze verify $unit: $out"
  [[ -z $out ]] || fail "systemd-analyze verify $unit warns: $out"
done

# The installed agent scans a host root built from a fixture description.
"$build/bin/kspm-fixture" build "$src/tests/fixtures/hosts/kubeadm-worker.yaml" "$work/root"
/usr/bin/kspm-agent scan --host-root "$work/root" --format json >"$work/scan.json" \
  || fail "installed kspm-agent scan"
python3 - "$work/scan.json" <<'PY' || fail "scan output"
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["node"]["name"] == "worker-1", doc["node"]
assert any(r["id"] == "4.2.1" and r["status"] == "PASS" for r in doc["results"])
PY
# The installed collector starts on its database and answers the installed kspmctl.
/usr/bin/kspmctl certs init "$work/pki" --node worker-1 >/dev/null 2>&1 || fail "kspmctl certs init"
/usr/bin/kspm-collector --log-level warn serve --listen 127.0.0.1:0 --db "$work/kspm.db" \
  --tls-ca "$work/pki/ca.crt" --tls-cert "$work/pki/collector.crt" \
  --tls-key "$work/pki/collector.key" --port-file "$work/port" 2>"$work/collector.log" &
collector=$!
for _ in $(seq 100); do [[ -s "$work/port" ]] && break; sleep 0.05; done
[[ -s "$work/port" ]] || { cat "$work/collector.log"; fail "installed collector did not start"; }
port=$(cat "$work/port")
/usr/bin/kspm-agent --log-level error send --collector "127.0.0.1:$port" --host-root "$work/root" \
  --node-name worker-1 --tls-ca "$work/pki/ca.crt" --tls-cert "$work/pki/nodes/worker-1.crt" \
  --tls-key "$work/pki/nodes/worker-1.key" 2>/dev/null || fail "installed agent send"
nodes=$(/usr/bin/kspmctl --collector "127.0.0.1:$port" --tls-ca "$work/pki/ca.crt" \
  --tls-cert "$work/pki/kspmctl.crt" --tls-key "$work/pki/kspmctl.key" nodes) \
  || fail "installed kspmctl nodes"
[[ $nodes == *worker-1* ]] || fail "kspmctl nodes does not list worker-1: $nodes"
kill -TERM "$collector"
wait "$collector" || fail "collector did not stop cleanly on SIGTERM"

# Remove keeps settings and data; purge removes them and the user.
dpkg -r kspm-agent kspm-collector >"$work/remove.log" 2>&1 || { cat "$work/remove.log"; fail "dpkg -r"; }
[[ ! -e /usr/bin/kspm-agent && ! -e /usr/bin/kspmctl ]] || fail "binaries left after remove"
[[ -f /etc/kspm/agent.yaml ]] || fail "remove deleted /etc/kspm/agent.yaml"
dpkg -P kspm-agent kspm-collector >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; fail "dpkg -P"; }
[[ ! -e /etc/kspm/agent.yaml && ! -e /etc/kspm/collector.env ]] || fail "settings left after purge"
[[ ! -e /var/lib/kspm ]] || fail "/var/lib/kspm left after purge"
! getent passwd kspm >/dev/null || fail "user kspm left after purge"
dpkg -s kspm-agent >/dev/null 2>&1 && fail "kspm-agent still known to dpkg"
echo "PASS: build, install, run, remove and purge of kspm-agent and kspm-collector"

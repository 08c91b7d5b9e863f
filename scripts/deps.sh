#!/usr/bin/env bash
# Installs kspm's build and test dependencies from Debian 12 packages.
# Idempotent: prints nothing and changes nothing when everything is present.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libbpf-dev bpftool clang llvm
  libsqlite3-dev libspdlog-dev libfmt-dev libyaml-cpp-dev nlohmann-json3-dev libsimdjson-dev
  libcli11-dev libssl-dev libcurl4-openssl-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  clang-format-14 openssl systemd kubectl dpkg-dev python3 python3-yaml shellcheck
  python3-jsonschema libxml2-utils
  prometheus-cpp-dev prometheus chromium
  libpq-dev postgresql
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "deps: missing Debian packages: ${missing[*]}" >&2
  echo "deps: run 'make deps' as root, or: apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if [[ ! -d /var/lib/apt/lists/partial || -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ]]; then
  apt-get update -qq
fi
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/kspm-apt.log 2>&1; then
  # The package lists may be stale: refresh once and retry.
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/kspm-apt.log 2>&1 || {
    echo "deps: apt-get install failed; see /tmp/kspm-apt.log" >&2
    tail -20 /tmp/kspm-apt.log >&2
    exit 1
  }
fi

# shellcheck shell=bash
# Debian maintainer scripts: POSIX syntax, shellcheck, and a sandboxed install, upgrade, remove
# and purge (debian_sandbox.sh, as root in a private mount namespace). Sourced by
# check_packaging.sh (HERE, PKG, TMP, HAVE_PY, ok, fail, skip, need).

for p in kspm-agent kspm-collector; do
  for s in postinst prerm postrm; do
    f="$PKG/debian/$p/$s"
    if [[ ! -f "$f" ]]; then
      fail "debian: $p/$s missing"
      continue
    fi
    [[ -x "$f" ]] || fail "debian: $p/$s is not executable"
    head -1 "$f" | grep -qx '#!/bin/sh' || fail "debian: $p/$s is not #!/bin/sh"
    grep -qx 'set -e' "$f" || fail "debian: $p/$s lacks set -e"
    sh -n "$f" || fail "debian: $p/$s: sh syntax"
    if need dash; then dash -n "$f" || fail "debian: $p/$s: dash syntax"; fi
  done
done
if need shellcheck; then
  if shellcheck -s sh "$PKG"/debian/*/postinst "$PKG"/debian/*/prerm "$PKG"/debian/*/postrm \
    >"$TMP/shellcheck.log" 2>&1; then
    ok "debian: shellcheck -s sh on the maintainer scripts"
  else
    fail "debian: shellcheck: $(cat "$TMP/shellcheck.log")"
  fi
else
  skip "debian: shellcheck not installed"
fi
if ((HAVE_PY)); then
  python3 -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$PKG/debian/agent.yaml" \
    || fail "debian: agent.yaml is not valid YAML"
fi
if [[ $(id -u) -eq 0 ]] && need unshare && need getent; then
  mkdir -p "$TMP/sandbox"
  out=$(bash "$HERE/debian_sandbox.sh" "$TMP/sandbox" "$PKG" 2>&1)  # enters unshare -m itself
  rc=$?
  if ((rc == 0)); then
    ok "debian: install, upgrade, remove, purge in a sandbox (postinst, prerm, postrm)"
  elif ((rc == 3)); then
    skip "debian: no mount namespace with overlays here: $out"
  else
    while IFS= read -r line; do fail "${line#FAIL }"; done <<<"$out"
  fi
else
  skip "debian: sandboxed install needs root and unshare"
fi

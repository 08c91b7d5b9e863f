#!/usr/bin/env bash
# Installs, upgrades, removes and purges kspm's Debian maintainer scripts in a sandbox: a private
# mount namespace with /etc, /usr and /var (and /lib when not merged-/usr) on tmpfs-backed
# overlays, so the host is not touched. Run by debian.sh, as root:
#   bash debian_sandbox.sh SANDBOX_DIR PACKAGING_DIR   (it enters its own mount namespace)
# Prints "FAIL debian sandbox: ..." per problem; exits 0 (all good), 1 (a check failed) or 3 (no
# overlay mounts here: the caller reports SKIP).
set -uo pipefail

if (($# != 2)); then
  echo "usage: bash $0 SANDBOX_DIR PACKAGING_DIR" >&2
  exit 2
fi
sb="$1"
PKG="$2"
# The overlays below would shadow the caller's own /etc, /usr and /var: this script always enters
# a mount namespace of its own first (unshare -m, mounts private), whoever calls it. unshare
# without --fork keeps the process id, which tells the re-executed script it is inside.
if [[ "${KSPM_SANDBOX_PID:-}" != "$$" ]]; then
  KSPM_SANDBOX_PID=$$ exec unshare -m --propagation private bash "${BASH_SOURCE[0]}" "$@"
fi
fail=0
bad() { echo "FAIL debian sandbox: $*"; fail=1; }
mount --make-rprivate / || exit 3
mount -t tmpfs -o mode=0700 kspm-sandbox "$sb" || exit 3
dirs=(etc usr var)
[[ -L /lib ]] || dirs+=(lib)  # not merged-/usr: /lib/systemd/system is a directory of its own
for d in "${dirs[@]}"; do
  mkdir -p "$sb/$d/upper" "$sb/$d/work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$sb/$d/upper,workdir=$sb/$d/work" "/$d" \
    || exit 3
done
# Hide a running systemd: the scripts must not touch the real service manager from here.
if [[ -d /run/systemd/system ]]; then mount -t tmpfs tmpfs /run/systemd || exit 3; fi
if getent passwd kspm >/dev/null || getent group kspm >/dev/null; then
  userdel kspm >/dev/null 2>&1; groupdel kspm >/dev/null 2>&1  # only inside the overlay
fi
wants=/etc/systemd/system/multi-user.target.wants
# What dpkg unpacks before postinst.
install -m 0644 "$PKG/systemd/kspm-agent.service" "$PKG/systemd/kspm-collector.service" \
  /lib/systemd/system/
install -d /usr/share/kspm
install -m 0644 "$PKG/debian/agent.yaml" "$PKG/debian/collector.env" /usr/share/kspm/
has_dsh=0
command -v deb-systemd-helper >/dev/null && has_dsh=1
# As dpkg runs them: deb-systemd-helper refuses to act outside a maintainer script.
maint() {  # package script args...
  DPKG_MAINTSCRIPT_PACKAGE=$1 DPKG_MAINTSCRIPT_NAME=$2 sh "$PKG/debian/$1/$2" "${@:3}"
}

# Install: collector first, then the agent (either order must work; this is the harder one
# for /etc/kspm/tls, which the collector creates in group kspm).
maint kspm-collector postinst configure "" >/dev/null \
  || bad "kspm-collector postinst configure failed"
maint kspm-agent postinst configure "" >/dev/null || bad "kspm-agent postinst configure failed"
if ! pw=$(getent passwd kspm); then
  bad "user kspm not created"
else
  IFS=: read -r _ _ uid gid _ home shell <<<"$pw"
  ((uid < 1000)) || bad "kspm is not a system user (uid $uid)"
  [[ "$home" == /var/lib/kspm ]] || bad "kspm's home is $home, expected /var/lib/kspm"
  [[ "$shell" == */nologin ]] || bad "kspm's shell is $shell, expected nologin"
  [[ "$(getent group kspm | cut -d: -f3)" == "$gid" ]] || bad "kspm's primary group is not kspm"
fi
expect_stat() {  # path, "owner:group mode"
  local got
  got=$(stat -c '%U:%G %a' "$1" 2>/dev/null) || { bad "$1 missing"; return; }
  [[ "$got" == "$2" ]] || bad "$1 is $got, expected $2"
}
expect_stat /var/lib/kspm "kspm:kspm 750"
expect_stat /var/lib/kspm-agent "root:root 700"
expect_stat /etc/kspm "root:root 755"
expect_stat /etc/kspm/tls "root:kspm 750"
expect_stat /etc/kspm/agent.yaml "root:root 644"
expect_stat /etc/kspm/collector.env "root:root 644"
if ((has_dsh)); then
  for u in kspm-agent kspm-collector; do
    [[ -L "$wants/$u.service" ]] || bad "$u.service not enabled by postinst"
  done
fi

# Upgrade: postinst configure OLD-VERSION keeps local edits and modes.
echo "# local edit" >>/etc/kspm/agent.yaml
echo "KSPM_LOG_LEVEL=debug" >>/etc/kspm/collector.env
chmod 0700 /etc/kspm/tls
maint kspm-collector postinst configure 0.0.9 >/dev/null \
  || bad "kspm-collector postinst upgrade failed"
maint kspm-agent postinst configure 0.0.9 >/dev/null || bad "kspm-agent postinst upgrade failed"
grep -q "local edit" /etc/kspm/agent.yaml || bad "upgrade overwrote /etc/kspm/agent.yaml"
grep -q "KSPM_LOG_LEVEL=debug" /etc/kspm/collector.env \
  || bad "upgrade overwrote /etc/kspm/collector.env"
expect_stat /etc/kspm/tls "root:kspm 700"
chmod 0750 /etc/kspm/tls
[[ $(getent passwd | grep -c '^kspm:') == 1 ]] || bad "upgrade duplicated user kspm"

# An administrator's certificate, which no purge may delete.
echo key >/etc/kspm/tls/collector.key
chgrp kspm /etc/kspm/tls/collector.key
chmod 0640 /etc/kspm/tls/collector.key

# Remove: prerm, dpkg deletes the package's files, postrm. Data and user stay.
for p in kspm-agent kspm-collector; do
  maint $p prerm remove >/dev/null || bad "$p prerm remove failed"
done
rm -f /lib/systemd/system/kspm-agent.service /lib/systemd/system/kspm-collector.service \
  /usr/share/kspm/agent.yaml /usr/share/kspm/collector.env
rmdir /usr/share/kspm
for p in kspm-agent kspm-collector; do
  maint $p postrm remove >/dev/null || bad "$p postrm remove failed"
done
[[ -d /var/lib/kspm ]] || bad "remove (not purge) deleted /var/lib/kspm"
getent passwd kspm >/dev/null || bad "remove (not purge) deleted user kspm"
[[ -e "$wants/kspm-agent.service" ]] && bad "kspm-agent.service still enabled after remove"

# Purge: state, settings, unit state and the user go; the administrator's key stays.
for p in kspm-agent kspm-collector; do
  maint $p postrm purge >/dev/null || bad "$p postrm purge failed"
done
for path in /var/lib/kspm /var/lib/kspm-agent /etc/kspm/agent.yaml /etc/kspm/collector.env \
  "$wants/kspm-agent.service" "$wants/kspm-collector.service" \
  /etc/systemd/system/kspm-agent.service /etc/systemd/system/kspm-collector.service; do
  [[ -e "$path" || -L "$path" ]] && bad "$path left after purge"
done
find /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
  -name '*kspm*' 2>/dev/null | grep -q . \
  && bad "deb-systemd-helper state of kspm left after purge"
getent passwd kspm >/dev/null && bad "user kspm left after purge"
getent group kspm >/dev/null && bad "group kspm left after purge"
expect_stat /etc/kspm/tls/collector.key "root:root 640"

# Purge with nothing of the administrator's left: /etc/kspm disappears entirely.
rm -f /etc/kspm/tls/collector.key
maint kspm-collector postrm purge >/dev/null || bad "second purge failed"
[[ -e /etc/kspm ]] && bad "/etc/kspm left after purge of both packages"
exit "$fail"

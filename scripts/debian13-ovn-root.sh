#!/usr/bin/env bash
# Builds a Debian 13 (trixie) root holding OVN 25.03 and Open vSwitch 3.5, so
# that the tests can run their OVN stack on those versions on a Debian 12 host
# (OVN_TEST_ROOT=DIR, see test/harness/ovn-binaries.ts and docs/compatibility.md).
# Trixie's binaries need glibc 2.38, which Debian 12 lacks; the tests run them
# through the root's own dynamic loader and libraries, in the host's filesystem
# view (no chroot), so nothing in the root is ever started by this script.
#
# Usage: sudo scripts/debian13-ovn-root.sh [DIR]
#   DIR defaults to $OVN_TEST_ROOT, else /var/cache/ovn-docker-driver/debian13-root.
# Idempotent: a DIR with DIR/.complete is kept as it is (delete DIR to rebuild).
# Needs debootstrap and Debian's mirror (about 80 s and 300 MB); prints the
# versions the root holds.
set -euo pipefail

DIR=${1:-${OVN_TEST_ROOT:-/var/cache/ovn-docker-driver/debian13-root}}
MIRROR=http://deb.debian.org/debian
# minbase, plus only what holds the daemons and tools of the test stack:
# ovn-northd and ovn-nb/sb schemas (ovn-central), ovn-controller (ovn-host),
# ovsdb-server, ovs-vswitchd and vswitch.ovsschema (openvswitch-switch).
PACKAGES=ovn-central,ovn-host,openvswitch-switch

if [[ $(id -u) -ne 0 ]]; then
  echo "$0: debootstrap needs root" >&2
  exit 1
fi
case $DIR in
  /*) ;;
  *) DIR=$(pwd)/$DIR ;;
esac
DIR=${DIR%/}

if [[ -e $DIR/.complete ]]; then
  echo "$DIR: already built (remove it to rebuild)"
else
  command -v debootstrap >/dev/null || {
    echo "$0: debootstrap is missing (apt-get install debootstrap)" >&2
    exit 1
  }
  TMP=$DIR.tmp
  # A half-built root from an interrupted run: debootstrap may have left
  # /proc or /sys mounted in it, and rm must never cross into those.
  if [[ -e $TMP ]]; then
    while read -r m; do umount -l "$m" || true; done < <(findmnt -rno TARGET | grep -F "$TMP/" | sort -r)
    rm -rf --one-file-system "$TMP"
  fi
  if [[ -e $DIR ]]; then
    echo "$0: $DIR exists but is not a complete root (no .complete); remove it first" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$DIR")"
  started=$SECONDS
  debootstrap --variant=minbase --include="$PACKAGES" trixie "$TMP" "$MIRROR"
  # Downloaded .debs are not needed to run anything.
  rm -rf --one-file-system "$TMP"/var/cache/apt/archives/*.deb
  touch "$TMP/.complete"
  mv "$TMP" "$DIR"
  echo "$DIR: built in $((SECONDS - started)) s"
fi

# Through the root's loader and libraries, as the tests run them. Paths are
# resolved inside the root (chroot readlink): usr/sbin/ovs-vswitchd is an
# absolute symlink to /etc/alternatives/…, which from outside would name the
# host's own ovs-vswitchd.
LOADER=$(chroot "$DIR" /usr/bin/readlink -f /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2)
for bin in /usr/bin/ovn-northd /usr/bin/ovn-controller /usr/sbin/ovs-vswitchd /usr/sbin/ovsdb-server; do
  real=$(chroot "$DIR" /usr/bin/readlink -f "$bin")
  "$DIR$LOADER" --library-path "$DIR/usr/lib/x86_64-linux-gnu" "$DIR$real" --version | head -n1
done

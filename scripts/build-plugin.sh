#!/usr/bin/env bash
# Builds the driver as a managed Docker plugin (`docker plugin create`), offline
# but for Debian's mirror and the npm registry: a Debian 13 root holding Node.js
# and the tools the driver runs (ip, ethtool, iptables, ovs-vsctl), the built
# driver with its production dependencies, and plugins/managed/config.json.
#
# Usage: sudo scripts/build-plugin.sh [NAME]      (NAME defaults to ovn-docker-driver)
#        sudo scripts/build-plugin.sh --dir DIR   (only build the plugin's folder, for
#                                                  `docker plugin create NAME DIR` on any engine)
# The docker CLI's own settings apply (DOCKER_HOST, ...). The Debian root is
# kept in $PLUGIN_BASE_ROOT (default /var/cache/ovn-docker-driver/plugin-base),
# built once (about 80 s) and again when this script's recipe for it changes;
# delete it to take Debian's newer security updates.
set -euo pipefail

OUT=
NAME=
if [[ ${1:-} == --dir ]]; then
  [[ -n ${2:-} ]] || { echo "$0: --dir needs a folder" >&2; exit 1; }
  OUT=$2
  [[ ! -e $OUT ]] || { echo "$0: $OUT exists already" >&2; exit 1; }
else
  NAME=${1:-ovn-docker-driver}
fi
BASE=${PLUGIN_BASE_ROOT:-/var/cache/ovn-docker-driver/plugin-base}
MIRROR=http://deb.debian.org/debian
SECURITY_MIRROR=http://deb.debian.org/debian-security
PACKAGES=nodejs,iproute2,ethtool,iptables
# Written into the root's .complete: a root built by another recipe is rebuilt.
RECIPE="trixie minbase $PACKAGES + ovs-vsctl, upgraded from trixie-updates and trixie-security"
REPO=$(cd "$(dirname "$0")/.." && pwd)

if [[ $(id -u) -ne 0 ]]; then
  echo "$0: needs root (debootstrap, and a root filesystem owned by root)" >&2
  exit 1
fi
for tool in debootstrap npm $([[ -z $OUT ]] && echo docker); do
  command -v "$tool" >/dev/null || { echo "$0: $tool is missing" >&2; exit 1; }
done

# Debian's security and stable updates (debootstrap takes the release's main
# suite only): the plugin runs as root on the host. Then ovs-vsctl alone, with
# the libraries it links: its package, openvswitch-switch, would bring the OVS
# daemons, systemd, procps and kmod (about 45 MB) that the plugin never runs.
# The package's own Depends name the libraries.
finish_root() {
  local root=$1
  # apt needs a resolv.conf: debootstrap copied the host's, kept as it was; else one for now.
  local own_resolv=
  [[ -e $root/etc/resolv.conf ]] || { own_resolv=1; cp -L /etc/resolv.conf "$root/etc/resolv.conf"; }
  printf 'deb %s trixie-updates main\ndeb %s trixie-security main\n' "$MIRROR" "$SECURITY_MIRROR" >> "$root/etc/apt/sources.list"
  chroot "$root" apt-get update -q
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -q --no-install-recommends -o Dpkg::Use-Pty=0
  chroot "$root" sh -c 'cd /tmp && apt-get download -q openvswitch-switch'
  local deb
  deb=$(cd "$root/tmp" && echo openvswitch-switch_*.deb)
  [[ -f $root/tmp/$deb ]] || { echo "$0: apt-get download left no openvswitch-switch package" >&2; exit 1; }
  local libs
  libs=$(chroot "$root" dpkg-deb -f "/tmp/$deb" Depends | tr ',|' '\n\n' | awk '$1 ~ /^lib/ { print $1 }' | sort -u)
  # shellcheck disable=SC2086 # one word per package
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 $libs
  chroot "$root" sh -c "dpkg-deb --fsys-tarfile '/tmp/$deb' | tar -x -C / ./usr/bin/ovs-vsctl"
  rm -f "$root/tmp/$deb"
  [[ -z $own_resolv ]] || rm -f "$root/etc/resolv.conf"
  chroot "$root" ovs-vsctl --version | head -1
}

mkdir -p "$(dirname "$BASE")"
# Two builds at once (tests of two engines): the second waits, then finds the root.
exec 9>"$BASE.lock"
flock 9
if [[ -e $BASE/.complete && $(cat "$BASE/.complete") != "$RECIPE" ]]; then
  echo "$BASE was built by another recipe of this script; building it again"
  rm -rf --one-file-system "$BASE"
fi
if [[ ! -e $BASE/.complete ]]; then
  if [[ -e $BASE ]]; then
    echo "$0: $BASE exists but is not a complete root (no .complete); remove it first" >&2
    exit 1
  fi
  # A half-built root from an interrupted run: debootstrap may have left
  # /proc or /sys mounted in it, and rm must never cross into those.
  if [[ -e $BASE.tmp ]]; then
    while read -r m; do umount -l "$m" || true; done < <(findmnt -rno TARGET | grep -F "$BASE.tmp/" | sort -r)
    rm -rf --one-file-system "$BASE.tmp"
  fi
  echo "building the plugin's Debian 13 root in $BASE ..."
  debootstrap --variant=minbase --include="$PACKAGES" trixie "$BASE.tmp" "$MIRROR"
  finish_root "$BASE.tmp"
  # Nothing in the plugin reads documentation, manuals, translations or package lists.
  rm -rf --one-file-system "$BASE.tmp"/var/cache/apt/archives/*.deb "$BASE.tmp"/var/cache/apt/*.bin "$BASE.tmp"/var/lib/apt/lists/* \
    "$BASE.tmp"/usr/share/doc "$BASE.tmp"/usr/share/man "$BASE.tmp"/usr/share/locale
  echo "$RECIPE" > "$BASE.tmp/.complete"
  mv "$BASE.tmp" "$BASE"
fi
exec 9>&-

BUILD=$(mktemp -d /tmp/ovn-docker-plugin-XXXXXX)
trap 'rm -rf --one-file-system "$BUILD"' EXIT
APP=$BUILD/plugin/rootfs/opt/ovn-docker-driver

echo "copying the root, building the driver ..."
mkdir -p "$BUILD/plugin/rootfs"
cp -a "$BASE/." "$BUILD/plugin/rootfs/"
rm -f "$BUILD/plugin/rootfs/.complete"
mkdir -p "$APP"
# The driver only (src/), with the repository's compiler settings.
cat > "$BUILD/tsconfig.json" <<EOF
{
  "extends": "$REPO/tsconfig.json",
  "compilerOptions": { "rootDir": "$REPO", "outDir": "$APP/dist", "typeRoots": ["$REPO/node_modules/@types"], "sourceMap": false },
  "include": ["$REPO/src/**/*.ts"]
}
EOF
(cd "$REPO" && npx tsc -p "$BUILD/tsconfig.json")
cp "$REPO/package.json" "$REPO/package-lock.json" "$APP/"
(cd "$APP" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund)
cp "$REPO/plugins/managed/config.json" "$BUILD/plugin/config.json"

if [[ -n $OUT ]]; then
  mv "$BUILD/plugin" "$OUT"
  echo "built the plugin in $OUT ($(du -sh "$OUT/rootfs" | cut -f1) root). Next: docker plugin create NAME $OUT"
  exit 0
fi

docker plugin create "$NAME" "$BUILD/plugin"
echo "created plugin $NAME ($(du -sh "$BUILD/plugin/rootfs" | cut -f1) root). Next:"
echo "  docker plugin set $NAME OVN_NB_DB=tcp:CENTRAL:6641   # unless external_ids:ovn-nb of this host's Open_vSwitch row says it"
echo "  docker plugin enable $NAME"
echo "  docker network create -d $NAME:latest --subnet 10.1.0.0/24 foo"

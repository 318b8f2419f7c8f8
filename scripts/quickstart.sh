#!/usr/bin/env bash
# Sets up and starts ovn-docker-driver on this machine (Debian/Ubuntu, as root):
#   1. installs the Debian packages that are missing;
#   2. builds the driver (npm ci, tsc);
#   3. starts Open vSwitch (userspace datapath when the kernel has no OVS module);
#   4. with no --ovn-nb: starts a single-node OVN (NB, SB, northd) here;
#      with --ovn-nb/--ovn-sb: joins that OVN as a chassis;
#   5. starts ovn-controller and dockerd if they are not running;
#   6. starts the driver (systemd unit when systemd runs, else in the background).
# Running it again is safe: every step checks before it acts.
#
# Usage: sudo scripts/quickstart.sh [--ovn-nb REMOTE --ovn-sb REMOTE] [--encap-ip IP] [-- DRIVER OPTIONS...]
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
NB=""
SB=""
ENCAP_IP=""
DRIVER_ARGS=()
LOG=/var/log/ovn-docker-driver.log
PIDFILE=/run/ovn-docker-driver.pid

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --ovn-nb) NB=${2:?--ovn-nb needs a remote}; shift 2 ;;
    --ovn-sb) SB=${2:?--ovn-sb needs a remote}; shift 2 ;;
    --encap-ip) ENCAP_IP=${2:?--encap-ip needs an address}; shift 2 ;;
    --) shift; DRIVER_ARGS=("$@"); break ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[ "$(id -u)" = 0 ] || die "run as root (sudo $0)"
if [ -n "$NB" ] && [ -z "$SB" ]; then die "--ovn-nb needs --ovn-sb too (ovn-controller talks to the southbound DB)"; fi

say "Checking Debian packages"
packages=(openvswitch-switch ovn-host docker.io iproute2 ethtool iptables)
[ -z "$NB" ] && packages+=(ovn-central)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "Installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

command -v node >/dev/null || die "Node.js >= 20 is needed (https://nodejs.org); Debian 12's nodejs package is too old"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "Node.js >= 20 is needed, found $(node -v)"

say "Building the driver"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then npm ci --no-audit --no-fund; fi
npm run --silent build

say "Starting Open vSwitch"
if [ -d /sys/module/openvswitch ] || modprobe -q openvswitch 2>/dev/null; then DATAPATH=system; else DATAPATH=netdev; fi
if ! ovs-vsctl --timeout=2 show >/dev/null 2>&1; then
  /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random --no-ovs-vswitchd
fi
if ! ovs-appctl -t ovs-vswitchd version >/dev/null 2>&1; then
  if [ "$DATAPATH" = system ]; then
    /usr/share/openvswitch/scripts/ovs-ctl start --no-ovsdb-server
  else
    # No kernel module: the userspace datapath needs no kernel support.
    ovs-vswitchd --pidfile --detach --log-file unix:/var/run/openvswitch/db.sock
  fi
fi
ovs-vsctl get Open_vSwitch . external_ids:system-id >/dev/null 2>&1 \
  || ovs-vsctl set Open_vSwitch . external_ids:system-id="$(cat /proc/sys/kernel/random/uuid)"

if [ -z "$NB" ]; then
  say "Starting a single-node OVN here (NB, SB, ovn-northd)"
  if ! ovn-nbctl --timeout=2 show >/dev/null 2>&1; then
    /usr/share/ovn/scripts/ovn-ctl start_northd
  fi
  NB=unix:/var/run/ovn/ovnnb_db.sock
  SB=unix:/var/run/ovn/ovnsb_db.sock
  ENCAP_IP=${ENCAP_IP:-127.0.0.1}
fi
if [ -z "$ENCAP_IP" ]; then
  ENCAP_IP=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
  [ -n "$ENCAP_IP" ] || die "cannot guess this host's tunnel address: pass --encap-ip"
fi

say "Configuring this host as an OVN chassis (tunnel address $ENCAP_IP, $DATAPATH datapath)"
ovs-vsctl set Open_vSwitch . \
  external_ids:ovn-nb="$NB" external_ids:ovn-remote="$SB" \
  external_ids:ovn-encap-type=geneve external_ids:ovn-encap-ip="$ENCAP_IP" \
  external_ids:ovn-bridge-datapath-type="$DATAPATH"
ovs-vsctl --may-exist add-br br-int -- set Bridge br-int datapath_type="$DATAPATH" fail-mode=secure \
  other-config:disable-in-band=true
if ! ovn-appctl -t ovn-controller version >/dev/null 2>&1; then
  /usr/share/ovn/scripts/ovn-ctl start_controller
fi

say "Starting dockerd"
if ! docker info >/dev/null 2>&1; then
  if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    systemctl start docker
  else
    nohup dockerd >>/var/log/dockerd.log 2>&1 &
  fi
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || die "dockerd did not start; see /var/log/dockerd.log"
fi

say "Starting ovn-docker-driver"
SOCKET=/run/docker/plugins/openvswitch.sock
if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
  sed "s#/opt/ovn-docker-driver#$REPO#g" systemd/ovn-docker-driver.service >/etc/systemd/system/ovn-docker-driver.service
  [ -e /etc/default/ovn-docker-driver ] || cp systemd/ovn-docker-driver.default /etc/default/ovn-docker-driver
  systemctl daemon-reload
  systemctl enable ovn-docker-driver >/dev/null
  systemctl restart ovn-docker-driver
  LOGHINT="journalctl -u ovn-docker-driver"
else
  if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    kill "$(cat "$PIDFILE")"
    for _ in $(seq 50); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 0.1; done
  fi
  nohup node "$REPO/dist/src/cli/main.js" "${DRIVER_ARGS[@]}" >>"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  LOGHINT="$LOG"
fi
for _ in $(seq 100); do [ -S "$SOCKET" ] && break; sleep 0.2; done
[ -S "$SOCKET" ] || die "the driver did not come up; see $LOGHINT"

say "Ready. Try:"
echo "  docker network create -d openvswitch --subnet 10.1.0.0/24 foo"
echo "  docker run --rm --net foo busybox ip addr"
echo "Logs: $LOGHINT"

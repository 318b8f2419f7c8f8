#!/usr/bin/env bash
# Sets up and starts ovn-docker-driver on this machine (Debian/Ubuntu, as root):
#   1. installs the Debian packages that are missing;
#   2. builds the driver (npm ci, tsc);
#   3. starts Open vSwitch (userspace datapath when the kernel has no OVS module);
#   4. with no --ovn-nb: starts a single-node OVN (NB, SB, northd) here;
#      with --ovn-nb/--ovn-sb: joins that OVN as a chassis;
#   5. starts ovn-controller and dockerd if they are not running;
#   6. starts the driver (systemd unit when systemd runs, else in the background);
#      with --managed-plugin, installs and enables it as the managed Docker plugin
#      "openvswitch" instead (scripts/build-plugin.sh; networks then say -d openvswitch:latest).
# Inside a VM whose NIC is already an OVN port (nested mode, docs/nested.md), with
# --vm-port or --vm-nic and --ovn-nb: no OVN here and no chassis; Open vSwitch, dockerd
# and the driver in nested mode on the VM's bridge breth0 (scripts/prepare-breth0.sh).
# Running it again is safe: every step checks before it acts.
# --stop stops what it started, in reverse, and removes the driver's host state.
#
# Usage: sudo scripts/quickstart.sh [--ovn-nb REMOTE --ovn-sb REMOTE] [--encap-ip IP] [-- DRIVER OPTIONS...]
#        sudo scripts/quickstart.sh --managed-plugin [--ovn-nb REMOTE --ovn-sb REMOTE] [--encap-ip IP]
#        sudo scripts/quickstart.sh --ovn-nb REMOTE (--vm-port NAME | --vm-nic NIC) [-- DRIVER OPTIONS...]
#        sudo scripts/quickstart.sh --stop
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
NB=""
SB=""
ENCAP_IP=""
VM_PORT=""
VM_NIC=""
STOP=""
MANAGED=""
PLUGIN=openvswitch
DRIVER_ARGS=()
LOG=/var/log/ovn-docker-driver.log
PIDFILE=/run/ovn-docker-driver.pid
# What this script started, one word a line, so that --stop stops that and nothing else.
# /run is emptied at boot, as are the processes it lists.
STATE=/run/ovn-docker-driver.quickstart
ARGS_FILE=$STATE.args
OVS_CTL=/usr/share/openvswitch/scripts/ovs-ctl
OVN_CTL=/usr/share/ovn/scripts/ovn-ctl
UNIT=/etc/systemd/system/ovn-docker-driver.service
# Nested mode's options for the unit (its /etc/default file is the operator's).
DROPIN=/etc/systemd/system/ovn-docker-driver.service.d/quickstart-nested.conf

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }
with_systemd() { command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; }
record() { grep -qx "$1" "$STATE" 2>/dev/null || echo "$1" >>"$STATE"; }
recorded() { grep -qx "$1" "$STATE" 2>/dev/null; }

while [ $# -gt 0 ]; do
  case "$1" in
    --ovn-nb) NB=${2:?--ovn-nb needs a remote}; shift 2 ;;
    --ovn-sb) SB=${2:?--ovn-sb needs a remote}; shift 2 ;;
    --encap-ip) ENCAP_IP=${2:?--encap-ip needs an address}; shift 2 ;;
    --vm-port) VM_PORT=${2:?--vm-port needs the logical port name of this VM}; shift 2 ;;
    --vm-nic) VM_NIC=${2:?--vm-nic needs an interface name}; shift 2 ;;
    --stop) STOP=1; shift ;;
    --managed-plugin) MANAGED=1; shift ;;
    --) shift; DRIVER_ARGS=("$@"); break ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[ "$(id -u)" = 0 ] || die "run as root (sudo $0)"

# Waits up to 60 s for process $1 to end.
wait_gone() {
  for _ in $(seq 600); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  return 1
}

stop_all() {
  [ -s "$STATE" ] || { say "Nothing to stop: no record of anything this script started ($STATE is absent)"; return 0; }
  # dockerd first: stopping its containers makes it call the driver's Leave and DeleteEndpoint.
  if recorded dockerd; then
    say "Stopping dockerd"
    if recorded docker.service; then
      systemctl stop docker.service
    elif [ -s /run/docker.pid ]; then
      pid=$(cat /run/docker.pid)
      kill "$pid" 2>/dev/null || true
      wait_gone "$pid" || die "dockerd ($pid) did not stop within 60 s"
    fi
    # dockerd leaves its default bridge behind; it was not there before it started.
    if recorded docker0; then ip link delete docker0 2>/dev/null || true; fi
  fi
  if recorded plugin; then
    # dockerd stopped the plugin with it; its ports, veths and firewall rules stay on the host.
    say "Removing the driver's state on this host (ovn-docker-driver cleanup); the plugin stays installed"
    node "$REPO/dist/src/cli/main.js" cleanup \
      || die "cleanup failed (see above); run it again: node $REPO/dist/src/cli/main.js cleanup, then $0 --stop"
  fi
  if recorded driver; then
    say "Stopping ovn-docker-driver"
    if recorded driver.service; then
      systemctl disable --now ovn-docker-driver >/dev/null 2>&1 || true
    elif [ -s "$PIDFILE" ]; then
      pid=$(cat "$PIDFILE")
      kill "$pid" 2>/dev/null || true
      wait_gone "$pid" || die "the driver ($pid) did not stop within 60 s"
      rm -f "$PIDFILE"
    fi
    say "Removing the driver's state on this host (ovn-docker-driver cleanup)"
    args=()
    [ -s "$ARGS_FILE" ] && eval "args=($(cat "$ARGS_FILE"))"
    # The unit reads its options from this environment file; cleanup needs the same ones.
    (if recorded driver.service && [ -r /etc/default/ovn-docker-driver ]; then set -a; . /etc/default/ovn-docker-driver; set +a; fi
     node "$REPO/dist/src/cli/main.js" cleanup "${args[@]}") \
      || die "cleanup failed (see above); run it again: node $REPO/dist/src/cli/main.js cleanup, then $0 --stop"
  fi
  if recorded nested-dropin; then
    rm -f "$DROPIN"
    rmdir "$(dirname "$DROPIN")" 2>/dev/null || true
    systemctl daemon-reload 2>/dev/null || true
  fi
  if recorded ovn-controller; then
    say "Stopping ovn-controller"
    "$OVN_CTL" stop_controller
  fi
  if recorded br-int; then ovs-vsctl --timeout=5 --if-exists del-br br-int; fi
  if recorded ovn-central; then
    say "Stopping the single-node OVN (ovn-northd, NB and SB ovsdb-servers)"
    "$OVN_CTL" stop_northd
  fi
  if recorded ovs-vswitchd; then
    say "Stopping ovs-vswitchd"
    "$OVS_CTL" stop --no-ovsdb-server
  fi
  if recorded ovsdb-server; then
    say "Stopping Open vSwitch's ovsdb-server"
    "$OVS_CTL" stop --no-ovs-vswitchd
  fi
  if recorded ip-forward-was-off; then sysctl -qw net.ipv4.ip_forward=0; fi
  local kept="Docker's networks and images, OVS's and OVN's databases"
  if recorded plugin; then kept="$kept, and the managed plugin $PLUGIN (to remove it, with dockerd running: docker plugin disable $PLUGIN && docker plugin rm $PLUGIN)"; fi
  rm -f "$STATE" "$ARGS_FILE"
  say "Stopped. Left as they were: $kept."
}

if [ -n "$STOP" ]; then stop_all; exit 0; fi
NESTED=""
if [ -n "$VM_PORT" ] || [ -n "$VM_NIC" ]; then
  NESTED=1
  [ -z "$VM_PORT" ] || [ -z "$VM_NIC" ] || die "give --vm-port or --vm-nic, not both"
  [ -n "$NB" ] || die "nested mode needs --ovn-nb: the NB database the hypervisors use, reachable from this VM (tcp: or ssl:)"
  [ -z "$SB" ] && [ -z "$ENCAP_IP" ] || die "--ovn-sb and --encap-ip are for a chassis; a VM in nested mode is none (its hypervisor is)"
fi
if [ -n "$MANAGED" ]; then
  [ -z "$NESTED" ] || die "--managed-plugin is for a chassis; in nested mode run the driver itself (leave --managed-plugin out)"
  [ ${#DRIVER_ARGS[@]} -eq 0 ] || die "--managed-plugin takes no driver options: set them afterwards with docker plugin set $PLUGIN NAME=value (plugins/README.md)"
fi
if [ -z "$NESTED" ] && [ -n "$NB" ] && [ -z "$SB" ]; then die "--ovn-nb needs --ovn-sb too (ovn-controller talks to the southbound DB)"; fi

# Checked first, so a machine with an old Node is not half set up. Debian 12's nodejs is 18.
NODE_HELP="Node.js >= 20 is needed. Debian 12 ships 18: install 20 or 22 from NodeSource's apt repository (https://github.com/nodesource/distributions) or the official binaries (https://nodejs.org/en/download); Debian 13's nodejs is 20.19"
command -v node >/dev/null || die "no node found. $NODE_HELP"
node_major=$(node --version | sed 's/^v\([0-9]*\).*/\1/')
[ "${node_major:-0}" -ge 20 ] || die "found node $(node --version). $NODE_HELP"

say "Checking Debian packages"
packages=(openvswitch-switch docker.io iproute2 ethtool iptables)
[ -n "$NESTED" ] || packages+=(ovn-host)
[ -z "$NB" ] && packages+=(ovn-central)
[ -z "$MANAGED" ] || packages+=(debootstrap)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "Installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

say "Building the driver"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then npm ci --no-audit --no-fund; fi
npm run --silent build

say "Starting Open vSwitch"
if [ -d /sys/module/openvswitch ] || modprobe -q openvswitch 2>/dev/null; then DATAPATH=system; else DATAPATH=netdev; fi
if ! ovs-vsctl --timeout=2 show >/dev/null 2>&1; then
  "$OVS_CTL" start --system-id=random --no-ovs-vswitchd
  record ovsdb-server
fi
if ! ovs-appctl -t ovs-vswitchd version >/dev/null 2>&1; then
  if [ "$DATAPATH" = system ]; then
    "$OVS_CTL" start --no-ovsdb-server
  else
    # No kernel module: the userspace datapath needs no kernel support.
    # Its pid file is the one ovs-ctl stops it by (/var/run/openvswitch/ovs-vswitchd.pid).
    ovs-vswitchd --pidfile --detach --log-file unix:/var/run/openvswitch/db.sock
  fi
  record ovs-vswitchd
fi
ovs-vsctl get Open_vSwitch . external_ids:system-id >/dev/null 2>&1 \
  || ovs-vsctl set Open_vSwitch . external_ids:system-id="$(cat /proc/sys/kernel/random/uuid)"

if [ -n "$NESTED" ]; then
  # The VM's bridge carries the VM's own address: creating it is not ours to do unasked.
  if ! ovs-vsctl br-exists breth0; then
    die "nested mode needs the VM's NIC in the OVS bridge breth0, holding the VM's address. Prepare it first (it moves this VM's address; it rolls back if the gateway stops answering): scripts/prepare-breth0.sh ${VM_NIC:-eth0}  (docs/nested.md)"
  fi
  NESTED_ARGS=(--ovn-nb "$NB" --bridge breth0)
  if [ -n "$VM_PORT" ]; then NESTED_ARGS+=(--vm-port "$VM_PORT"); else NESTED_ARGS+=(--vm-nic "$VM_NIC"); fi
  DRIVER_ARGS=("${NESTED_ARGS[@]}" "${DRIVER_ARGS[@]}")
elif [ -z "$NB" ]; then
  say "Starting a single-node OVN here (NB, SB, ovn-northd)"
  if ! ovn-nbctl --timeout=2 show >/dev/null 2>&1; then
    "$OVN_CTL" start_northd
    record ovn-central
  fi
  NB=unix:/var/run/ovn/ovnnb_db.sock
  SB=unix:/var/run/ovn/ovnsb_db.sock
  ENCAP_IP=${ENCAP_IP:-127.0.0.1}
fi
if [ -z "$NESTED" ]; then
  if [ -z "$ENCAP_IP" ]; then
    ENCAP_IP=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
    [ -n "$ENCAP_IP" ] || die "cannot guess this host's tunnel address: pass --encap-ip"
  fi

  say "Configuring this host as an OVN chassis (tunnel address $ENCAP_IP, $DATAPATH datapath)"
  ovs-vsctl set Open_vSwitch . \
    external_ids:ovn-nb="$NB" external_ids:ovn-remote="$SB" \
    external_ids:ovn-encap-type=geneve external_ids:ovn-encap-ip="$ENCAP_IP" \
    external_ids:ovn-bridge-datapath-type="$DATAPATH"
  if ! ovs-vsctl br-exists br-int; then
    ovs-vsctl add-br br-int -- set Bridge br-int datapath_type="$DATAPATH" fail-mode=secure \
      other-config:disable-in-band=true
    record br-int
  fi
  if ! ovn-appctl -t ovn-controller version >/dev/null 2>&1; then
    "$OVN_CTL" start_controller
    record ovn-controller
  fi
else
  say "Nested mode: this VM's containers become child ports of its OVN port (${VM_PORT:-found by the MAC of $VM_NIC}), NB at $NB"
fi

say "Starting dockerd"
if ! docker info >/dev/null 2>&1; then
  # dockerd (and the driver) turn forwarding on; --stop turns it off again if it was off.
  [ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ] || record ip-forward-was-off
  ip link show docker0 >/dev/null 2>&1 || record docker0
  if with_systemd; then
    systemctl start docker
    record docker.service
  else
    nohup dockerd >>/var/log/dockerd.log 2>&1 &
  fi
  record dockerd
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || die "dockerd did not start; see /var/log/dockerd.log"
fi

if [ -n "$MANAGED" ]; then
  say "Installing ovn-docker-driver as the managed plugin $PLUGIN"
  if ! docker plugin inspect "$PLUGIN" >/dev/null 2>&1; then
    # It finds NB as the driver does: external_ids:ovn-nb of this host's Open_vSwitch row, set above.
    bash scripts/build-plugin.sh "$PLUGIN"
  fi
  [ "$(docker plugin inspect -f '{{.Enabled}}' "$PLUGIN")" = true ] || docker plugin enable "$PLUGIN"
  record plugin
  DRIVER=$PLUGIN:latest
  LOGHINT="the engine's log (journalctl -u docker, or /var/log/dockerd.log), lines with plugin=$(docker plugin inspect -f '{{.Id}}' "$PLUGIN")"
else
  say "Starting ovn-docker-driver"
  SOCKET=/run/docker/plugins/openvswitch.sock
  # Kept for --stop, whose cleanup needs the same options (--bridge, --name, ...).
  : >"$ARGS_FILE"
  [ ${#DRIVER_ARGS[@]} -eq 0 ] || printf '%q ' "${DRIVER_ARGS[@]}" >"$ARGS_FILE"
  if with_systemd; then
    sed "s#/opt/ovn-docker-driver#$REPO#g" systemd/ovn-docker-driver.service >"$UNIT"
    [ -e /etc/default/ovn-docker-driver ] || cp systemd/ovn-docker-driver.default /etc/default/ovn-docker-driver
    if [ -n "$NESTED" ]; then
      mkdir -p "$(dirname "$DROPIN")"
      {
        echo "# Written by scripts/quickstart.sh (nested mode); removed by --stop."
        echo "[Service]"
        echo "Environment=OVN_NB_DB=$NB OVN_DOCKER_BRIDGE=breth0"
        if [ -n "$VM_PORT" ]; then echo "Environment=OVN_DOCKER_VM_PORT=$VM_PORT"; else echo "Environment=OVN_DOCKER_VM_NIC=$VM_NIC"; fi
      } >"$DROPIN"
      record nested-dropin
    fi
    systemctl daemon-reload
    systemctl enable ovn-docker-driver >/dev/null
    systemctl restart ovn-docker-driver
    record driver.service
    LOGHINT="journalctl -u ovn-docker-driver"
  else
    if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      kill "$(cat "$PIDFILE")"
      wait_gone "$(cat "$PIDFILE")" || die "the running driver ($(cat "$PIDFILE")) did not stop"
    fi
    nohup node "$REPO/dist/src/cli/main.js" "${DRIVER_ARGS[@]}" >>"$LOG" 2>&1 &
    echo $! >"$PIDFILE"
    LOGHINT="$LOG"
  fi
  record driver
  for _ in $(seq 100); do [ -S "$SOCKET" ] && break; sleep 0.2; done
  [ -S "$SOCKET" ] || die "the driver did not come up; see $LOGHINT"

  DRIVER=openvswitch
fi

say "Ready. Try:"
echo "  docker network create -d $DRIVER --subnet 10.1.0.0/24 foo"
echo "  docker run --rm --net foo busybox ip addr"
echo "Logs: $LOGHINT. Stop it all: $0 --stop"

#!/usr/bin/env bash
# Prepares a VM for the driver's nested mode (run as root inside the VM): puts
# the VM's NIC into a local Open vSwitch bridge (breth0) and moves the NIC's IP
# addresses and routes to that bridge, as OVN's documentation asks ("add that
# device as a port to an Open vSwitch bridge 'breth0' and move its IP address
# and route related information to that bridge").
#
#   1. checks, changing nothing: root; the NIC exists and is in no bridge (if it
#      is already in this bridge: says so, exit 0); no DHCP client manages it;
#      ovs-vsctl reaches ovsdb-server and ovs-vswitchd; reads the NIC's MAC,
#      MTU, addresses and routes, and prints what it will do;
#   2. re-runs itself under setsid with its output in a log file, so that an
#      SSH session that drops (it usually runs through this very NIC) does not
#      leave the VM half configured; this terminal only follows the log;
#   3. one ovs-vsctl transaction: add-br BRIDGE with other-config:hwaddr=<the
#      NIC's MAC> (and datapath_type), mtu_request=<the NIC's MTU>, add-port
#      BRIDGE NIC; then the addresses and routes leave the NIC for BRIDGE;
#   4. pings --check (default: the NIC's default gateway) for up to
#      --confirm-timeout seconds; if nothing answers, puts everything back as
#      it was (bridge deleted, addresses and routes on the NIC) and exits 3.
# --undo moves the bridge's addresses and routes back to the NIC and deletes
# the bridge (also through setsid). Both are idempotent.
#
# Usage: sudo scripts/prepare-breth0.sh [--bridge breth0] [--datapath system|netdev]
#                                      [--check IP] [--confirm-timeout SEC] [--db REMOTE]
#                                      [--log FILE] [--dry-run] NIC
#        sudo scripts/prepare-breth0.sh --undo [--bridge breth0] [--db REMOTE] [--log FILE]
#                                      [--force] [--dry-run] NIC
#   --datapath   the bridge's datapath_type; unset: Open vSwitch's default (system).
#                Without the openvswitch kernel module use netdev.
#   --check IP   the address that must answer a ping once the move is done.
#   --db REMOTE  passed to every ovs-vsctl (e.g. unix:/run/openvswitch/db.sock);
#                by default ovs-vsctl's own (unix:$OVS_RUNDIR/db.sock).
#   --log FILE   where the part that changes things writes (/var/log/prepare-breth0.log).
#   --force      (--undo) delete the bridge even if it holds ports besides NIC.
#   --dry-run    the checks and the plan only.
# Exit status: 0 done or nothing to do; 1 refused, nothing changed (see the
# message); 2 usage; 3 the check or a step of the move failed and everything
# was rolled back; 4 a rollback or an undo did not complete: the VM needs a
# look from its console.
set -euo pipefail
# All of it in one block: bash reads it whole before running any of it, so a
# copy of this file edited (or cut short) while it runs cannot change what runs.
{

SELF=$(readlink -f "$0")
ORIG_ARGS=("$@")
BRIDGE=breth0
DATAPATH=""
CHECK=""
CONFIRM_TIMEOUT=20
DB=""
LOG=/var/log/prepare-breth0.log
UNDO=""
FORCE=""
DRY_RUN=""
STAGE2=""
NIC=""

say() { printf 'prepare-breth0: %s\n' "$*"; }
warn() { printf 'prepare-breth0: warning: %s\n' "$*" >&2; }
die() { printf 'prepare-breth0: %s\n' "$1" >&2; exit "${2:-1}"; }
usage() { sed -n '2,/^set -euo/p' "$SELF" | sed -e '$d' -e 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --bridge) BRIDGE=${2:-}; shift 2 || die "--bridge needs a name" 2 ;;
    --datapath) DATAPATH=${2:-}; shift 2 || die "--datapath needs system or netdev" 2 ;;
    --check) CHECK=${2:-}; shift 2 || die "--check needs an IP address" 2 ;;
    --confirm-timeout) CONFIRM_TIMEOUT=${2:-}; shift 2 || die "--confirm-timeout needs seconds" 2 ;;
    --db) DB=${2:-}; shift 2 || die "--db needs a remote" 2 ;;
    --log) LOG=${2:-}; shift 2 || die "--log needs a file" 2 ;;
    --undo) UNDO=1; shift ;;
    --force) FORCE=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --stage2) STAGE2=1; shift ;; # internal: the detached part
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" 2 ;;
    *) [ -z "$NIC" ] || die "one NIC only ($NIC, $1)" 2; NIC=$1; shift ;;
  esac
done

# Names go to sysfs paths and command lines: no slashes, spaces or leading dashes.
valid_ifname() { [[ $1 =~ ^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,14}$ ]] && [ "$1" != . ] && [ "$1" != .. ]; }
[ -n "$NIC" ] || { usage >&2; exit 2; }
valid_ifname "$NIC" || die "not an interface name: '$NIC'" 2
valid_ifname "$BRIDGE" || die "not a bridge name: '$BRIDGE'" 2
[ "$NIC" != "$BRIDGE" ] || die "the NIC and the bridge cannot both be $NIC" 2
case "$DATAPATH" in ''|system|netdev) ;; *) die "--datapath is system or netdev, not '$DATAPATH'" 2 ;; esac
{ [[ $CONFIRM_TIMEOUT =~ ^[0-9]{1,4}$ ]] && [ "$CONFIRM_TIMEOUT" -ge 1 ]; } || die "--confirm-timeout is a number of seconds (1-9999), not '$CONFIRM_TIMEOUT'" 2
[ -z "$CHECK" ] || [[ $CHECK =~ ^[0-9A-Fa-f.:]+$ ]] || die "--check is an IPv4 or IPv6 address, not '$CHECK'" 2
[ -z "$UNDO" ] || [ -z "$DATAPATH$CHECK" ] || die "--datapath and --check are for the move, not --undo" 2
[ -n "$UNDO" ] || [ -z "$FORCE" ] || die "--force is for --undo" 2

[ "$(id -u)" = 0 ] || die "run as root (sudo $0 ...)"
for tool in ip ovs-vsctl ping setsid flock; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done

if [ -n "$STAGE2" ]; then
  # The detached part: no terminal to lose; one at a time, checks included.
  trap '' HUP
  exec 9>>"$LOG"
  flock -n 9 || die "another prepare-breth0 holds $LOG; nothing changed"
  trap 'rc=$?; say "$(date '"'"'+%F %T'"'"') finished (exit $rc)"' EXIT
  say "$(date '+%F %T') detached part started (pid $$), checking again"
fi

vsctl() { ovs-vsctl ${DB:+"--db=$DB"} "$@"; }
# Prints a command, then runs it.
step() { printf '+ %s\n' "$*"; "$@"; }

# ---- reading the current configuration (read-only) ------------------------

# gather DEV: what DEV holds that must move, into G_* arrays.
#   G_ADDR[i]   "-4|-6 ADDR-ARGS..." for `ip FAM addr add ADDR-ARGS dev X`
#   G_AKEY[i]   "-4|-6 LOCAL[ peer PEER]" for `ip FAM addr del` and comparisons
#   G_ALABEL[i] the IPv4 label's suffix (":1" of eth0:1), or ""
#   G_ROUTE[i]  "-4|-6 ROUTE-ARGS..." for `ip FAM route add|del ROUTE-ARGS dev X`
#   G_GW        the main table's default gateway (IPv4 first), or ""
#   G_DYN4      IPv4 addresses with a lease lifetime (DHCP's doing)
#   G_ODD       route lines this script cannot move (multipath, nexthop objects)
# Every field is one whitespace-free word of `ip`'s output, split by `read -a`
# and given back to `ip` as separate arguments: nothing is ever evaluated.
gather() {
  local dev=$1 fam line
  local -a t
  G_ADDR=() G_AKEY=() G_ALABEL=() G_ROUTE=() G_DYN4=() G_ODD=() G_GW="" G_NOTES=()
  for fam in -4 -6; do
    local scope=()
    [ "$fam" = -6 ] && scope=(scope global)   # link-local addresses belong to each link
    while IFS= read -r line; do
      [ -n "$line" ] || continue
      line=${line//\\/ }
      read -ra t <<<"$line"
      # t: INDEX: DEV inet|inet6 ADDR [peer P] [brd B] [scope S] [FLAGS...] [LABEL] valid_lft X preferred_lft Y
      local local_addr=${t[3]:-} args=() key label="" valid="" preferred="" dyn="" temporary="" i=4
      [ -n "$local_addr" ] || continue
      args=("$local_addr")
      key="$fam $local_addr"
      while [ "$i" -lt "${#t[@]}" ]; do
        local w=${t[$i]} v=${t[$((i + 1))]:-}
        case "$w" in
          peer) args+=(peer "$v"); key+=" peer $v"; i=$((i + 2)); continue ;;
          brd|metric) args+=("$w" "$v"); i=$((i + 2)); continue ;;
          scope) [ "$v" = global ] || args+=(scope "$v"); i=$((i + 2)); continue ;;
          proto) i=$((i + 2)); continue ;;
          valid_lft) valid=${v%sec}; i=$((i + 2)); continue ;;
          preferred_lft) preferred=${v%sec}; i=$((i + 2)); continue ;;
          noprefixroute|home|mngtmpaddr|nodad|optimistic) args+=("$w") ;;
          dynamic) dyn=1 ;;
          temporary) temporary=1 ;;
          secondary|primary|tentative|dadfailed|deprecated|permanent|stable-privacy|autojoin) ;;
          "$dev") ;;
          "$dev":*) label=${w#"$dev"} ;;
          *) G_NOTES+=("ignored '$w' in: $line") ;;
        esac
        i=$((i + 1))
      done
      if [ -n "$temporary" ]; then
        G_NOTES+=("not moved: temporary (privacy) address $local_addr; the kernel makes new ones")
        continue
      fi
      [ "$fam" = -6 ] && ! [[ " ${args[*]} " == *" nodad "* ]] && args+=(nodad)   # ours already: no DAD pause
      if [ -n "$valid" ] && [ "$valid" != forever ]; then
        args+=(valid_lft "$valid" preferred_lft "${preferred:-$valid}")
      fi
      [ "$fam" = -4 ] && [ -n "$dyn" ] && G_DYN4+=("$local_addr")
      G_ADDR+=("$fam ${args[*]}")
      G_AKEY+=("$key")
      G_ALABEL+=("$label")
    done < <(ip -o "$fam" addr show dev "$dev" "${scope[@]}")

    while IFS= read -r line; do
      [ -n "$line" ] || continue
      if [[ $line == [[:space:]]* ]] || [[ " $line " == *" nexthop "* ]] || [[ " $line " == *" nhid "* ]]; then
        G_ODD+=("$line")
        continue
      fi
      read -ra t <<<"$line"
      case "${t[0]}" in local|broadcast|multicast|anycast|nat) continue ;; esac
      [[ " $line " == *" table local "* ]] && continue
      # The kernel makes these itself with the addresses.
      [[ " $line " == *" proto kernel "* ]] && continue
      local r=() j=0
      while [ "$j" -lt "${#t[@]}" ]; do
        case "${t[$j]}" in
          expires) G_NOTES+=("route '$line': its expiry is not kept"); j=$((j + 2)); continue ;;
          linkdown|dead|onlink|pervasive|offload|trap|rt_offload|rt_trap|rt_offload_failed)
            # onlink is a real option: keep it; the others are states.
            [ "${t[$j]}" = onlink ] && r+=(onlink) ;;
          *) r+=("${t[$j]}") ;;
        esac
        j=$((j + 1))
      done
      G_ROUTE+=("$fam ${r[*]}")
      if [ -z "$G_GW" ] && [ "${t[0]}" = default ] && [ "${t[1]:-}" = via ] && [[ " $line " != *" table "* ]]; then
        G_GW=${t[2]:-}
      fi
    done < <(ip "$fam" route show table all dev "$dev")
  done
}

link_attr() { cat "/sys/class/net/$1/$2" 2>/dev/null || true; }
link_exists() { [ -e "/sys/class/net/$1" ]; }
link_is_up() { local f; f=$(link_attr "$1" flags); [ -n "$f" ] && (( f & 1 )); }
link_master() { local m; m=$(readlink "/sys/class/net/$1/master" 2>/dev/null) && basename "$m"; }

# Pids of DHCP clients in this network namespace that may manage $1, as "comm:pid".
dhcp_clients() {
  local nic=$1 me pid comm arg named_nic named_any
  local -a argv
  me=$(readlink /proc/self/ns/net)
  for pid in /proc/[0-9]*; do
    pid=${pid#/proc/}
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || continue
    case "$comm" in dhclient|dhcpcd|udhcpc|pump|dhcpcd5|dhclient3) ;; *) continue ;; esac
    [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$me" ] || continue
    mapfile -d '' -t argv 2>/dev/null <"/proc/$pid/cmdline" || continue
    named_nic="" named_any=""
    for arg in "${argv[@]:1}"; do
      # eth0, -ieth0, --interface=eth0, /run/dhclient.eth0.pid, dhcpcd-eth0, ...
      if [[ $arg == "$nic" || $arg == "-i$nic" || $arg == *"=$nic" || $arg == *[./-]"$nic" || $arg == *[./-]"$nic".* ]]; then
        named_nic=1
      elif [ -n "$arg" ] && [[ $arg != -* ]] && [[ $arg != */* ]] && [ -e "/sys/class/net/$arg" ]; then
        named_any=1
      fi
    done
    # A client that names no interface at all (dhclient, dhcpcd in master mode) runs on every one.
    if [ -n "$named_nic" ] || [ -z "$named_any" ]; then printf '%s:%s\n' "$comm" "$pid"; fi
  done
}

vswitchd_answers() {
  # A transaction that changes something makes ovs-vsctl bump next_cfg and
  # wait until ovs-vswitchd has caught up: the proof that it runs and reads
  # this database. (One that changes nothing does not wait.) The key goes again.
  local rc=0
  vsctl --timeout=10 set Open_vSwitch . "external_ids:prepare-breth0-probe=$$" >/dev/null 2>&1 || rc=1
  vsctl --no-wait --timeout=5 remove Open_vSwitch . external_ids prepare-breth0-probe >/dev/null 2>&1 || true
  return "$rc"
}

# ---- checks ----------------------------------------------------------------

link_exists "$NIC" || die "there is no interface $NIC here; nothing changed"
vsctl --timeout=5 show >/dev/null 2>&1 \
  || die "ovs-vsctl cannot reach Open vSwitch's database${DB:+ at $DB} (is openvswitch-switch running?); nothing changed"
vswitchd_answers \
  || die "ovs-vswitchd does not answer within 10 s (is it running, on ${DB:-the default database}?); nothing changed"

NIC_BR=$(vsctl --timeout=5 port-to-br "$NIC" 2>/dev/null || true)
BR_EXISTS=""
vsctl --timeout=5 br-exists "$BRIDGE" && BR_EXISTS=1

if [ -n "$UNDO" ]; then
  if [ -z "$BR_EXISTS" ]; then
    say "there is no bridge $BRIDGE: nothing to undo"
    [ -z "$NIC_BR" ] || warn "$NIC is a port of another bridge, $NIC_BR; left alone"
    exit 0
  fi
  [ "$NIC_BR" = "$BRIDGE" ] \
    || die "$NIC is not a port of $BRIDGE${NIC_BR:+ (it is one of $NIC_BR)}: this is not what this script made; nothing changed"
  mapfile -t OTHER_PORTS < <(vsctl --timeout=5 list-ports "$BRIDGE" | grep -vxF -- "$NIC" || true)
  if [ "${#OTHER_PORTS[@]}" -gt 0 ]; then
    [ -n "$FORCE" ] || die "$BRIDGE holds other ports besides $NIC (${OTHER_PORTS[*]}), deleting it would remove them: stop what uses them (containers, the driver) or give --force; nothing changed"
    warn "--force: deleting $BRIDGE removes its other ports too: ${OTHER_PORTS[*]}"
  fi
  if link_exists "$BRIDGE"; then
    gather "$BRIDGE"
  else
    # ovs-vswitchd never made it (a datapath it cannot open): nothing to move back.
    warn "$BRIDGE is in the database but has no interface here; only its record goes"
    G_ADDR=() G_AKEY=() G_ALABEL=() G_ROUTE=() G_DYN4=() G_ODD=() G_GW="" G_NOTES=()
  fi
  MOVE_FROM=$BRIDGE MOVE_TO=$NIC
else
  if [ -n "$NIC_BR" ]; then
    if [ "$NIC_BR" != "$BRIDGE" ]; then
      die "$NIC is already a port of the Open vSwitch bridge $NIC_BR, not $BRIDGE; nothing changed"
    fi
    gather "$NIC"
    if [ "${#G_ADDR[@]}" -gt 0 ]; then
      die "$NIC is a port of $BRIDGE but still holds addresses (${G_AKEY[*]}): half configured; run '$0 --undo --bridge $BRIDGE $NIC', then this again"
    fi
    say "$NIC is already a port of $BRIDGE: nothing to do"
    if link_exists "$BRIDGE" && [ -z "$(ip -o addr show dev "$BRIDGE" scope global)" ]; then
      warn "$BRIDGE holds no address either; if $NIC had some, $LOG shows what they were (the 'ip ... addr add ... dev $BRIDGE' lines of the plan)"
    fi
    exit 0
  fi
  master=$(link_master "$NIC" || true)
  [ -z "$master" ] || die "$NIC is enslaved to $master (a Linux bridge or bond?); move that by hand; nothing changed"
  [ -z "$BR_EXISTS" ] || die "a bridge $BRIDGE exists already, without $NIC; remove it (ovs-vsctl del-br $BRIDGE) or choose another --bridge; nothing changed"
  ! link_exists "$BRIDGE" || die "an interface $BRIDGE exists already (not an Open vSwitch bridge); choose another --bridge; nothing changed"
  [ "$(link_attr "$NIC" type)" = 1 ] || die "$NIC is not an Ethernet interface; nothing changed"

  mapfile -t CLIENTS < <(dhcp_clients "$NIC")
  gather "$NIC"
  if [ "${#CLIENTS[@]}" -gt 0 ] || [ "${#G_DYN4[@]}" -gt 0 ]; then
    {
      [ "${#CLIENTS[@]}" -eq 0 ] || echo "prepare-breth0: a DHCP client runs for $NIC: ${CLIENTS[*]} (name:pid)"
      [ "${#G_DYN4[@]}" -eq 0 ] || echo "prepare-breth0: $NIC has leased (dynamic) addresses: ${G_DYN4[*]} (a DHCP client's, systemd-networkd's or NetworkManager's)"
      cat <<EOF
This script does not move a DHCP-managed interface: the client would keep
renewing the lease on $NIC, or take the address away, under the bridge.
As OVN's documentation says, stop the DHCP client on $NIC and run one on
$BRIDGE instead, in one go, from the VM's console rather than over SSH. On
Debian with ifupdown that is /etc/network/interfaces (see
/usr/share/doc/openvswitch-switch/README.Debian.gz):
    auto $BRIDGE
    allow-ovs $BRIDGE
    iface $BRIDGE inet dhcp
        ovs_type OVSBridge
        ovs_ports $NIC
        ovs_extra set bridge $BRIDGE other-config:hwaddr=$(link_attr "$NIC" address)
    allow-$BRIDGE $NIC
    iface $NIC inet manual
        ovs_bridge $BRIDGE
        ovs_type OVSPort
then reboot. Or give $NIC static addresses first, then run this script.
Nothing changed.
EOF
    } >&2
    exit 1
  fi
  if [ "${#G_ODD[@]}" -gt 0 ]; then
    die "$NIC carries routes this script cannot move (multipath or nexthop objects): $(printf '[%s] ' "${G_ODD[@]}")move them by hand; nothing changed"
  fi
  MAC=$(link_attr "$NIC" address)
  MTU=$(link_attr "$NIC" mtu)
  [[ $MAC =~ ^[0-9a-f]{2}(:[0-9a-f]{2}){5}$ ]] || die "cannot read $NIC's MAC (got '$MAC'); nothing changed"
  [[ $MTU =~ ^[0-9]+$ ]] || die "cannot read $NIC's MTU (got '$MTU'); nothing changed"
  MOVE_FROM=$NIC MOVE_TO=$BRIDGE
fi

if rules=$(ip rule show 2>/dev/null | grep -E "(iif|oif) ($NIC|$BRIDGE)( |$)"); then
  G_NOTES+=("policy rules name $NIC or $BRIDGE; they are not changed: $rules")
fi

# The default check: the gateway the moved routes use.
[ -n "$CHECK" ] || CHECK=$G_GW

# ---- the plan ----------------------------------------------------------------

addr_cmd() { # addr_cmd add|del I DEV: the `ip` arguments for address I
  local op=$1 i=$2 dev=$3 fam
  local -a a rest
  if [ "$op" = add ]; then read -ra a <<<"${G_ADDR[$i]}"; else read -ra a <<<"${G_AKEY[$i]}"; fi
  fam=${a[0]}
  rest=("${a[@]:1}")
  CMD=(ip "$fam" addr "$op" "${rest[@]}" dev "$dev")
  if [ "$op" = add ] && [ -n "${G_ALABEL[$i]}" ]; then CMD+=(label "$dev${G_ALABEL[$i]}"); fi
}
route_cmd() { # route_cmd add|del I DEV
  local -a a
  read -ra a <<<"${G_ROUTE[$2]}"
  CMD=(ip "${a[0]}" route "$1" "${a[@]:1}" dev "$3")
}
# Routes with a gateway after the others: the gateway must be reachable first.
route_order() {
  local i
  for i in "${!G_ROUTE[@]}"; do [[ " ${G_ROUTE[$i]} " == *" via "* ]] || echo "$i"; done
  for i in "${!G_ROUTE[@]}"; do [[ " ${G_ROUTE[$i]} " == *" via "* ]] && echo "$i"; done
  return 0
}
mapfile -t ROUTE_ORDER < <(route_order)

BR_TXN=()
if [ -z "$UNDO" ]; then
  BR_TXN=(add-br "$BRIDGE" -- set Bridge "$BRIDGE" "other-config:hwaddr=\"$MAC\"")
  [ -z "$DATAPATH" ] || BR_TXN+=("datapath_type=$DATAPATH")
  BR_TXN+=(-- set Interface "$BRIDGE" "mtu_request=$MTU" -- add-port "$BRIDGE" "$NIC")
fi

print_plan() {
  local i
  if [ -n "$UNDO" ]; then
    say "plan (undo): $BRIDGE's addresses and routes go back to $NIC, and $BRIDGE is deleted:"
    echo "    ovs-vsctl del-br $BRIDGE"
    echo "    ip link set $NIC up"
  else
    say "plan: $NIC (MAC $MAC, MTU $MTU) joins a new Open vSwitch bridge $BRIDGE, which takes over its addresses and routes:"
    echo "    ovs-vsctl ${BR_TXN[*]}"
    echo "    ip link set $BRIDGE mtu $MTU up"
    for i in "${!G_AKEY[@]}"; do addr_cmd del "$i" "$NIC"; echo "    ${CMD[*]}"; done
    for i in "${ROUTE_ORDER[@]}"; do route_cmd del "$i" "$NIC"; echo "    ${CMD[*]}   (if still there)"; done
  fi
  for i in "${!G_ADDR[@]}"; do addr_cmd add "$i" "$MOVE_TO"; echo "    ${CMD[*]}"; done
  for i in "${ROUTE_ORDER[@]}"; do route_cmd add "$i" "$MOVE_TO"; echo "    ${CMD[*]}"; done
  [ "${#G_ADDR[@]}" -gt 0 ] || echo "    ($MOVE_FROM has no addresses to move)"
  if [ -z "$UNDO" ]; then
    if [ -n "$CHECK" ]; then
      echo "    then: ping $CHECK for up to $CONFIRM_TIMEOUT s; if it never answers, put everything back as it is now"
    else
      echo "    then: no check: $NIC has no default gateway and no --check was given"
    fi
  elif [ -n "$G_GW" ]; then
    echo "    then: ping $G_GW (a report only; an undo is not rolled back)"
  fi
}
PLAN=$(print_plan)
if [ -n "$STAGE2" ] && [ "$PLAN" = "${PREPARE_BRETH0_PLAN:-}" ]; then
  say "the plan is the one shown above"
else
  [ -z "$STAGE2" ] || say "the plan changed since the first checks:"
  for n in "${G_NOTES[@]}"; do warn "$n"; done
  echo "$PLAN"
fi

if [ -n "$DRY_RUN" ]; then say "--dry-run: nothing changed"; exit 0; fi

# ---- stage 1: hand over to a detached copy and follow its log ----------------

if [ -z "$STAGE2" ]; then
  # The log starts with what this terminal showed, for whoever reads it after a hang-up.
  {
    say "$(date '+%F %T') checks passed (pid $$): $SELF ${ORIG_ARGS[*]}"
    for n in "${G_NOTES[@]}"; do echo "prepare-breth0: warning: $n"; done
    echo "$PLAN"
  } 2>/dev/null >>"$LOG" || die "cannot write the log $LOG (give --log FILE); nothing changed"
  offset=$(($(stat -c %s "$LOG") + 1))
  say "the changes run detached from this terminal (setsid); their log: $LOG"
  # setsid: a new session, so a hang-up here (the SSH session dropping) does
  # not reach it; -w: its exit status is the script's, whether it forks or not.
  PREPARE_BRETH0_PLAN=$PLAN setsid -w bash "$SELF" --stage2 "${ORIG_ARGS[@]}" </dev/null >>"$LOG" 2>&1 &
  child=$!
  trap 'echo; say "this terminal stops following; the changes go on (pid $child), see $LOG"; exit 130' INT
  tail -s 0.2 -c "+$offset" -f --pid="$child" "$LOG" || true
  rc=0
  wait "$child" || rc=$?
  exit "$rc"
fi

# ---- stage 2: the changes --------------------------------------------------


ERRORS=()
# Runs a command, printing it first; a failure is recorded, not fatal.
try() { printf '+ %s\n' "$*"; "$@" || { ERRORS+=("$*"); return 1; }; }

wait_link() { # wait_link DEV SECONDS
  local n=$(($2 * 10))
  while [ "$n" -gt 0 ]; do link_exists "$1" && return 0; sleep 0.1; n=$((n - 1)); done
  return 1
}

# `ip`'s answer when what it should add is there already.
already() { [[ $1 == *"File exists"* || $1 == *"already assigned"* ]]; }

# Addresses and routes of G_* onto DEV (routes with a gateway last).
add_all() {
  local dev=$1 i ok=0
  for i in "${!G_ADDR[@]}"; do
    addr_cmd add "$i" "$dev"
    printf '+ %s\n' "${CMD[*]}"
    out=$("${CMD[@]}" 2>&1) || already "$out" || { echo "$out"; ERRORS+=("${CMD[*]}"); ok=1; }
  done
  for i in "${ROUTE_ORDER[@]}"; do
    route_cmd add "$i" "$dev"
    printf '+ %s\n' "${CMD[*]}"
    out=$("${CMD[@]}" 2>&1) || already "$out" || { echo "$out"; ERRORS+=("${CMD[*]}"); ok=1; }
  done
  return "$ok"
}

# Addresses and routes of G_* off DEV; those already gone are fine.
del_all() {
  local dev=$1 i
  for i in "${!G_AKEY[@]}"; do
    addr_cmd del "$i" "$dev"
    printf '+ %s\n' "${CMD[*]}"
    "${CMD[@]}" 2>/dev/null || true
  done
  # Routes usually leave with the addresses; whatever is left goes now.
  for i in "${ROUTE_ORDER[@]}"; do
    route_cmd del "$i" "$dev"
    "${CMD[@]}" 2>/dev/null && printf '+ %s\n' "${CMD[*]}"
  done
  return 0
}

# What gather recorded, as comparable lines (no lifetimes, no flags).
expected() {
  local x
  for x in "${G_AKEY[@]}"; do echo "addr $x"; done | sort
  for x in "${G_ROUTE[@]}"; do echo "route $x"; done | sort
}
# The same for what DEV holds now; run it in $(...): it overwrites G_*.
snapshot() { gather "$1"; expected; }

check_connectivity() {
  local deadline=$((SECONDS + CONFIRM_TIMEOUT)) n=0
  while :; do
    n=$((n + 1))
    if ping -n -c1 -W1 "$CHECK" >/dev/null 2>&1; then
      say "ping $CHECK: answered (try $n)"
      return 0
    fi
    [ "$SECONDS" -lt "$deadline" ] || break
    sleep 0.5
  done
  say "ping $CHECK: no answer in $n tries over $CONFIRM_TIMEOUT s"
  return 1
}

NIC_WAS_UP=""
link_is_up "$NIC" && NIC_WAS_UP=1
EXPECTED=$(expected)

# Puts back what gather recorded on NIC; exit 3 (or 4 if it could not).
rollback() {
  local why=$1
  trap '' TERM INT
  say "ROLLING BACK: $why"
  ERRORS=()
  # The bridge did not exist before (checked under the lock): if it holds NIC, it is ours.
  if [ -n "$CREATED_BR" ] || [ "$(vsctl --timeout=10 port-to-br "$NIC" 2>/dev/null)" = "$BRIDGE" ]; then
    try vsctl --timeout=30 --if-exists del-br "$BRIDGE" \
      || try vsctl --no-wait --timeout=10 --if-exists del-br "$BRIDGE" || true
    # A bridge interface that outlives its record would keep the addresses; it goes too.
    if link_exists "$BRIDGE" && ! wait_gone_link "$BRIDGE"; then try ip link del "$BRIDGE" || true; fi
  fi
  [ "$(link_attr "$NIC" mtu)" = "$MTU" ] || try ip link set "$NIC" mtu "$MTU" || true
  [ -z "$NIC_WAS_UP" ] || try ip link set "$NIC" up || true
  add_all "$NIC" || true
  local now
  now=$(snapshot "$NIC")
  if [ "$now" = "$EXPECTED" ] && ! link_exists "$BRIDGE"; then
    say "rolled back: $BRIDGE is gone and $NIC holds its addresses and routes again, as before"
    exit 3
  fi
  say "ROLLBACK INCOMPLETE: $NIC does not hold what it held before${ERRORS[*]:+; failed: $(printf '[%s] ' "${ERRORS[@]}")}"
  diff <(echo "$EXPECTED") <(echo "$now") | sed -n 's/^</    missing: /p; s/^>/    extra:   /p' || true
  exit 4
}
wait_gone_link() { local n=50; while [ "$n" -gt 0 ]; do link_exists "$1" || return 0; sleep 0.1; n=$((n - 1)); done; return 1; }

if [ -n "$UNDO" ]; then
  trap 'say "signal ignored while undoing"' TERM INT
  try vsctl --timeout=30 del-br "$BRIDGE" || die "ovs-vsctl del-br $BRIDGE failed; nothing else changed" 4
  wait_gone_link "$BRIDGE" || warn "the interface $BRIDGE is still there"
  try ip link set "$NIC" up || true
  add_all "$NIC" || true
  now=$(snapshot "$NIC")
  # NIC may hold more than what comes back (what it kept): only what is missing counts.
  missing=$(comm -23 <(echo "$EXPECTED") <(echo "$now"))
  if [ -n "$missing" ]; then
    say "UNDO INCOMPLETE: $NIC does not hold all that $BRIDGE held${ERRORS[*]:+; failed: $(printf '[%s] ' "${ERRORS[@]}")}"
    while IFS= read -r m; do echo "    missing: $m"; done <<<"$missing"
    exit 4
  fi
  if [ -n "$G_GW" ]; then
    CONFIRM_TIMEOUT=5 CHECK=$G_GW
    check_connectivity || warn "$G_GW does not answer (not rolled back: an undo only puts things back)"
  fi
  say "done: $BRIDGE deleted; $NIC holds ${#G_ADDR[@]} address(es) and ${#G_ROUTE[@]} route(s) again"
  exit 0
fi

# The move. From here on any failure, TERM or INT puts everything back.
trap 'rollback "interrupted by a signal"' TERM INT
CREATED_BR=""
printf '+ %s\n' "ovs-vsctl ${BR_TXN[*]}"
txn_out=$(vsctl --timeout=30 "${BR_TXN[@]}" 2>&1) || { echo "$txn_out"; rollback "the ovs-vsctl transaction failed"; }
CREATED_BR=1
[ -z "$txn_out" ] || echo "$txn_out"
if [[ $txn_out == *"Error detected"* ]]; then
  why=""
  for ifc in "$BRIDGE" "$NIC"; do
    e=$(vsctl --timeout=5 get Interface "$ifc" error 2>/dev/null || true)
    [ -z "$e" ] || [ "$e" = '[]' ] || why+="${why:+; }$ifc: $e"
  done
  rollback "ovs-vswitchd could not set up $BRIDGE or $NIC (${why:-see the log of ovs-vswitchd}); without the openvswitch kernel module, use --datapath netdev"
fi
wait_link "$BRIDGE" 10 || rollback "ovs-vswitchd made no interface $BRIDGE within 10 s (wrong --datapath? no openvswitch kernel module means --datapath netdev)"
if [ "$(link_attr "$BRIDGE" address)" != "$MAC" ]; then
  step ip link set "$BRIDGE" address "$MAC" || rollback "$BRIDGE does not have $NIC's MAC $MAC"
fi
step ip link set "$BRIDGE" mtu "$MTU" up || rollback "cannot set $BRIDGE's MTU or bring it up"
del_all "$NIC"
add_all "$BRIDGE" || rollback "not every address or route went onto $BRIDGE: $(printf '[%s] ' "${ERRORS[@]}")"
now=$(snapshot "$BRIDGE")
[ "$now" = "$EXPECTED" ] || rollback "$BRIDGE does not hold what $NIC held: $(diff <(echo "$EXPECTED") <(echo "$now") | grep '^[<>]' | tr '\n' ' ')"
left=$(snapshot "$NIC" | grep '^addr ' || true)
[ -z "$left" ] || rollback "$NIC still holds addresses: $left"

if [ -n "$CHECK" ]; then
  check_connectivity || rollback "$CHECK did not answer a ping within $CONFIRM_TIMEOUT s through $BRIDGE"
else
  say "no connectivity check: $NIC had no default gateway and no --check was given"
fi
trap - TERM INT
say "done: $NIC is a port of $BRIDGE (MAC $MAC, MTU $MTU), which holds ${#G_ADDR[@]} address(es) and ${#G_ROUTE[@]} route(s)${CHECK:+; $CHECK answers}"
say "not persistent: Open vSwitch keeps $BRIDGE with $NIC in it across a reboot, but the addresses come back on $NIC from the network configuration; make that configuration match (see /usr/share/doc/openvswitch-switch/README.Debian.gz) or run --undo before rebooting"
if [ "$DATAPATH" = netdev ]; then
  say "note: with the netdev datapath the kernel still receives every frame on $NIC too (replies may come twice, DUP!); e.g. iptables -t raw -A PREROUTING -i $NIC -j DROP stops that"
fi
exit 0
}

#!/usr/bin/env bash
# A simulated multi-node cluster on this machine, for tests and benchmarks (as root): N "nodes",
# each a network namespace with its own hostname, joined by veth pairs to a bridge in a namespace
# of its own. Ranks on different nodes talk over TCP (through the bridge), ranks on one node
# through shared memory, as on a real cluster with a shared file system.
#
#   tools/cluster.sh up DIR N [--rate RATE]   bring up nodes node1..nodeN (RATE, e.g. 1gbit: each
#                                             node's link shaped to RATE in both directions)
#   tools/cluster.sh mpirun DIR [--nodes N] [--per-node R] ARGS...
#                                             mpirun ARGS on node1, with the first N nodes (all) as
#                                             its hosts, R slots each (1), over TCP between nodes
#   tools/cluster.sh exec DIR K CMD...        run CMD on node K (its namespace and hostname)
#   tools/cluster.sh cut DIR K                take node K's link down (a partition: its packets are
#                                             dropped, its processes keep running)
#   tools/cluster.sh restore DIR K            bring node K's link back
#   tools/cluster.sh pids DIR [K]             the processes running on node K (on every node)
#   tools/cluster.sh kill DIR                 kill every process on every node (SIGKILL)
#   tools/cluster.sh down DIR                 kill every process in the namespaces and delete them
#
# DIR holds the state: `namespaces` (every namespace `up` created, written as it goes, so that
# `down` removes exactly those, also after a failed `up`), `hosts` (address, name, namespace),
# `hostfile.N.R`, `agent` (OpenMPI's plm_rsh_agent: runs a command on a node by its address) and
# `subnet`. Addresses are in 10.213.X.0/24, with X from DIR's path; they exist only inside the
# namespaces. The namespaces are named mdnc-TAG-*, TAG a hash of DIR, so clusters in different
# directories do not meet.
set -euo pipefail
usage() { sed -n '/^#   tools/,/^#$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,3\}//' >&2; exit 2; }
[[ $# -ge 2 ]] || usage
cmd=$1
dir=$(realpath -m "$2")
shift 2
tag=$(printf '%s' "$dir" | sha1sum | cut -c1-6)
octet=$(( 16#${tag:0:2} % 250 + 1 ))
subnet="10.213.$octet.0/24"
bridge_ns="mdnc-$tag-br"
node_ns() { echo "mdnc-$tag-n$1"; }
addr() { echo "10.213.$octet.$(( $1 + 10 ))"; }
# Commands run in a node's network namespace through nsenter, which changes that namespace only:
# `ip netns exec` (and `ip -n`) also remount / and /sys, which fails where / is no mount point
# (a chroot).
in_ns() { local ns=$1; shift; nsenter --net="/run/netns/$ns" "$@"; }
count() { [[ -f "$dir/hosts" ]] || { echo "cluster: no cluster in $dir (run: tools/cluster.sh up $dir N)" >&2; exit 2; }
          wc -l <"$dir/hosts"; }
check_node() {
  local n; n=$(count)
  [[ "$1" =~ ^[0-9]+$ ]] && (( $1 >= 1 && $1 <= n )) || { echo "cluster: no node '$1' (nodes 1..$n)" >&2; exit 2; }
}
[[ $EUID -eq 0 ]] || { echo "cluster: needs root (network namespaces)" >&2; exit 1; }

down() {
  [[ -f "$dir/namespaces" ]] || return 0
  local ns pids
  # Processes first (mpirun, orted, mdn), then the namespaces; deleting the bridge's namespace
  # deletes the veth pairs.
  while read -r ns; do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [[ -n "$pids" ]] && kill -9 $pids 2>/dev/null || true
  done <"$dir/namespaces"
  while read -r ns; do
    ip netns del "$ns" 2>/dev/null || true
  done <"$dir/namespaces"
  rm -f "$dir/namespaces" "$dir/hosts" "$dir"/hostfile.*
}

reaches() {  # reaches K ADDR: node K gets an answer from ADDR (a refused TCP connection is one)
  local out
  out=$(in_ns "$(node_ns "$1")" timeout 1 /bin/bash -c ": </dev/tcp/$2/9" 2>&1) && return 0
  [[ "$out" == *refused* ]]
}

shape() {  # shape NS DEV RATE: token bucket on DEV's egress
  # The bucket holds 100 us of the rate (at least 16 KiB): a link sends at its rate, not in
  # bursts that a larger bucket would let through faster. The queue holds 10 ms of it, a
  # switch's buffer: a longer one would hold the other direction's ACKs behind the data.
  local n=${3%%[a-zA-Z]*} unit=${3##*[0-9.]} bps
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "cluster: --rate takes a whole NUMBER{kbit,mbit,gbit}, not '$3'" >&2; return 2; }
  case ${unit,,} in
    kbit) bps=$((n * 1000)) ;; mbit) bps=$((n * 1000000)) ;; gbit) bps=$((n * 1000000000)) ;;
    *) echo "cluster: --rate takes NUMBER{kbit,mbit,gbit}, not '$3'" >&2; return 2 ;;
  esac
  local burst=$((bps / 8 / 10000)); ((burst < 16384)) && burst=16384
  in_ns "$1" tc qdisc replace dev "$2" root tbf rate "$3" burst "$burst" latency 10ms
}

case $cmd in
  up)
    [[ $# -ge 1 && "$1" =~ ^[0-9]+$ && $1 -ge 1 && $1 -le 64 ]] || { echo "cluster: up needs a node count 1..64" >&2; exit 2; }
    n=$1; shift
    rate=
    if [[ "${1:-}" == --rate ]]; then rate=${2:?--rate needs a value, e.g. 1gbit}; shift 2; fi
    [[ $# -eq 0 ]] || usage
    down
    mkdir -p "$dir"
    : >"$dir/namespaces"
    trap 'echo "cluster: bringing up failed; taking down what was created" >&2; down' ERR
    ip netns add "$bridge_ns"
    echo "$bridge_ns" >>"$dir/namespaces"
    in_ns "$bridge_ns" ip link set lo up
    in_ns "$bridge_ns" ip link add br0 type bridge
    in_ns "$bridge_ns" ip link set br0 up
    : >"$dir/hosts.new"
    for k in $(seq 1 "$n"); do
      ns=$(node_ns "$k")
      ip netns add "$ns"
      echo "$ns" >>"$dir/namespaces"
      in_ns "$ns" ip link set lo up
      # The pair is made in the node's namespace; its outer end moves to the bridge's.
      in_ns "$ns" ip link add eth0 type veth peer name "port$k"
      in_ns "$ns" ip link set "port$k" netns "$bridge_ns"
      in_ns "$bridge_ns" ip link set "port$k" master br0
      in_ns "$bridge_ns" ip link set "port$k" up
      in_ns "$ns" ip addr add "$(addr "$k")/24" dev eth0
      in_ns "$ns" ip link set eth0 up
      if [[ -n "$rate" ]]; then
        shape "$ns" eth0 "$rate"                  # node -> bridge
        shape "$bridge_ns" "port$k" "$rate"       # bridge -> node
      fi
      echo "$(addr "$k") node$k $ns" >>"$dir/hosts.new"
    done
    mv "$dir/hosts.new" "$dir/hosts"
    echo "$subnet" >"$dir/subnet"
    # OpenMPI's launcher calls AGENT HOST COMMAND..., like ssh: the words are joined and run by a
    # shell on that host.
    cat >"$dir/agent" <<AGENT
#!/usr/bin/env bash
# plm_rsh_agent for the simulated cluster in $dir: AGENT HOST COMMAND...
host=\$1; shift
read -r _ name ns < <(awk -v h="\$host" '\$1 == h || \$2 == h' "$dir/hosts")
[[ -n "\$ns" ]] || { echo "cluster agent: unknown host \$host" >&2; exit 255; }
exec nsenter --net="/run/netns/\$ns" unshare --uts /bin/bash -c 'hostname "\$0"; eval "\$*"' "\$name" "\$@"
AGENT
    chmod +x "$dir/agent"
    # Every node reaches every other before this returns.
    for k in $(seq 2 "$n"); do
      ok=0
      for _ in $(seq 1 50); do
        if reaches 1 "$(addr "$k")"; then ok=1; break; fi
        sleep 0.1
      done
      ((ok)) || { echo "cluster: node$k does not answer" >&2; false; }
    done
    trap - ERR
    echo "cluster: $n nodes up in $dir (subnet $subnet${rate:+, links shaped to $rate})"
    ;;
  exec)
    [[ $# -ge 2 ]] || usage
    check_node "$1"
    k=$1; shift
    exec nsenter --net="/run/netns/$(node_ns "$k")" unshare --uts /bin/bash -c 'hostname "$0"; exec "$@"' "node$k" "$@"
    ;;
  mpirun)
    n=$(count)
    nodes=$n per=1
    while [[ "${1:-}" == --nodes || "${1:-}" == --per-node ]]; do
      [[ "${2:-}" =~ ^[0-9]+$ && $2 -ge 1 ]] || { echo "cluster: $1 needs a positive number" >&2; exit 2; }
      if [[ $1 == --nodes ]]; then nodes=$2; else per=$2; fi
      shift 2
    done
    (( nodes <= n )) || { echo "cluster: --nodes $nodes, but the cluster has $n" >&2; exit 2; }
    hostfile="$dir/hostfile.$nodes.$per"
    head -n "$nodes" "$dir/hosts" | awk -v s="$per" '{print $1 " slots=" s}' >"$hostfile"
    mca=(--hostfile "$hostfile" --mca plm_rsh_agent "$dir/agent" --mca plm_rsh_no_tree_spawn 1
         --mca btl self,vader,tcp --mca btl_tcp_if_include "$subnet" --mca oob_tcp_if_include "$subnet")
    exec nsenter --net="/run/netns/$(node_ns 1)" unshare --uts /bin/bash -c 'hostname node1; exec mpirun "$@"' _ "${mca[@]}" "$@"
    ;;
  cut|restore)
    [[ $# -eq 1 ]] || usage
    check_node "$1"
    state=down; [[ $cmd == restore ]] && state=up
    in_ns "$bridge_ns" ip link set "port$1" "$state"
    in_ns "$(node_ns "$1")" ip link set eth0 "$state"
    ;;
  pids)
    # pids DIR [K]: the processes running on node K (every node), one PID a line.
    if [[ $# -eq 1 ]]; then check_node "$1"; nodes=$1; else [[ $# -eq 0 ]] || usage; nodes=$(seq 1 "$(count)"); fi
    for k in $nodes; do ip netns pids "$(node_ns "$k")"; done
    ;;
  kill)
    # kill DIR: ends every process on every node (SIGKILL), keeps the network.
    [[ $# -eq 0 ]] || usage
    for k in $(seq 1 "$(count)"); do
      pids=$(ip netns pids "$(node_ns "$k")")
      [[ -n "$pids" ]] && kill -9 $pids 2>/dev/null || true
    done
    ;;
  down)
    [[ $# -eq 0 ]] || usage
    down
    ;;
  *) usage ;;
esac

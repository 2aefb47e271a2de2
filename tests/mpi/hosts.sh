#!/usr/bin/env bash
# Three ranks on three simulated hosts give the same bits as one process. Each "host" is a
# network namespace with its own host name (unshare --uts), joined to the others by veth pairs
# on a bridge with a private /24; mpirun's rsh agent is a script that starts the remote command
# with `ip netns exec`, and Open MPI's TCP transport (btl and oob) is confined to that subnet.
# mpirun itself stays in the root namespace, which has an address on the bridge.
#
# Needs root, iproute2 and util-linux's unshare; prints SKIP and exits 77 when the namespaces
# or their network cannot be set up here. Everything it creates carries this shell's pid in its
# name and is removed on exit, success or failure.
source "$(dirname "$0")/common.sh"

skip() { echo "SKIP: $* (this test needs root and network namespaces)"; exit 77; }

[ "$(id -u)" -eq 0 ] || skip "not running as root"
command -v ip > /dev/null || skip "no 'ip' command (iproute2)"
command -v unshare > /dev/null || skip "no 'unshare' command (util-linux)"
command -v hostname > /dev/null || skip "no 'hostname' command"
command -v mpirun > /dev/null || fail "no mpirun"

TAG="moeh$$"                     # namespaces, bridge and veths all start with this
BRIDGE="${TAG}br"                # interface names must stay under 16 characters
NAMES=(a b c)                    # host a: rank 0 (coordinator); b: rank 1; c: rank 2
NETNS=() HOSTS=() ADDRS=()
CREATED_NS=() CREATED_LINKS=()

cleanup() {
  local rc=$?
  set +e
  for ns in "${CREATED_NS[@]}"; do
    # Anything still running in our namespaces was started by this test (an orphaned orted).
    for pid in $(ip netns pids "$ns" 2> /dev/null); do kill -9 "$pid" 2> /dev/null; done
  done
  for link in "${CREATED_LINKS[@]}"; do ip link del "$link" 2> /dev/null; done
  for ns in "${CREATED_NS[@]}"; do ip netns del "$ns" 2> /dev/null; done
  rm -rf "$SCRATCH"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# Leftovers of earlier runs that were killed outright (SIGKILL skips the trap): namespaces and
# links named moeh<pid>... whose pid is gone.
for ns in $(ip netns list 2> /dev/null | awk '{print $1}' | grep -E '^moeh[0-9]+[abc]$' || true); do
  pid=${ns#moeh}; pid=${pid%?}
  kill -0 "$pid" 2> /dev/null && continue
  for p in $(ip netns pids "$ns" 2> /dev/null); do kill -9 "$p" 2> /dev/null || true; done
  ip netns del "$ns" 2> /dev/null || true
done
for link in $(ip -o link show 2> /dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 |
              grep -E '^moeh[0-9]+(br|[abc])$' || true); do
  pid=${link#moeh}; pid=${pid%%[a-z]*}
  kill -0 "$pid" 2> /dev/null || ip link del "$link" 2> /dev/null || true
done

# A private /24 that nothing on this machine routes yet: 10.231.K.0/24, K from our pid.
SUBNET=""
for i in $(seq 0 249); do
  k=$(( ($$ + i) % 250 + 1 ))
  if ! ip -4 route show 2> /dev/null | grep -q "^10\.231\.$k\." &&
     ! ip -4 addr show 2> /dev/null | grep -q "inet 10\.231\.$k\."; then
    SUBNET="10.231.$k"
    break
  fi
done
[ -n "$SUBNET" ] || skip "no free /24 in 10.231.0.0/16"
CIDR="$SUBNET.0/24"

ip link add "$BRIDGE" type bridge 2> "$SCRATCH/setup.err" || skip "cannot create a bridge: $(cat "$SCRATCH/setup.err")"
CREATED_LINKS+=("$BRIDGE")
ip addr add "$SUBNET.1/24" dev "$BRIDGE"
ip link set "$BRIDGE" up

for i in "${!NAMES[@]}"; do
  n=${NAMES[$i]}
  ns="$TAG$n"
  ip netns add "$ns" 2> "$SCRATCH/setup.err" || skip "'ip netns add' failed: $(cat "$SCRATCH/setup.err")"
  CREATED_NS+=("$ns")
  ip link add "${TAG}$n" type veth peer name "${TAG}${n}p" 2> "$SCRATCH/setup.err" ||
    skip "cannot create a veth pair: $(cat "$SCRATCH/setup.err")"
  CREATED_LINKS+=("${TAG}$n")  # deleting one end removes its peer
  ip link set "${TAG}$n" master "$BRIDGE"
  ip link set "${TAG}$n" up
  ip link set "${TAG}${n}p" netns "$ns"
  ip -n "$ns" link set "${TAG}${n}p" name eth0
  ip -n "$ns" addr add "$SUBNET.$((i + 2))/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  ip netns exec "$ns" unshare --uts hostname "host-$n-$$" 2> "$SCRATCH/setup.err" || skip "'ip netns exec' or 'unshare --uts' failed: $(cat "$SCRATCH/setup.err")"
  NETNS+=("$ns") HOSTS+=("host-$n-$$") ADDRS+=("$SUBNET.$((i + 2))")
done

# Can every namespace reach the others and the bridge address? (This is setup, not the code
# under test.) A TCP connection to a closed port is refused at once by a reachable host and
# times out or finds no route otherwise; no listener needed.
reaches() {  # reaches NS ADDR ("" = the root namespace)
  local out
  out=$(timeout 3 ${1:+ip netns exec "$1"} bash -c "exec 3<>/dev/tcp/$2/9" 2>&1) && return 0
  [[ "$out" == *"Connection refused"* ]]
}
for from in "" "${NETNS[@]}"; do
  for addr in "$SUBNET.1" "${ADDRS[@]}"; do
    reaches "$from" "$addr" || skip "namespace '${from:-root}' cannot reach $addr over the bridge"
  done
done

# The rsh agent: Open MPI runs `AGENT [ssh options] HOST command...`. It looks HOST up in
# hosts.map (address, namespace, host name) and runs the command in that namespace, under that
# host name, logging each call to agent.log.
for i in "${!NAMES[@]}"; do
  echo "${ADDRS[$i]} ${NETNS[$i]} ${HOSTS[$i]}"
done > "$SCRATCH/hosts.map"
AGENT="$SCRATCH/netns-rsh"
cat > "$AGENT" <<'AGENT'
#!/usr/bin/env bash
# Generated by tests/mpi/hosts.sh: an ssh stand-in whose hosts are network namespaces.
dir=$(dirname "$0")
while [ $# -gt 0 ]; do
  case "$1" in
    -[BbcDEeFIiJLlmOopQRSWw]) shift 2 ;;  # ssh options that take an argument
    -*) shift ;;
    *) break ;;
  esac
done
host=$1
shift
echo "$host: $*" >> "$dir/agent.log"
while read -r addr ns name; do
  if [ "$host" = "$addr" ] || [ "$host" = "$name" ]; then
    exec ip netns exec "$ns" unshare --uts /bin/sh -c 'hostname "$0" && exec /bin/sh -c "$1"' "$name" "$*"
  fi
done < "$dir/hosts.map"
echo "netns-rsh: unknown host $host" >&2
exit 255
AGENT
chmod +x "$AGENT"

HOSTFILE="$SCRATCH/hostfile"
printf '%s slots=1\n' "${ADDRS[@]}" > "$HOSTFILE"

M="$DATA/models/mixtral-f32"
PROMPT="1 5 9 200 3 17 44 80 81 82 83 84 99 7"
timeout 120 "$MOE" generate --model "$M" --prompt-ids "$PROMPT" --max-tokens 12 --ignore-eos \
  --dump-logits "$SCRATCH/one" --json > "$SCRATCH/one.json"

# One slot per host, filled in hostfile order: rank 0 on a, rank 1 on b, rank 2 on c. No tree
# spawn: mpirun starts every orted through the agent itself. No vader: ranks talk over TCP only.
start=$SECONDS
set +e
timeout 120 mpirun --oversubscribe -np 3 --hostfile "$HOSTFILE" \
  --mca plm_rsh_agent "$AGENT" --mca plm_rsh_no_tree_spawn 1 \
  --mca btl tcp,self --mca btl_tcp_if_include "$CIDR" --mca oob_tcp_if_include "$CIDR" \
  --output-filename "$SCRATCH/ranks" \
  "$MOE" generate --model "$M" --prompt-ids "$PROMPT" --max-tokens 12 --ignore-eos \
  --dump-logits "$SCRATCH/hosts" --json --stats > "$SCRATCH/hosts.json" 2> "$SCRATCH/hosts.err"
rc=$?
set -e
[ $rc -eq 0 ] || { cat "$SCRATCH/hosts.err" "$SCRATCH/agent.log"; fail "3 ranks on 3 namespaces exited with status $rc"; }
echo "ok: 3 ranks on 3 hosts ran in $((SECONDS - start)) s"

same_bytes "$SCRATCH/one.prompt.npy" "$SCRATCH/hosts.prompt.npy"
same_bytes "$SCRATCH/one.gen.npy" "$SCRATCH/hosts.gen.npy"
echo "ok: logits from 3 hosts are bit-identical to one process"

# Each rank names its host when it loads: rank R ran where the hostfile put it. Read from each
# rank's own stderr (--output-filename): in the merged stream, ranks' writes interleave.
for r in 0 1 2; do
  err=$(find "$SCRATCH/ranks" -path "*/rank.$r/stderr" 2> /dev/null | head -1)
  [ -n "$err" ] || fail "mpirun --output-filename wrote no stderr file for rank $r"
  grep -q "^moe: rank $r on ${HOSTS[$r]} holds [0-9]* bytes" "$err" ||
    { cat "$err"; fail "no 'moe: rank $r on ${HOSTS[$r]} holds' line from rank $r"; }
  grep "^moe: rank" "$err"
done
python3 - "$SCRATCH/hosts.json" <<'PY'
import json, sys
out = json.load(open(sys.argv[1]))
assert out["ranks"] == 3, out["ranks"]
rows = out["stats"]["rank_rows"]
assert rows[0] == 0 and rows[1] > 0 and rows[2] > 0, ("every worker must get rows", rows)
print("ok: --stats rows per rank", rows)
PY
echo "ok: ranks 0, 1, 2 ran on ${HOSTS[*]}"

# Four ranks, round robin over the hosts: rank 3 shares host a with rank 0 (a shared-memory
# inbox and a doorbell between them, where rank 3 is rank 0's first local sender), and ranks 1
# and 2 are reached over TCP alone.
set +e
timeout 120 mpirun --oversubscribe -np 4 --map-by node --hostfile "$HOSTFILE" \
  --mca plm_rsh_agent "$AGENT" --mca plm_rsh_no_tree_spawn 1 \
  --mca btl tcp,self --mca btl_tcp_if_include "$CIDR" --mca oob_tcp_if_include "$CIDR" \
  --output-filename "$SCRATCH/mixed-ranks" \
  "$MOE" generate --model "$M" --prompt-ids "$PROMPT" --max-tokens 12 --ignore-eos \
  --dump-logits "$SCRATCH/mixed" --json > /dev/null 2> "$SCRATCH/mixed.err"
rc=$?
set -e
[ $rc -eq 0 ] || { cat "$SCRATCH/mixed.err"; fail "4 ranks on 3 namespaces exited with status $rc"; }
err=$(find "$SCRATCH/mixed-ranks" -path "*/rank.3/stderr" 2> /dev/null | head -1)
grep -q "^moe: rank 3 on ${HOSTS[0]} holds" "$err" || { cat "$err"; fail "rank 3 did not run on ${HOSTS[0]}"; }
same_bytes "$SCRATCH/one.prompt.npy" "$SCRATCH/mixed.prompt.npy"
same_bytes "$SCRATCH/one.gen.npy" "$SCRATCH/mixed.gen.npy"
echo "ok: 4 ranks, two of them sharing a host, are bit-identical to one process"

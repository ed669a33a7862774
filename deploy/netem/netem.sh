#!/bin/sh
# Shape this network namespace's traffic to named peers with a link profile.
#
#   netem.sh PEER=PROFILE...        e.g.  netem.sh device=4g cloud=wan
#
# Run inside a tier's namespace (docker-compose.yml, profile "netem"). Each
# PEER's address gets its own band of a prio qdisc on $NETEM_DEV (eth0), with
# tc netem delaying and rate-limiting what leaves towards it; other traffic
# (clients, Prometheus) is untouched. Both ends of a link run this, so the
# round trip is twice the one-way delay below.
#
#   profile  one-way delay  jitter  rate      (rough figures for such links)
#   wifi     5 ms           2 ms    100 Mbit/s
#   5g       8 ms           2 ms    300 Mbit/s
#   4g       25 ms          8 ms    20 Mbit/s
#   wan      10 ms          1 ms    1 Gbit/s   (edge <-> cloud backhaul)
#   none     no shaping
set -eu

dev=${NETEM_DEV:-eth0}

params_of() {
    case "$1" in
        wifi) echo "delay 5ms 2ms rate 100mbit" ;;
        5g) echo "delay 8ms 2ms rate 300mbit" ;;
        4g) echo "delay 25ms 8ms rate 20mbit" ;;
        wan) echo "delay 10ms 1ms rate 1gbit" ;;
        none) echo "" ;;
        *) return 1 ;;
    esac
}

[ $# -gt 0 ] || { echo "usage: netem.sh PEER=PROFILE... (profiles: wifi 5g 4g wan none)" >&2; exit 2; }

# Start clean, so re-running replaces the previous shaping. Bands 1-3 keep the
# default priority map for all other traffic; peers get bands 4 and up.
tc qdisc del dev "$dev" root 2>/dev/null || true
tc qdisc add dev "$dev" root handle 1: prio bands $((3 + $#)) priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1

band=3
for link in "$@"; do
    peer=${link%%=*}
    profile=${link#*=}
    band=$((band + 1))
    if ! params=$(params_of "$profile"); then
        echo "netem: unknown profile '$profile' for $peer (wifi 5g 4g wan none)" >&2
        exit 2
    fi
    if [ -z "$params" ]; then
        echo "netem: $dev -> $peer: none"
        continue
    fi
    address=$(getent hosts "$peer" | awk 'NR == 1 { print $1 }')
    if [ -z "$address" ]; then
        echo "netem: cannot resolve $peer" >&2
        exit 1
    fi
    tc qdisc add dev "$dev" parent "1:$band" handle "${band}0:" netem $params
    tc filter add dev "$dev" parent 1: protocol ip prio 1 u32 match ip dst "$address/32" flowid "1:$band"
    echo "netem: $dev -> $peer ($address): $profile ($params)"
done
tc qdisc show dev "$dev"

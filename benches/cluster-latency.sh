#!/usr/bin/env bash
# `pgdeploy cluster`'s no-op re-run of a cluster deployed to the lab, at the lab's latency and
# with 25 ms added to every round trip (every host reached through a bastion behind
# benches/delay_proxy.py).
# Prints Markdown for README's benchmark section: per play, the commands (round trips) per host
# and its time, then the whole run's commands on pgnode01 and seconds.
#
#   benches/cluster-latency.sh LAB_DIR [pgdeploy cluster flags, e.g. -e @vars.yml]
#
# As root, with the cluster already deployed from LAB_DIR/inventory (a first run, say).
set -euo pipefail
cd "$(dirname "$0")/.."
lab=$1
shift
bin=${PGDEPLOY:-target/release/pgdeploy}
inv=$lab/inventory
# Beside the lab's inventory: the generated passwords and the CA are looked for there (an
# inventory elsewhere would mean a new CA and new passwords, another cluster).
work=$lab
trap 'kill $(jobs -p) 2>/dev/null || true; rm -f "$work/inventory-latency" "$work/known_hosts-latency" "$work"/plays-inventory*' EXIT

# One run: seconds, and the commands the first database host's connection ran.
measure() {
    local inventory=$1 known=$2
    local start end out
    start=$(date +%s.%N)
    out=$("$bin" cluster -i "$inventory" --known-hosts "$known" --profile "${@:3}")
    end=$(date +%s.%N)
    grep -q 'changed=0 ' <<<"$out" || { echo "not a no-op run:"; echo "$out"; exit 1; } >&2
    # --profile's lines `  0.24 s  play  NAME  (3.5 commands per host)`, kept for the table.
    grep -E '^ +[0-9.]+ s  play  ' <<<"$out" >"$work/plays-$(basename "$inventory")"
    local commands
    commands=$(grep -E '^pgnode01 +: ok=' <<<"$out" | tail -1 | sed -E 's/.*commands=([0-9]+).*/\1/')
    echo "$commands $(awk "BEGIN { print $end - $start }")"
}

read -r c0 t0 < <(measure "$inv" "$lab/known_hosts" "$@")

# Behind a bastion 25 ms away, as clusters often are: every host is reached through
# pgnode01's sshd (ProxyJump), whose connection goes through the delaying proxy.
bastion=$(grep -oE '^pgnode01 ansible_host=[0-9.]+' "$inv" | head -1 | sed 's/.*=//')
cp "$lab/known_hosts" "$work/known_hosts-latency"
# The proxy's address, vouched for by the bastion's own key.
grep -E "^$bastion[ ,]" "$lab/known_hosts" | sed -E "s/^[^ ]+ /[127.0.3.1]:2222 /" >>"$work/known_hosts-latency"
sed -E "s|^ansible_ssh_common_args=.*|ansible_ssh_common_args='-o UserKnownHostsFile=$work/known_hosts-latency -o ProxyJump=root@127.0.3.1:2222'|" "$inv" >"$work/inventory-latency"
python3 benches/delay_proxy.py 0.0125 "127.0.3.1:2222=$bastion:22" &
sleep 1
read -r c25 t25 < <(measure "$work/inventory-latency" "$work/known_hosts-latency" "$@")
echo "| play | commands per host | lab | +25 ms RTT |"
echo "|---|---:|---:|---:|"
# The two runs list the same plays in the same order.
paste -d'|' "$work/plays-inventory" "$work/plays-inventory-latency" |
    sed -E 's/^ *([0-9.]+) s  play  (.*)  \(([0-9.]+) commands per host\)\| *([0-9.]+) s  play  .*$/| \2 | \3 | \1 s | \4 s |/'
printf "| the whole run (pgnode01) | %s | %.2f s | %.2f s |\n" "$c0" "$t0" "$t25"
[ "$c0" = "$c25" ] || echo "(through the bastion pgnode01 ran $c25 commands)"

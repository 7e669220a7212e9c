#!/bin/sh
# run.sh -- README's cross-machine example, run as written on three
# "hosts": network namespaces joined by a bridge, each with its own
# loopback (and its own /dev/shm view is not needed: peers on different
# namespaces have different addresses, so they talk TCP).
#   usage: run.sh /path/to/app
# Exits 0 on success, 77 (meson's "skipped") where namespaces cannot be
# made (not root, no iproute2, no veth), anything else on failure.
set -u

app=${1:?usage: run.sh /path/to/app}
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null 2>&1; then
	echo "run.sh: needs root and iproute2 for network namespaces, skipping" >&2
	exit 77
fi
tag=rc$$
A=${tag}a B=${tag}b C=${tag}c BR=${tag}br
pids=""
cleanup() {
	for p in $pids; do kill -9 "$p" 2>/dev/null; done
	for p in $pids; do wait "$p" 2>/dev/null; done
	for n in $A $B $C $BR; do ip netns del "$n" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

if ! ip netns add "$BR" 2>/dev/null; then
	echo "run.sh: cannot make network namespaces here, skipping" >&2
	exit 77
fi
ip -n "$BR" link add br0 type bridge && ip -n "$BR" link set br0 up || {
	echo "run.sh: no bridge support, skipping" >&2
	exit 77
}
i=1
for n in $A $B $C; do
	ip netns add "$n" || exit 1
	ip link add v0 netns "$n" type veth peer name p$i netns "$BR" || {
		echo "run.sh: no veth support, skipping" >&2
		exit 77
	}
	ip -n "$BR" link set p$i master br0 up &&
		ip -n "$n" addr add 10.77.0.$i/24 dev v0 &&
		ip -n "$n" link set v0 up &&
		ip -n "$n" link set lo up || exit 1
	i=$((i + 1))
done

log=$(mktemp -d "${TMPDIR:-/tmp}/rayc-netns.XXXXXX")
# README: the founder with a token and a listen address...
ip netns exec "$A" env RAYC_TOKEN=s3cret RAYC_LISTEN=tcp://0.0.0.0:7000 \
	NETNS_PEERS=3 "$app" >"$log/a" 2>&1 &
founder=$!
pids="$founder"
# README starts the workers once the founder is up: wait (bounded) until
# it listens.
t=0
until ip netns exec "$A" ss -ltn 2>/dev/null | grep -q ':7000 '; do
	t=$((t + 1))
	if [ $t -gt 300 ] || ! kill -0 "$founder" 2>/dev/null; then
		echo "run.sh: the founder never listened" >&2
		cat "$log/a" >&2
		exit 1
	fi
	sleep 0.1
done
# ...then workers joined to it, each started exactly as README shows.
for n in $B $C; do
	ip netns exec "$n" env RAYC_TOKEN=s3cret \
		RAYC_ADDRESS=tcp://10.77.0.1:7000 RAYC_ROLE=worker \
		"$app" >"$log/$n" 2>&1 &
	pids="$pids $!"
done
# The app has its own deadlines (30 s to join, 20 s per result); this
# bounds a hang anyway.
t=0
while kill -0 "$founder" 2>/dev/null && [ $t -lt 1200 ]; do
	sleep 0.1
	t=$((t + 1))
done
if kill -0 "$founder" 2>/dev/null; then
	echo "run.sh: the founder hung" >&2
	rc=1
else
	wait "$founder"
	rc=$?
fi
cat "$log/a"
for n in $B $C; do sed "s/^/worker: /" "$log/$n"; done
rm -rf "$log"
exit $rc

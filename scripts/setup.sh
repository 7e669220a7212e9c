#!/bin/sh
# rayc's one setup entry point for a fresh Debian 12 machine (run as root):
#   scripts/setup.sh demo   install what is missing, build, run the main demo
#   scripts/setup.sh test   install what is missing, build, run the whole test suite
#   scripts/setup.sh deps   only install the Debian packages
#   scripts/setup.sh fuzz   also install clang and libFuzzer, build fuzz/'s
#                           targets (build-fuzz) and run each for
#                           FUZZ_SECONDS (default 20) over its seeds
#   scripts/setup.sh tsan   also install clang, build build-tsan and run the
#                           thread stress test and the task benchmarks under
#                           ThreadSanitizer
# BUILD_DIR (default: build), MESON_ARGS (extra `meson setup` arguments) and
# MESON_TEST_ARGS (extra `meson test` arguments) may be set.
set -eu

PKGS="build-essential meson ninja-build pkg-config libevent-dev libnng-dev libsodium-dev \
libxxhash-dev libcriterion-dev uthash-dev libraft-dev libuv1-dev iproute2 libtbb-dev libssl-dev"

# For `fuzz` only: clang 14 and its libFuzzer/sanitizer runtimes.
FUZZ_PKGS="clang libclang-rt-14-dev"

cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}

deps() {
	missing=""
	for p in $PKGS ${EXTRA_PKGS:-}; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	echo "rayc: installing$missing"
	if [ "$(id -u)" -ne 0 ]; then
		echo "rayc: need root to install packages (or install them yourself):$missing" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends $missing
}

build() {
	if [ ! -f "$BUILD_DIR/build.ninja" ]; then
		# shellcheck disable=SC2086
		meson setup "$BUILD_DIR" ${MESON_ARGS:-}
	fi
	ninja -C "$BUILD_DIR"
}

case "${1:-}" in
deps) deps ;;
demo)
	deps
	build
	"$BUILD_DIR/examples/cluster/cluster"
	;;
test)
	deps
	build
	# shellcheck disable=SC2086
	meson test -C "$BUILD_DIR" --print-errorlogs --timeout-multiplier "${TIMEOUT_MULTIPLIER:-1}" \
		${MESON_TEST_ARGS:-}
	;;
fuzz)
	EXTRA_PKGS=$FUZZ_PKGS deps
	if [ ! -f build-fuzz/build.ninja ]; then
		CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false \
			-Dbench=false -Dexamples=false
	fi
	ninja -C build-fuzz
	# New inputs go to a scratch directory: the checked-in seeds stay
	# as fuzz/make_seeds.sh wrote them.
	scratch=$(mktemp -d)
	trap 'rm -rf "$scratch"' EXIT
	for t in wire frames msgs decode env; do
		mkdir -p "$scratch/$t"
		echo "rayc: fuzz_$t for ${FUZZ_SECONDS:-20} s"
		build-fuzz/fuzz/fuzz_"$t" -max_total_time="${FUZZ_SECONDS:-20}" \
			-timeout=25 -print_final_stats=1 -artifact_prefix="$scratch/" \
			"$scratch/$t" "fuzz/corpus/$t" 2>&1 |
			grep -E '^#[0-9]+ +DONE|ERROR|SUMMARY|stat::number_of_executed'
		[ -z "$(ls "$scratch" | grep -E '^(crash|leak|timeout|oom)-')" ] || {
			echo "rayc: fuzz_$t found a failing input" >&2
			ls "$scratch" >&2
			exit 1
		}
	done
	;;
tsan)
	# The multi-threaded paths under ThreadSanitizer: the thread stress
	# test, rayc-bench's local task and actor figures, and puts of 64 MiB
	# (each a growth the store's thread warms while the put writes it, at
	# first).  Criterion's runner does
	# not run under TSan.  Cross-peer figures are left out: libnng is not
	# instrumented, so TSan cannot see the ordering its aio hand-offs give
	# (a connection made on one NNG thread and read in a callback on
	# another is reported).  Any report fails.
	EXTRA_PKGS=$FUZZ_PKGS deps
	if [ ! -f build-tsan/build.ninja ]; then
		CC=clang meson setup build-tsan -Db_sanitize=thread \
			-Db_lundef=false -Dexamples=false -Drivals=false
	fi
	ninja -C build-tsan test/stress_threads bench/rayc-bench
	logs=$(mktemp -d)
	trap 'rm -rf "$logs"' EXIT
	export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 \
suppressions=$PWD/scripts/tsan.supp log_path=$logs/tsan"
	build-tsan/test/stress_threads
	build-tsan/bench/rayc-bench --quick single_client_tasks_async \
		multi_client_tasks_async single_client_tasks_and_get_batch \
		single_client_tasks_sync single_client_wait_1k_refs \
		1_1_actor_calls_sync 1_1_actor_calls_concurrent \
		n_n_actor_calls_async n_n_actor_calls_with_arg_async \
		single_client_put_gigabytes >/dev/null
	if [ -n "$(ls "$logs")" ]; then
		cat "$logs"/* >&2
		echo "rayc: ThreadSanitizer reported races" >&2
		exit 1
	fi
	echo "rayc: ThreadSanitizer: no reports"
	;;
*)
	echo "usage: $0 demo|test|deps|fuzz|tsan" >&2
	exit 2
	;;
esac

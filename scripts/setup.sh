#!/bin/sh
# rayc's one setup entry point for a fresh Debian 12 machine (run as root):
#   scripts/setup.sh demo   install what is missing, build, run the main demo
#   scripts/setup.sh test   install what is missing, build, run the whole test suite
#   scripts/setup.sh deps   only install the Debian packages
# BUILD_DIR (default: build), MESON_ARGS (extra `meson setup` arguments) and
# MESON_TEST_ARGS (extra `meson test` arguments) may be set.
set -eu

PKGS="build-essential meson ninja-build pkg-config libevent-dev libnng-dev libsodium-dev \
libxxhash-dev libcriterion-dev uthash-dev libraft-dev libuv1-dev iproute2"

cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}

deps() {
	missing=""
	for p in $PKGS; do
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
*)
	echo "usage: $0 demo|test|deps" >&2
	exit 2
	;;
esac

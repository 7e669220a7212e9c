#!/bin/sh
# run.sh -- installs a rayc build into a temporary root, then builds and runs
# consumer.c out of tree with only `pkg-config rayc` to find it.
#   usage: run.sh /absolute/path/to/build-dir
# Exits 0 on success, 77 (meson's "skipped") when make or pkg-config is
# missing, anything else on failure.
set -eu

build=${1:?usage: run.sh /absolute/path/to/build-dir}
case $build in
/*) ;;
*) echo "run.sh: the build dir must be an absolute path: $build" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
for tool in make pkg-config; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "run.sh: $tool not found, skipping" >&2
		exit 77
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/rayc-pkgconfig.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

# meson test has already built everything; do not start a second ninja in
# the same build dir while the test suite runs.
meson install -C "$build" --destdir "$tmp/root" --no-rebuild >"$tmp/install.log" 2>&1 || {
	cat "$tmp/install.log" >&2
	echo "run.sh: meson install failed" >&2
	exit 1
}

pc=$(find "$tmp/root" -name rayc.pc -path '*/pkgconfig/*' | head -n 1)
if [ -z "$pc" ]; then
	echo "run.sh: no rayc.pc installed under $tmp/root" >&2
	exit 1
fi
PKG_CONFIG_PATH=$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export PKG_CONFIG_PATH
# The .pc names the configured prefix (say /usr/local); point it at the copy.
prefix=$(pkg-config --variable=prefix rayc)
pkgconfig="pkg-config --define-variable=prefix=$tmp/root$prefix"
echo "run.sh: rayc.pc at ${pc#"$tmp/root"}, cflags: $($pkgconfig --cflags rayc)"
echo "run.sh: static libs: $($pkgconfig --static --libs rayc)"

mkdir "$tmp/src"
cp "$here/consumer.c" "$here/Makefile" "$tmp/src/"
make -C "$tmp/src" PKG_CONFIG="$pkgconfig"
"$tmp/src/consumer"

#!/bin/sh
# Regenerates fuzz/corpus/<target>/ from the targets themselves: each,
# run with RAYC_FUZZ_SEEDS=<dir>, writes its seeds there (the samples are
# built with lib/net's own codec, fuzz/samples.c) and exits.
#   fuzz/make_seeds.sh [BUILD_DIR]   (default build-fuzz, -Dfuzz=true)
set -eu
cd "$(dirname "$0")/.."
B=${1:-build-fuzz}
for t in wire frames msgs decode env; do
	rm -rf "fuzz/corpus/$t"
	mkdir -p "fuzz/corpus/$t"
	RAYC_FUZZ_SEEDS="fuzz/corpus/$t" "$B/fuzz/fuzz_$t"
done

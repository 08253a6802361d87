#!/usr/bin/env bash
# Allocations per request on the broker's hot paths (Benchmarks/HotPath, counted by the
# malloc interposer) checked against the figures committed under Thresholds/: exits 1 when a
# benchmark allocates more than its threshold allows (see the tolerances in HotPath.swift).
# After an intended change, rewrite the figures with `tools/bench-allocs.sh --update`.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--update" ]; then
    exec swift package --allow-writing-to-package-directory benchmark thresholds update \
        --target HotPath --no-progress --path "$PWD/Thresholds"
fi
swift package benchmark thresholds check --target HotPath --no-progress --path "$PWD/Thresholds"
rc=$?
# The plugin exits 0 when within the tolerances, 4 when every change is an improvement (then
# lower the figures with --update), 2 on a regression, anything else on a failure.
case $rc in
    0) exit 0 ;;
    4) echo "bench-allocs: fewer allocations than Thresholds/ records; lower them with tools/bench-allocs.sh --update" >&2; exit 0 ;;
    *) echo "bench-allocs: allocation check failed (exit $rc)" >&2; exit 1 ;;
esac

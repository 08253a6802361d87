#!/usr/bin/env bash
# Runs a broker on the embedded default: installs the C libraries the build links if they
# are missing (SQLite, zlib, zstd, lz4, snappy), builds in release mode, and starts
# `tern serve` with any arguments given here.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh --build
exec swift run -c release tern serve "$@"

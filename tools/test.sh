#!/usr/bin/env bash
# The whole test suite: dependencies, generated-code check, release build, unit tests
# (Swift Testing), then integration tests that drive the real binary with real clients.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh
python3 tools/gen_messages.py --check
# One build configuration (release) serves the binary and the unit tests.
# (without testable imports the test build reuses the release modules instead of rebuilding them).
# All products: `tern`, `codec-check` for tests/test_codec_crosscheck.py, and `s3-check` for
# tests/test_sigv4_crosscheck.py and tests/integration/test_s3.py.
swift build -c release
# The metadata-store unit tests also run on PostgreSQL: a throwaway server from the system's
# binaries (as user tern-test when we are root: initdb refuses root), stopped afterwards.
pg_dir=$(mktemp -d -t tern-pg-XXXXXX)
pg_url=$(python3 tests/integration/pg_server.py start "$pg_dir")
trap 'python3 tests/integration/pg_server.py stop "$pg_dir"' EXIT
TERN_TEST_POSTGRES_URL="$pg_url" swift test -c release --disable-testable-imports
python3 tests/integration/pg_server.py stop "$pg_dir"
trap - EXIT
# Allocations per request on the produce and fetch paths, against Thresholds/.
tools/bench-allocs.sh
TERN_BIN="$PWD/.build/release/tern" CODEC_CHECK_BIN="$PWD/.build/release/codec-check" \
    S3_CHECK_BIN="$PWD/.build/release/s3-check" python3 -m pytest tests -q -p no:cacheprovider "$@"

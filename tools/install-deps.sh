#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh machine: Debian packages (the C
# libraries the build links: SQLite and the record batch codecs; kcat and PostgreSQL for the
# tests) and the
# Python clients. `--build` installs only what building `tern` needs; `--bench` that and
# librdkafka's headers (bench/peers builds its librdkafka producer, bench/rdkafka_perf.c). Safe
# to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

build_only=false
bench=false
case "${1:-}" in
    --build) build_only=true ;;
    --bench) build_only=true; bench=true ;;
esac

apt_packages=(pkg-config libsqlite3-dev zlib1g-dev libzstd-dev liblz4-dev libsnappy-dev)
# kcat for the client tests; postgresql for the PostgreSQL metadata store tests (tools/test.sh
# and tests/integration/pg_server.py start throwaway servers from its binaries).
$build_only || apt_packages+=(kcat postgresql)
$bench && apt_packages+=(librdkafka-dev)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

$build_only && exit 0

python_deps_ok() {
    python3 - <<'PY' 2>/dev/null || return 1
import importlib.metadata as m, sys
want = {}
for line in open("requirements-test.txt"):
    line = line.split("#")[0].strip()
    if line:
        name, version = line.split("==")
        want[name.split("[")[0]] = version  # moto[server]: the distribution is moto
try:
    ok = all(m.version(n) == v for n, v in want.items())
except m.PackageNotFoundError:
    ok = False
sys.exit(0 if ok else 1)
PY
    # The S3 servers that tests/integration/test_s3.py starts (moto[server] needs Flask too).
    command -v weed >/dev/null && command -v moto_server >/dev/null && python3 -c "import flask, flask_cors" 2>/dev/null
}

if ! python_deps_ok; then
    echo "installing Python test clients and S3 servers"
    python3 -m pip install -q --disable-pip-version-check -r requirements-test.txt
fi

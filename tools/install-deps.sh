#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh machine: Debian packages (the C
# libraries the build links: SQLite and the record batch codecs; kcat for the tests) and the
# Python clients. `--build` installs only what building `tern` needs. Safe to run again: it
# skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

build_only=false
[ "${1:-}" = "--build" ] && build_only=true

apt_packages=(pkg-config libsqlite3-dev zlib1g-dev libzstd-dev liblz4-dev libsnappy-dev)
$build_only || apt_packages+=(kcat)
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

if ! python3 - <<'PY' 2>/dev/null
import importlib.metadata as m, sys
want = {}
for line in open("requirements-test.txt"):
    line = line.split("#")[0].strip()
    if line:
        name, version = line.split("==")
        want[name] = version
sys.exit(0 if all(m.version(n) == v for n, v in want.items()) else 1)
PY
then
    echo "installing Python test clients"
    python3 -m pip install -q --disable-pip-version-check -r requirements-test.txt
fi

#!/usr/bin/env bash
# Installs what the tests need on a fresh machine: Debian packages (kcat, librdkafka, the
# C libraries the build links) and the Python clients. Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(kcat pkg-config libsqlite3-dev zlib1g-dev libzstd-dev liblz4-dev libsnappy-dev)
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

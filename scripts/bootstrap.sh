#!/usr/bin/env bash
# Install what clicktrail needs on a Debian machine, idempotently: Debian's Redis and ClickHouse (and the
# tools the tests and benchmarks use), then a virtualenv in .venv with the project installed editable.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(redis-server clickhouse-server clickhouse-client wrk nginx-light docker-compose)
# The ClickHouse cluster mode (scripts/cluster-clickhouse.sh) coordinates its replicas with ZooKeeper.
APT_PACKAGES+=(zookeeper)
# The browser test of the in-app escape page drives Debian's Chromium through its ChromeDriver.
APT_PACKAGES+=(chromium chromium-driver)
# The webhook guide's examples are run by the tests with curl, openssl and Node.
APT_PACKAGES+=(curl openssl nodejs)
# promtool (`promtool check rules`, `promtool test rules` on deploy/prometheus/) comes with Debian's prometheus.
APT_PACKAGES+=(prometheus)
# The performance report's paired runs sample both servers with perf (benchmarks/perfprofile.py).
APT_PACKAGES+=(linux-perf)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "bootstrap: installing ${missing[*]}"
    SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    # Keep the packages from starting the distribution's own Redis and ClickHouse services (Debian's
    # policy-rc.d convention): scripts/services.sh runs ours on loopback, with our persistence settings.
    made_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    [[ -z $made_policy ]] || $SUDO rm -f /usr/sbin/policy-rc.d
fi

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.clicktrail-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
    # (this machine's pip config names extra local indexes that may not exist: drop those warnings)
    .venv/bin/pip install -q --upgrade pip 2>&1 | grep -v "is ignored: it is neither" || true
    .venv/bin/pip install -q -e ".[test]" 2> >(grep -v "is ignored: it is neither" >&2)
    touch "$stamp"
fi

#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test gatewatch. Idempotent.
set -euo pipefail

packages=(libpcap-dev libpq-dev pkg-config tcpdump iproute2 iputils-ping curl python3 python3-venv shellcheck
    mosquitto mosquitto-clients poppler-utils nftables chromium)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js comes with this machine kind (its npm inside); Debian's packages only where it lacks.
command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
cargo nextest --version >/dev/null 2>&1 || cargo install --locked cargo-nextest
# The web console: the hub embeds hub/ui/dist at build time. `npm ci` only when the lock changed.
ui=hub/ui
if [ ! -f "$ui/node_modules/.package-lock.json" ] || [ "$ui/package-lock.json" -nt "$ui/node_modules/.package-lock.json" ]; then
    echo "setup: installing the console's npm packages"
    (cd "$ui" && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ ! -f "$ui/dist/index.html" ] || [ -n "$(find "$ui/src" "$ui/index.html" "$ui/package-lock.json" "$ui/vite.config.ts" -newer "$ui/dist/index.html" 2>/dev/null | head -1)" ]; then
    echo "setup: building the web console (hub/ui)"
    (cd "$ui" && npm run --silent build >/dev/null)
fi

#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and test gatewatch. Idempotent.
set -euo pipefail

packages=(libpcap-dev libpq-dev pkg-config tcpdump iproute2 iputils-ping curl python3 python3-venv shellcheck
    mosquitto mosquitto-clients poppler-utils nftables)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
cargo nextest --version >/dev/null 2>&1 || cargo install --locked cargo-nextest

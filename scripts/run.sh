#!/usr/bin/env bash
# Runs the platform as far as it exists: builds the binaries, simulates an IoT network
# under every attack type as packets (one pcap per scenario), extracts labelled flow
# features from each, and prints what the agent saw. Output goes to $GATEWATCH_RUN_DIR
# (default ./run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/gatewatch-target}"
run_dir="${GATEWATCH_RUN_DIR:-$PWD/run}"
duration="${GATEWATCH_SIM_DURATION:-30s}"
mkdir -p "$run_dir"

echo "== building (release)"
cargo build --release --locked -p gatewatch-agent
agent="$CARGO_TARGET_DIR/release/gatewatch-agent"

scenarios=(benign ddos_flood:syn ddos_flood:udp ddos_flood:http slow_rate port_scan brute_force_ssh
    brute_force_ftp botnet_beacon data_exfiltration web_xss web_sqli hybrid)
echo "== simulating ${#scenarios[@]} scenarios of $duration each into $run_dir"
printf '%-18s %9s %7s %7s\n' scenario packets flows attack
for scenario in "${scenarios[@]}"; do
    name="${scenario/:/-}"
    log="$run_dir/$name.log"
    "$agent" simulate --attack "$scenario" --duration "$duration" --intensity 0.3 \
        --pcap "$run_dir/$name.pcap" --features "$run_dir/$name.csv" 2>"$log" || {
        echo "run: $scenario failed:" >&2
        cat "$log" >&2
        exit 1
    }
    packets=$(sed -n 's/^simulated \([0-9]*\) packets.*/\1/p' "$log")
    flows=$(sed -n 's/^wrote \([0-9]*\) flows (\([0-9]*\) attack).*/\1/p' "$log")
    attack=$(sed -n 's/^wrote \([0-9]*\) flows (\([0-9]*\) attack).*/\2/p' "$log")
    printf '%-18s %9s %7s %7s\n' "$scenario" "$packets" "$flows" "$attack"
done
echo "== done: pcaps and labelled CSVs (CIC-IDS2017 layout) in $run_dir"
echo "   replay one through the extractor:  $agent features --pcap $run_dir/port_scan.pcap --layout labelled"

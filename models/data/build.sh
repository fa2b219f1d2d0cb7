#!/usr/bin/env bash
# Builds the default model's dataset as labelled flow CSVs (CIC-IDS2017 "TrafficLabelling"
# layout) from three sources, and writes the train/test split by capture:
#   sim-*    the agent's packet simulator, every scenario, several seeds and intensities;
#   lab-*    captures of real tools in network namespaces (models/data/lab.sh);
#   shared-* the real captures in ../shared/pcaps (benign, and the CIC-IDS2017 XSS excerpt).
# Seed 1 of the simulator and the lab is the test set; the benign shared captures are split by name.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bash models/data/build.sh --agent PATH --out DIR [--lab DIR] [--seeds N] [--duration D]

  --agent PATH   gatewatch-agent binary (cargo build -p gatewatch-agent)
  --out DIR      where the CSVs, train.txt and test.txt go
  --lab DIR      captures and labels.csv written by models/data/lab.sh (skipped when absent)
  --seeds N      simulator seeds per scenario (default 4; seed 1 is held out for testing)
  --duration D   simulated capture length (default 60s)

Then:  gatewatch-models train --data $(cat DIR/train.txt) --devices 192.168.1.0/24,10.99.0.0/24 --out MODEL
       gatewatch-models eval --model MODEL --data $(cat DIR/test.txt) --devices 192.168.1.0/24,10.99.0.0/24
EOF
}

agent="" out="" lab="" seeds=4 duration=60s
while (($#)); do
    case $1 in
        --agent) agent=${2:?}; shift 2 ;;
        --out) out=${2:?}; shift 2 ;;
        --lab) lab=${2:?}; shift 2 ;;
        --seeds) seeds=${2:?}; shift 2 ;;
        --duration) duration=${2:?}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ -x $agent ]] || { echo "build.sh: --agent must name the gatewatch-agent binary" >&2; exit 2; }
[[ -n $out ]] || { echo "build.sh: --out DIR is required" >&2; exit 2; }
[[ $seeds =~ ^[1-9][0-9]*$ ]] || { echo "build.sh: --seeds must be a positive number" >&2; exit 2; }
shared="$(cd "$(dirname "$0")/../../.." && pwd)/shared/pcaps"
mkdir -p "$out"
: >"$out/train.txt"
: >"$out/test.txt"

split() { # file seed-or-role
    if [[ $2 == test ]]; then echo "$out/$1" >>"$out/test.txt"; else echo "$out/$1" >>"$out/train.txt"; fi
}

echo "== simulator: $seeds seeds per scenario" >&2
intensities=(0.2 0.5 0.8 0.35 0.65 0.95)
for seed in $(seq 1 "$seeds"); do
    intensity=${intensities[$(((seed - 1) % ${#intensities[@]}))]}
    for scenario in benign ddos_flood:syn ddos_flood:udp ddos_flood:http slow_rate port_scan brute_force_ssh \
        brute_force_ftp botnet_beacon data_exfiltration web_xss web_sqli hybrid; do
        name="sim-s$seed-${scenario/:/-}"
        length=$duration
        # Beacons need minutes to repeat; floods and scans make thousands of flows a second.
        [[ $scenario == botnet_beacon || $scenario == hybrid ]] && length=180s
        [[ $scenario == ddos_flood:* || $scenario == port_scan ]] && length=15s
        "$agent" simulate --attack "$scenario" --seed "$seed" --intensity "$intensity" --duration "$length" \
            --pcap "$out/$name.pcap" --features "$out/$name.csv" 2>>"$out/build.log"
        rm -f "$out/$name.pcap"
        if ((seed == 1)); then split "$name.csv" test; else split "$name.csv" train; fi
    done
    echo "   seed $seed done" >&2
done

if [[ -n $lab && -f $lab/labels.csv ]]; then
    echo "== lab captures from $lab" >&2
    while IFS=, read -r capture _scenario family attackers start end seed _packets; do
        [[ $capture == capture ]] && continue
        name="lab-${capture%.pcap}"
        args=(features --pcap "$lab/$capture" --layout labelled --out "$out/$name.csv")
        if [[ $family != benign ]]; then
            for a in $attackers; do args+=(--attacker "$a"); done
            args+=(--attack-label "$family" --attack-window "$start,$end")
        fi
        "$agent" "${args[@]}" 2>>"$out/build.log"
        if ((seed == 1)); then split "$name.csv" test; else split "$name.csv" train; fi
    done <"$lab/labels.csv"
else
    echo "!! no lab captures (--lab DIR with labels.csv): the dataset has simulator and shared captures only" >&2
fi

echo "== shared captures from $shared" >&2
# Benign captures: these go to training, the rest of the benign list is held out to measure
# false positives on traffic the model never saw (web browsing, video calls, IoT protocols).
train_benign=(amqp dnp3 IEC104 iec60780-5-104 s7comm ssdp-m-search ssh upnp websocket rdp nats 6in4tunnel)
test_benign=(reddit zoom2 coap_mqtt mqtt rtsp modbus)
for role in train test; do
    if [[ $role == train ]]; then list=("${train_benign[@]}"); else list=("${test_benign[@]}"); fi
    for base in "${list[@]}"; do
        file=$(ls "$shared/ndpi/$base".pcap* 2>/dev/null | head -1)
        [[ -n $file ]] || { echo "build.sh: $shared/ndpi/$base.pcap is missing" >&2; exit 1; }
        "$agent" features --pcap "$file" --layout labelled --out "$out/shared-$base.csv" 2>>"$out/build.log"
        split "shared-$base.csv" "$role"
    done
done
# The CIC-IDS2017 web-attack excerpt: 172.16.0.1 is the attacker (the dataset's NAT address).
"$agent" features --pcap "$shared/ndpi/WebattackXSS.pcap" --layout labelled --attacker 172.16.0.1 \
    --attack-label web_attack --out "$out/shared-WebattackXSS.csv" 2>>"$out/build.log"
split shared-WebattackXSS.csv train

echo "== $(wc -l <"$out/train.txt") training and $(wc -l <"$out/test.txt") test captures in $out" >&2

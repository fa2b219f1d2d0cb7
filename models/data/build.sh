#!/usr/bin/env bash
# Builds the default model's dataset as labelled flow CSVs (CIC-IDS2017 "TrafficLabelling"
# layout) from four sources, and writes the train/test split by capture:
#   sim-*     the agent's packet simulator, every scenario, several seeds and intensities;
#   lab-*     captures of real tools in network namespaces (models/data/lab.sh), one folder
#             per topology variant;
#   shared-*  the real captures in ../shared/pcaps/ndpi (benign, and the CIC-IDS2017 XSS excerpt);
#   corpus-*  the 345 real benign application captures in ../shared/pcaps/corpus/benign.
# Test set: seed 1 of the simulator, every capture of the --lab-test variants (a topology no
# training capture has), the benign shared captures named below, and 3 in 10 of the corpus
# captures, drawn by a hash of the file name. The suspect corpus (malware downloads, tunnels,
# mining) is left out of training: models/data/short_attacks.sh scores it.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bash models/data/build.sh --agent PATH --out DIR [--lab DIR]... [--lab-test DIR]...
                                 [--seeds N] [--duration D]

  --agent PATH   gatewatch-agent binary (cargo build -p gatewatch-agent)
  --out DIR      where the CSVs, train.txt and test.txt go
  --lab DIR      captures and labels.csv written by models/data/lab.sh, for training (every
                 seed); repeat it for each topology variant. CSVs are named after the folder.
  --lab-test DIR the same, held out for testing whole (the variant no training capture has)
  --seeds N      simulator seeds per scenario (default 4; seed 1 is held out for testing)
  --duration D   simulated capture length (default 60s)

Then:  gatewatch-models train --data $(cat DIR/train.txt) --devices 192.168.1.0/24,10.99.0.0/24 --out MODEL
       gatewatch-models eval --model MODEL --data $(cat DIR/test.txt) --devices 192.168.1.0/24,10.99.0.0/24
EOF
}

agent="" out="" seeds=4 duration=60s
labs=() lab_tests=()
while (($#)); do
    case $1 in
        --agent) agent=${2:?}; shift 2 ;;
        --out) out=${2:?}; shift 2 ;;
        --lab) labs+=("${2:?}"); shift 2 ;;
        --lab-test) lab_tests+=("${2:?}"); shift 2 ;;
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

lab_folder() { # DIR ROLE
    local lab=$1 role=$2 variant
    [[ -f $lab/labels.csv ]] || { echo "build.sh: $lab/labels.csv is missing (run models/data/lab.sh --out $lab)" >&2; exit 1; }
    variant=$(basename "$lab")
    echo "== lab captures from $lab ($role)" >&2
    while IFS=, read -r capture _scenario family attackers start end _seed _packets; do
        [[ $capture == capture ]] && continue
        name="lab-$variant-${capture#lab-}"
        name=${name%.pcap}
        args=(features --pcap "$lab/$capture" --layout labelled --out "$out/$name.csv")
        if [[ $family != benign ]]; then
            for a in $attackers; do args+=(--attacker "$a"); done
            args+=(--attack-label "$family" --attack-window "$start,$end")
        fi
        "$agent" "${args[@]}" 2>>"$out/build.log"
        split "$name.csv" "$role"
    done <"$lab/labels.csv"
}
for lab in "${labs[@]}"; do lab_folder "$lab" train; done
for lab in "${lab_tests[@]}"; do lab_folder "$lab" test; done
((${#labs[@]})) || echo "!! no lab captures (--lab DIR): the dataset has simulator and shared captures only" >&2

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

echo "== real benign application captures from $shared/corpus/benign" >&2
corpus=0
for file in "$shared"/corpus/benign/*; do
    base=$(basename "$file")
    base=${base%%.*}
    # 3 in 10 held out, by a hash of the name: the same split on every machine.
    bucket=$(($(printf '%s' "$base" | cksum | cut -d' ' -f1) % 10))
    # A truncated capture still gives the flows before the cut (and a non-zero status).
    "$agent" features --pcap "$file" --layout labelled --out "$out/corpus-$base.csv" 2>>"$out/build.log" ||
        echo "   $base: $(tail -1 "$out/build.log")" >&2
    [[ -s $out/corpus-$base.csv ]] || { echo "build.sh: $file gave no CSV (see $out/build.log)" >&2; exit 1; }
    if ((bucket < 3)); then split "corpus-$base.csv" test; else split "corpus-$base.csv" train; fi
    corpus=$((corpus + 1))
done
echo "   $corpus corpus captures" >&2

echo "== $(wc -l <"$out/train.txt") training and $(wc -l <"$out/test.txt") test captures in $out" >&2

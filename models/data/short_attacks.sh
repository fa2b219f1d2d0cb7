#!/usr/bin/env bash
# Scores the short real attacks and the suspect corpus with the agent as it runs on a gateway
# (partial windows after 5 s of quiet and at the end of the file) and prints, per capture, what
# it holds by our reading of its content, the windows of its devices and how many were flagged.
# None of these captures is in the training data. Needs python3 for the summary.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bash models/data/short_attacks.sh --agent PATH [--model DIR] [--partial-after 5s]

  --agent PATH          gatewatch-agent binary
  --model DIR           model directory (default: the agent's default, models/default)
  --partial-after D     quiet time before a device with fewer than 10 flows is scored [5s]

Devices are every private, loopback and unique-local address (10/8, 172.16/12, 192.168/16,
127/8, fc00::/7): the attacking or the attacked side of each capture is one of them.
EOF
}

agent="" model="" partial=5s
while (($#)); do
    case $1 in
        --agent) agent=${2:?}; shift 2 ;;
        --model) model=${2:?}; shift 2 ;;
        --partial-after) partial=${2:?}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "short_attacks.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ -x $agent ]] || { echo "short_attacks.sh: --agent must name the gatewatch-agent binary" >&2; exit 2; }
shared="$(cd "$(dirname "$0")/../../.." && pwd)/shared/pcaps"
devices=10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,127.0.0.0/8,fc00::/7
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# capture|what it holds (our label: an attack family, or "not an attack" and why)
captures=(
    "ndpi/WebattackXSS.pcap|web_attack: CIC-IDS2017 XSS (in training)"
    "corpus/suspect/xss.pcap|web_attack: one XSS request"
    "corpus/suspect/http-manipulated.pcap|web_attack: malformed, manipulated HTTP requests"
    "corpus/suspect/dns-exf.pcap|exfiltration: one DNS query carrying data"
    "corpus/suspect/dns2tcp_tunnel.pcap|exfiltration: dns2tcp tunnel"
    "corpus/suspect/shell.pcap|botnet_c2: shell commands over a raw TCP connection"
    "corpus/suspect/portable_executable.pcap|botnet_c2: PE download, then a session to port 4444"
    "corpus/suspect/exe_download.pcap|botnet_c2: malware (exe) delivery over HTTP"
    "corpus/suspect/exe_download_as_png.pcap|botnet_c2: exe disguised as a PNG"
    "corpus/suspect/elf.pcap|botnet_c2: ELF binary delivery over HTTP"
    "corpus/suspect/mining.pcapng|not an attack by its traffic: mining (policy)"
    "corpus/suspect/monero.pcap|not an attack by its traffic: Monero node (policy)"
    "corpus/suspect/psiphon3.pcap|not an attack by its traffic: circumvention tunnel (policy)"
    "corpus/suspect/ultrasurf.pcap|not an attack by its traffic: circumvention tunnel (policy)"
)
args=(--devices "$devices" --partial-after "$partial")
[[ -n $model ]] && args+=(--model "$model")
for entry in "${captures[@]}"; do
    file=${entry%%|*}
    [[ -f $shared/$file ]] || { echo "short_attacks.sh: $shared/$file is missing" >&2; exit 1; }
    out="$tmp/$(basename "$file").jsonl"
    "$agent" score --pcap "$shared/$file" "${args[@]}" --out "$out" 2>>"$tmp/agent.log" || true
done
printf '%s\n' "${captures[@]}" >"$tmp/captures.txt"
python3 - "$tmp" <<'EOF'
import json, os, sys
tmp = sys.argv[1]
print("| capture | holds | windows (partial) | flagged | highest score | families flagged |")
print("|---|---|---:|---:|---:|---|")
missed = 0
for line in open(os.path.join(tmp, "captures.txt")):
    file, label = line.rstrip("\n").split("|", 1)
    path = os.path.join(tmp, os.path.basename(file) + ".jsonl")
    rows = []
    if os.path.exists(path):
        rows = [json.loads(l) for l in open(path) if l.strip()]
    partial = sum(1 for r in rows if r.get("padded_flows", 0) > 0)
    flagged = [r for r in rows if r["label"] == "attack"]
    top = max((r["score"] for r in rows), default=0.0)
    fams = sorted({r["family"] for r in flagged})
    attack = not label.startswith("not an attack")
    if attack and not flagged:
        missed += 1
    print(f"| {os.path.basename(file)} | {label} | {len(rows)} ({partial}) | {len(flagged)} | {top:.3f} | {', '.join(fams) or '-'} |")
print(f"\n{missed} capture(s) holding an attack with no flagged window")
EOF

#!/usr/bin/env bash
# Runs the platform on this machine: a hub (PostgreSQL, its own MQTT broker with mutual TLS on
# 8883) and three agents that enroll with one-time tokens, simulate IoT networks under attack,
# detect with the shipped model and report to the hub; one short attack-simulation session
# runs on the first agent's device and its report is saved, and a two-round federated-learning
# run trains the model across the agents. Stops everything on Ctrl-C. State
# and logs go to $GATEWATCH_RUN_DIR (default ./run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/gatewatch-target}"
run_dir="${GATEWATCH_RUN_DIR:-$PWD/run}"
port="${GATEWATCH_HTTP_PORT:-8000}"
database="${GATEWATCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/gatewatch}"
agents="${GATEWATCH_AGENTS:-3}"
mqtt_port="${GATEWATCH_MQTT_TLS_PORT:-8883}"
mkdir -p "$run_dir"

echo "== building (release)"
cargo build --release --locked --workspace --bins
bin="$CARGO_TARGET_DIR/release"

pids=()
hub_pid=
stop() {
    echo "== stopping"
    # Agents first, so that what they hold is delivered to the hub before it goes.
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "$hub_pid" ]; then
        kill -TERM "$hub_pid" 2>/dev/null || true
        wait "$hub_pid" 2>/dev/null || true
    fi
}
trap stop EXIT INT TERM

password="${GATEWATCH_ADMIN_PASSWORD:-gatewatch-demo}"
echo "== hub on http://127.0.0.1:$port (database $database, log $run_dir/hub.log)"
# The demo's password is published: it listens on loopback only (GATEWATCH_HTTP_ADDRESS to change).
GATEWATCH_DATABASE_URL="$database" GATEWATCH_DATA_DIR="$run_dir/hub" GATEWATCH_HTTP_PORT="$port" \
    GATEWATCH_HTTP_ADDRESS="${GATEWATCH_HTTP_ADDRESS:-127.0.0.1}" \
    GATEWATCH_ADMIN_PASSWORD="$password" GATEWATCH_MODEL_DIR="$PWD/models/default" \
    GATEWATCH_MQTT_TLS_PORT="$mqtt_port" GATEWATCH_BROKER_MODE=embedded \
    "$bin/gatewatch-hub" serve >"$run_dir/hub.log" 2>&1 &
hub_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/api/v1/openapi.json" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$port/api/v1/openapi.json" >/dev/null || {
    echo "run: the hub did not start:" >&2
    cat "$run_dir/hub.log" >&2
    exit 1
}

login() {
    curl -s -X POST "http://127.0.0.1:$port/api/v1/auth/login" -H 'Content-Type: application/json' \
        -d "{\"username\":\"admin\",\"password\":\"$password\"}" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p'
}
# A prevention rule to watch: agents run it in dry run (they say what they would block).
token=$(login)
if [ "$(curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/v1/prevention/rules")" = "[]" ]; then
    curl -sf -X POST "http://127.0.0.1:$port/api/v1/prevention/rules" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' \
        -d '{"rule_name":"demo: block attackers","action_type":"block_ip","threshold":0.9,"cooldown_seconds":30}' \
        >/dev/null && echo "== prevention rule \"demo: block attackers\" (dry run at the agents)"
fi

for i in $(seq "$agents"); do
    name="gateway-$i"
    mkdir -p "$run_dir/$name"
    cat >"$run_dir/$name/agent.toml" <<EOF
name = "$name"
state_dir = "$run_dir/$name"
metrics_listen = "127.0.0.1:$((9476 + i))"
[source]
kind = "simulator"
simulator_seed = $i
simulator_target = "192.168.$i.20"
attack_every_secs = 40
[detect]
devices = ["192.168.$i.0/24"]
model_dir = "$PWD/models/default"
[fl]
# The demo attacks every 40 s: a shorter quiet period lets benign windows in between count.
quiet_secs = 10
EOF
    if [ ! -f "$run_dir/$name/identity/enrollment.json" ]; then
        read -r token fingerprint < <(GATEWATCH_DATABASE_URL="$database" GATEWATCH_DATA_DIR="$run_dir/hub" \
            GATEWATCH_LOG=warn "$bin/gatewatch-hub" agents token --quiet)
        "$bin/gatewatch-agent" enroll --hub "http://127.0.0.1:$port" --token "$token" --ca-sha256 "$fingerprint" \
            --config "$run_dir/$name/agent.toml" | sed 's/^/   /'
    fi
    "$bin/gatewatch-agent" run --config "$run_dir/$name/agent.toml" >"$run_dir/$name/agent.log" 2>&1 &
    pids+=($!)
    echo "== agent $name simulating 192.168.$i.0/24 (log $run_dir/$name/agent.log, metrics http://127.0.0.1:$((9476 + i))/metrics)"
done

# One short attack-simulation session on the first agent's device; its report lands in $run_dir.
python3 scripts/demo-session.py --port "$port" --password "$password" --device 192.168.1.20 \
    --out "$run_dir" >"$run_dir/demo-session.log" 2>&1 &
pids+=($!)
(tail -n +1 -F "$run_dir/demo-session.log" 2>/dev/null | sed -u 's/^/   /') &
pids+=($!)
# A short federated-learning run once the agents' local training sets hold benign windows.
metrics_ports=$(seq -s, 9477 $((9476 + agents)))
python3 scripts/demo-fl.py --port "$port" --password "$password" --metrics-ports "$metrics_ports" \
    >"$run_dir/demo-fl.log" 2>&1 &
pids+=($!)
(tail -n +1 -F "$run_dir/demo-fl.log" 2>/dev/null | sed -u 's/^/   /') &
pids+=($!)

cat <<EOF
== running. Open the console and sign in as admin / $password (it asks for a new password first;
   the demo scripts below sign in with this one, so change it once they are done):
   console       http://127.0.0.1:$port/
   API docs      http://127.0.0.1:$port/docs
   metrics       http://127.0.0.1:$port/metrics
   live events   ws://127.0.0.1:$port/ws/live?token=<access token>
   token         curl -s -X POST http://127.0.0.1:$port/api/v1/auth/login -H 'Content-Type: application/json' \\
                      -d '{"username":"admin","password":"$password"}'
   agents        GATEWATCH_DATABASE_URL=$database GATEWATCH_DATA_DIR=$run_dir/hub $bin/gatewatch-hub agents list
   alerts        http://127.0.0.1:$port/api/v1/alerts (with the token; also ws://…/ws/alerts)
   prevention    http://127.0.0.1:$port/api/v1/prevention/logs (what the dry-run rule would have done)
   attack demo   a two-step session on 192.168.1.20 (port scan under FGSM, SSH brute force);
                 its HTML and PDF reports are written to $run_dir/attack-report.{html,pdf}
   federated     a two-round FL run once the agents hold benign windows (a few minutes):
                 progress above and at http://127.0.0.1:$port/api/v1/fl/status, rounds at /api/v1/fl/rounds
   Attacks start after 40 s and rotate through every type. Ctrl-C stops everything.
EOF
while sleep 30; do
    token=$(login)
    if [ -z "$token" ]; then
        # The console asks the admin for a new password at first sign-in; the totals stop then.
        echo "$(date +%T) the admin password is no longer $password (changed in the console): totals stop here"
        wait
        exit 0
    fi
    stats=$(curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/v1/predictions/stats")
    alerts=$(curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/v1/alerts?size=1" |
        sed -n 's/.*"total":\([0-9]*\).*/\1/p')
    echo "$(date +%T) predictions: $stats alerts: ${alerts:-?}"
done

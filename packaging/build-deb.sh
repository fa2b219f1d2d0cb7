#!/usr/bin/env bash
# Cross-builds gatewatch for Raspberry-Pi-class gateways and packages it as .deb:
#
#   sudo bash packaging/build-deb.sh [arm64|armhf|amd64 ...]     (default: all three)
#   sudo bash packaging/build-deb.sh prepare                      (only make the build chroot)
#
# Builds happen in a Debian bookworm chroot (created once, reused; kept under
# $GATEWATCH_PKG_CACHE, default /var/cache/gatewatch-pkg) with Debian's own rustc-web from
# bookworm-security and its std for arm64/armhf, so binaries link against bookworm's glibc
# (2.36, as on Raspberry Pi OS bookworm) and its libpcap ABI. For each ARM target the agent's
# test suite runs under qemu-user. Packages land in target/packages/. Long-running: not for CI.
set -Eeuo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${GATEWATCH_PKG_CACHE:-/var/cache/gatewatch-pkg}
root=$cache/bookworm
outdir=$repo/target/packages
targets=("$@")
((${#targets[@]})) || targets=(arm64 armhf amd64)
prepare_only=false
if [ "${targets[*]}" = prepare ]; then prepare_only=true; targets=(); fi
current_step="start"
mounted=()

step() { current_step="$*"; printf '==> [%(%H:%M:%S)T] %s\n' -1 "$*"; }
fail() { echo "build-deb: FAILED during: $current_step" >&2; }
unmount_all() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
    mounted=()
}
trap fail ERR
trap unmount_all EXIT

for t in "${targets[@]}"; do
    case "$t" in arm64|armhf|amd64) ;; *) echo "build-deb: unknown target '$t' (use arm64, armhf, amd64)" >&2; exit 2 ;; esac
done
[ "$(id -u)" -eq 0 ] || { echo "build-deb: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }

# The Debian mirror this machine's apt already uses (never a hard-coded host).
apt_sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] && apt_sources+=("$f")
done
debian_uri() {
    local suite=$1
    awk -v want="$suite" '
        /^URIs:/ { uri = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == want) found = uri }
        /^deb / { for (i = 1; i <= NF; i++) if ($i == want) found = $(i - 1) }
        END { print found }' "${apt_sources[@]}" | tail -n 1
}
main_uri=$(debian_uri bookworm)
security_uri=$(debian_uri bookworm-security)
[ -n "$main_uri" ] && [ -n "$security_uri" ] || { echo "build-deb: no bookworm / bookworm-security source in this machine's apt configuration" >&2; exit 1; }

in_root() { chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

mount_root() {
    local what
    for what in proc sys dev dev/pts; do
        mountpoint -q "$root/$what" && continue
        case "$what" in
            proc) mount -t proc proc "$root/proc" ;;
            sys) mount -t sysfs sys "$root/sys" ;;
            *) mount --bind "/$what" "$root/$what" ;;
        esac
        mounted+=("$root/$what")
    done
    cp /etc/resolv.conf "$root/etc/resolv.conf"
}

step "host tools (debootstrap, qemu-user-static)"
need=()
for p in debootstrap qemu-user-static; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p"); done
if ((${#need[@]})); then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi

if [ ! -f "$root/.gatewatch-base" ]; then
    step "bootstrap a bookworm chroot in $root (about 15 minutes the first time)"
    mkdir -p "$cache"
    # A half-made chroot from an interrupted run is rebuilt from scratch, never while mounted.
    if [ -d "$root" ]; then
        if grep -q " $root/" /proc/mounts; then echo "build-deb: $root has mounts; unmount them first" >&2; exit 1; fi
        rm -rf --one-file-system "$root"
    fi
    debootstrap --variant=minbase bookworm "$root" "$main_uri"
    touch "$root/.gatewatch-base"
fi

if [ ! -f "$root/.gatewatch-toolchain" ]; then
    step "configure apt in the chroot (arm64 + armhf, bookworm-security pinned for Rust only)"
    cat > "$root/etc/apt/sources.list" <<LIST
deb $main_uri bookworm main
deb $main_uri bookworm-updates main
deb [arch=amd64,arm64] $security_uri bookworm-security main
LIST
    # The archive this machine sees can be a frozen snapshot.
    echo 'Acquire::Check-Valid-Until "false";' > "$root/etc/apt/apt.conf.d/99gatewatch"
    # Only the Rust toolchain comes from bookworm-security; everything else from bookworm, so
    # Multi-Arch versions stay in step. The specific records must come first.
    cat > "$root/etc/apt/preferences.d/gatewatch-rust" <<PIN
Package: rustc-web cargo-web libstd-rust-web-* libstd-rust-web-dev:arm64 libstd-rust-web-1.*:arm64 libllvm* libllvm*:arm64
Pin: release n=bookworm-security
Pin-Priority: 990

Package: *
Pin: release n=bookworm-security
Pin-Priority: 100
PIN
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
    mount_root
    in_root dpkg --add-architecture arm64
    in_root dpkg --add-architecture armhf
    step "install the cross toolchain in the chroot"
    in_root apt-get update -qq
    in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        ca-certificates rustc-web cargo-web libstd-rust-web-dev:arm64 \
        gcc g++ gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev:arm64 libc6-dev:armhf \
        libpcap-dev libpcap-dev:arm64 libpcap-dev:armhf pkg-config dpkg-dev qemu-user-static \
        xz-utils file binutils-aarch64-linux-gnu binutils-arm-linux-gnueabihf lintian >/dev/null
    in_root update-ca-certificates >/dev/null

    step "fetch Debian's armhf Rust std (its armhf index can lag the pool) and check SHA-256"
    rustc_version=$(in_root dpkg-query -W -f='${Version}' rustc-web)
    series=$(echo "$rustc_version" | grep -o '^[0-9]*\.[0-9]*')
    fetch_dir=$root/var/cache/gatewatch-armhf
    mkdir -p "$fetch_dir"
    packages_index=$(mktemp)
    curl -fsSL "$security_uri/dists/bookworm-security/main/binary-armhf/Packages.xz" | xz -d > "$packages_index"
    field() { awk -v p="$1" -v v="$2" -v f="$3" '/^Package: /{name=$2} /^Version: /{ver=$2} $1 == f":" { if (name==p && ver==v) { print $2; exit } }' "$packages_index"; }
    llvm_pkg=$(awk -v p="libstd-rust-web-$series" '$1=="Package:"{on=($2==p)} on && /^Depends:/{print; exit}' "$packages_index" | grep -o 'libllvm[0-9]*' | head -n 1)
    llvm_version=$(in_root dpkg-query -W -f='${Version}' "$llvm_pkg:amd64")
    fetch_armhf() {
        local pkg=$1 version=$2 file sha
        file=$(field "$pkg" "$version" Filename)
        sha=$(field "$pkg" "$version" SHA256)
        [ -n "$file" ] && [ -n "$sha" ] || { echo "build-deb: $pkg $version (armhf) is not in the bookworm-security index" >&2; return 1; }
        curl -fsSL -o "$fetch_dir/$(basename "$file")" "$security_uri/$file"
        echo "$sha  $fetch_dir/$(basename "$file")" | sha256sum -c --quiet - >&2
        echo "/var/cache/gatewatch-armhf/$(basename "$file")"
    }
    debs=()
    debs+=("$(fetch_armhf "libstd-rust-web-$series" "$rustc_version")")
    debs+=("$(fetch_armhf libstd-rust-web-dev "$rustc_version")")
    debs+=("$(fetch_armhf "$llvm_pkg" "$llvm_version")")
    in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${debs[@]}" >/dev/null
    rm -f "$packages_index"
    step "install cargo-deb in the chroot"
    in_root cargo install --locked --root /usr/local cargo-deb >/dev/null 2>&1
    touch "$root/.gatewatch-toolchain"
fi

step "extra tools in the chroot (help2man, GNU time, systemd-analyze, procps for the units' kill)"
extra=()
for p in help2man time systemd adduser procps; do
    in_root dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || extra+=("$p")
done
if ((${#extra[@]})); then
    mount_root
    in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${extra[@]}" >/dev/null
fi

if $prepare_only; then step "chroot ready in $root"; exit 0; fi

# ARM binaries (the test suites, the binaries they start, the smoke test) run through qemu-user.
# The F flag makes the kernel open the interpreter now, so it also works inside the chroot.
step "register qemu-user binfmt handlers for arm64 and armhf"
for arch in aarch64 arm; do
    [ -e "/proc/sys/fs/binfmt_misc/qemu-$arch" ] && continue
    [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    awk -F: -v OFS=: -v interp="/usr/bin/qemu-$arch-static" '{ $7 = interp; $8 = "F"; print }' \
        "/usr/lib/binfmt.d/qemu-$arch.conf" > /proc/sys/fs/binfmt_misc/register
done

step "build the web console once (the same files on every architecture; the hub embeds them)"
(cd "$repo/hub/ui" && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build >/dev/null)

mount_root
step "copy the source tree into the chroot"
rm -rf "$root/build/gatewatch" "$root/build/packages"
mkdir -p "$root/build/gatewatch" "$root/build/shared" "$root/build/packages"
tar -C "$repo" --exclude=./target --exclude=./.git --exclude=./agent/fuzz/target --exclude=./agent/fuzz/corpus \
    --exclude=./packaging/generated --exclude=./hub/ui/node_modules -cf - . | tar -C "$root/build/gatewatch" -xf -
tar -C "$repo/../shared" -cf - reference pcaps | tar -C "$root/build/shared" -xf -
mkdir -p "$root/build/gatewatch/packaging/generated"

rust_target() { case "$1" in arm64) echo aarch64-unknown-linux-gnu ;; armhf) echo armv7-unknown-linux-gnueabihf ;; amd64) echo x86_64-unknown-linux-gnu ;; esac; }
gnu_triplet() { case "$1" in arm64) echo aarch64-linux-gnu ;; armhf) echo arm-linux-gnueabihf ;; amd64) echo x86_64-linux-gnu ;; esac; }
qemu_for() { case "$1" in arm64) echo qemu-aarch64-static ;; armhf) echo qemu-arm-static ;; esac; }
# The hub runs on amd64 servers and on arm64 boards (a Pi 4/5 is a real small-site hub).
crates_for() { case "$1" in armhf) echo gatewatch-agent ;; *) echo gatewatch-agent gatewatch-hub ;; esac; }

build_env() {
    local arch=$1 t u triplet
    t=$(rust_target "$arch")
    u=$(echo "$t" | tr 'a-z-' 'A-Z_')
    triplet=$(gnu_triplet "$arch")
    printf '%s\n' "CARGO_HOME=/build/cargo-home" "CARGO_TARGET_DIR=/build/target" "CARGO_TERM_COLOR=never"
    if [ "$arch" != amd64 ]; then
        printf '%s\n' "CARGO_TARGET_${u}_LINKER=$triplet-gcc" "CC_${t//-/_}=$triplet-gcc" \
            "PKG_CONFIG_${t//-/_}=$triplet-pkg-config" "PKG_CONFIG_ALLOW_CROSS=1" \
            "CARGO_TARGET_${u}_RUNNER=$(qemu_for "$arch")"
    fi
}
strip_for() { if [ "$1" = amd64 ]; then echo strip; else echo "$(gnu_triplet "$1")-strip"; fi; }

summary=()
for arch in "${targets[@]}"; do
    t=$(rust_target "$arch")
    mapfile -t envs < <(build_env "$arch")
    read -r -a crates <<< "$(crates_for "$arch")"
    packages=()
    for c in "${crates[@]}"; do packages+=(-p "$c"); done
    if [[ " ${crates[*]} " == *" gatewatch-hub "* ]]; then
        # The hub links libpq; its -dev package exists for one architecture at a time.
        in_root dpkg-query -W -f='${Status}' "libpq-dev:$arch" 2>/dev/null | grep -q "install ok installed" \
            || in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "libpq-dev:$arch" >/dev/null
    fi
    # The packaging profile (Cargo.toml): release with fat LTO, one codegen unit, opt-level "s".
    step "$arch: packaging build of ${crates[*]} ($t)"
    in_root env "${envs[@]}" sh -c "cd /build/gatewatch && cargo build --profile packaging --locked --target $t ${packages[*]}"
    if [ "$arch" != amd64 ]; then
        step "$arch: agent and protocol test suites under $(qemu_for "$arch")"
        # The test profile (no LTO): a dozen test binaries link in seconds instead of minutes each.
        # Live capture needs ioctls (ethtool) and network namespaces qemu-user does not emulate.
        in_root env "${envs[@]}" sh -c \
            "cd /build/gatewatch && cargo test --locked --target $t -p gatewatch-proto -p gatewatch-agent -- --skip live_capture"
    fi
    for c in "${crates[@]}"; do
        step "$arch: package $c"
        bin=/build/target/$t/packaging/$c
        in_root "$(strip_for "$arch")" --strip-unneeded "$bin"
        # The man page is the binary's own --help (run under qemu for ARM builds).
        in_root help2man --no-info --version-string="$(in_root "$bin" --version | awk '{print $2}')" \
            --name="$(grep -m1 '^description' "$repo/${c#gatewatch-}/Cargo.toml" | cut -d'"' -f2)" \
            --output="/build/gatewatch/packaging/generated/$c.1" "$bin"
        gzip -9nf "$root/build/gatewatch/packaging/generated/$c.1"
        in_root env "${envs[@]}" sh -c "cd /build/gatewatch && cargo deb --no-build --no-strip --profile packaging --target $t -p $c --output /build/packages/" >/dev/null
        summary+=("$arch: $c $(numfmt --to=iec --suffix=B "$(stat -c %s "$root$bin")") stripped")
    done
done

step "lintian"
lintian_failed=0
for deb in "$root"/build/packages/*.deb; do
    in_root lintian --profile debian "/build/packages/$(basename "$deb")" || lintian_failed=1
done
[ "$lintian_failed" -eq 0 ] || { echo "build-deb: lintian reported errors (above)" >&2; exit 1; }

# Smoke test: install each ARM agent package in the chroot, run it under qemu on a real capture,
# compare its flow features with the x86-64 build's, measure its peak RSS, then purge.
capture=/build/shared/pcaps/ndpi/reddit.pcap
scored=/build/shared/pcaps/ndpi/WebattackXSS.pcap
reference_bin=/build/target/x86_64-unknown-linux-gnu/release/gatewatch-agent
for arch in "${targets[@]}"; do
    [ "$arch" = amd64 ] && continue
    if [ ! -x "$root$reference_bin" ]; then
        step "x86-64 reference build of the agent (for the feature comparison)"
        in_root env CARGO_HOME=/build/cargo-home CARGO_TARGET_DIR=/build/target sh -c \
            "cd /build/gatewatch && cargo build --release --locked --target x86_64-unknown-linux-gnu -p gatewatch-agent"
    fi
    deb=$(ls "$root"/build/packages/gatewatch-agent_*_"$arch".deb)
    step "$arch: install $(basename "$deb") in the chroot"
    in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "/build/packages/$(basename "$deb")" >/dev/null
    in_root gatewatch-agent --version
    in_root systemd-analyze verify /lib/systemd/system/gatewatch-agent.service
    in_root test -f /usr/share/gatewatch-agent/model/model.onnx
    in_root gatewatch-agent run --check --config /etc/gatewatch/agent.toml >/dev/null
    step "$arch: flow features of $(basename "$capture") under qemu vs x86-64"
    in_root gatewatch-agent features --pcap "$capture" --out "/build/features-$arch.csv"
    in_root "$reference_bin" features --pcap "$capture" --out /build/features-amd64.csv
    cmp "$root/build/features-$arch.csv" "$root/build/features-amd64.csv"
    flows=$(($(wc -l < "$root/build/features-$arch.csv") - 1))
    step "$arch: score $(basename "$scored") under qemu, peak RSS"
    # Every address of either family is a device (reddit.pcap alone is IPv6).
    in_root /usr/bin/time -f '%M' -o "/build/rss-$arch" gatewatch-agent score --pcap "$scored" \
        --devices 0.0.0.0/0,::/0 > "$root/build/score-$arch.jsonl" 2>/dev/null
    windows=$(wc -l < "$root/build/score-$arch.jsonl")
    [ "$windows" -gt 0 ] || { echo "build-deb: scoring $(basename "$scored") gave no window" >&2; exit 1; }
    summary+=("$arch: features of $(basename "$capture") identical to x86-64 ($flows flows); scoring $windows windows of $(basename "$scored") peak RSS $(($(cat "$root/build/rss-$arch") / 1024)) MiB (qemu-user included)")
    step "$arch: purge"
    in_root env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq gatewatch-agent >/dev/null
    if in_root getent passwd gatewatch-agent >/dev/null || [ -e "$root/var/lib/gatewatch-agent" ] \
        || [ -e "$root/etc/gatewatch/agent.toml" ]; then
        echo "build-deb: purging gatewatch-agent left its user, state or configuration behind" >&2
        exit 1
    fi
done

mkdir -p "$outdir"
cp "$root"/build/packages/*.deb "$outdir/"
step "done"
printf '%s\n' "${summary[@]}"
ls -la "$outdir"

#!/usr/bin/env bash
# The whole test suite: formatting, lints, every crate's tests (unit, integration,
# cross-process). Needs root for the live-capture test in network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/gatewatch-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== shell scripts"
maintainer_scripts=(packaging/*/postinst packaging/*/prerm packaging/*/postrm)
for f in scripts/*.sh .ci/run packaging/build-deb.sh; do bash -n "$f"; done
for f in "${maintainer_scripts[@]}"; do sh -n "$f"; done
shellcheck -S warning scripts/*.sh .ci/run packaging/build-deb.sh "${maintainer_scripts[@]}"
echo "== tests"
bash scripts/broker.sh
cargo nextest run --workspace --locked --no-fail-fast

# Checks that need Python packages from PyPI, in a venv outside the clone.
venv="${GATEWATCH_VENV:-/var/cache/gatewatch-venv}"
python_ok=0
if [ -x "$venv/bin/python" ] || python3 -m venv "$venv"; then
    if "$venv/bin/python" -c 'import onnxruntime, numpy, schemathesis, playwright' 2>/dev/null \
        || "$venv/bin/pip" install -q onnxruntime numpy schemathesis playwright; then
        python_ok=1
    fi
fi
bin="$CARGO_TARGET_DIR/debug"
if ((python_ok)); then
    echo "== onnxruntime loads our ONNX export and agrees with the training engine"
    export_dir=$(mktemp -d)
    trap 'rm -rf "$export_dir"' EXIT
    "$bin/gatewatch-models" export --out "$export_dir/model" --reference "$export_dir/model/reference.json"
    "$venv/bin/python" models/scripts/check_onnxruntime.py "$export_dir/model/model.onnx" "$export_dir/model/reference.json"
    echo "== API fuzzing from the OpenAPI document (schemathesis, no 5xx allowed)"
    PATH="$venv/bin:$PATH" bash hub/fuzz-api.sh "$bin/gatewatch-hub" "${GATEWATCH_FUZZ_EXAMPLES:-20}"
    echo "== the web console in a real browser (Playwright driving Debian's chromium)"
    "$venv/bin/python" tests/browser/console_test.py --bin "$bin" \
        --shots "${GATEWATCH_SHOTS:-${TMPDIR:-/tmp}/gatewatch-console-shots}"
else
    echo "!! FAILED: could not install onnxruntime/numpy/schemathesis/playwright with pip: the onnxruntime check, API fuzzing and browser tests cannot run" >&2
    exit 1
fi
echo "== all tests passed"

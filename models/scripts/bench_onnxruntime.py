#!/usr/bin/env python3
"""onnxruntime side of gatewatch-models-bench: single-window latency and batched
throughput on one intra-op thread. Exits 3 with a message if onnxruntime is missing."""
import argparse
import sys
import time

try:
    import numpy as np
    import onnxruntime as ort
except ImportError as e:  # the Rust bench reports this as skipped
    print(f"onnxruntime or numpy not installed: {e}")
    sys.exit(3)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("onnx")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seconds", type=float, default=3.0)
    a = p.parse_args()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(a.onnx, opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    windows = rng.uniform(-2, 2, size=(max(a.batch, 512), 10, 78)).astype(np.float32)

    lat = []
    for i in range(3300):
        w = windows[i % len(windows)][None]
        t = time.perf_counter()
        sess.run(None, {"input": w})
        if i >= 300:
            lat.append(time.perf_counter() - t)
    lat.sort()
    med = lat[len(lat) // 2] * 1e6
    p99 = lat[round((len(lat) - 1) * 0.99)] * 1e6
    print(f"onnxruntime {ort.__version__} single window: median {med:.1f} us, p99 {p99:.1f} us")

    batch = windows[: a.batch]
    sess.run(None, {"input": batch})
    runs = 0
    start = time.perf_counter()
    while time.perf_counter() - start < a.seconds:
        sess.run(None, {"input": batch})
        runs += 1
    rate = runs * a.batch / (time.perf_counter() - start)
    print(f"onnxruntime batched (batch {a.batch}): {rate:.0f} windows/s")


if __name__ == "__main__":
    main()

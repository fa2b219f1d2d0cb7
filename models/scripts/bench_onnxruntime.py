#!/usr/bin/env python3
"""onnxruntime side of gatewatch-models-bench, on one intra-op thread.

The bench alternates rounds of tract and onnxruntime so both see the same machine load; this
process stays up between rounds and answers one command per line on stdin:
  single N        -> "single <median us> <p99 us>" over N one-window runs
  batched S       -> "batched <windows/s>" running batches for S seconds
It first prints "ready <onnxruntime version>", or exits 3 with a message if onnxruntime or
numpy is missing."""
import argparse
import sys
import time

try:
    import numpy as np
    import onnxruntime as ort
except ImportError as e:  # the Rust bench reports this as skipped
    print(f"onnxruntime or numpy not installed: {e}")
    sys.exit(3)


def single(sess, windows, n):
    lat = []
    for i in range(n + n // 10):
        w = windows[i % len(windows)][None]
        t = time.perf_counter()
        sess.run(None, {"input": w})
        if i >= n // 10:  # the first tenth warms up
            lat.append(time.perf_counter() - t)
    lat.sort()
    return lat[len(lat) // 2] * 1e6, lat[round((len(lat) - 1) * 0.99)] * 1e6


def batched(sess, batch, seconds):
    sess.run(None, {"input": batch})
    runs = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        sess.run(None, {"input": batch})
        runs += 1
    return runs * len(batch) / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("onnx")
    p.add_argument("--batch", type=int, default=256)
    a = p.parse_args()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(a.onnx, opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    windows = rng.uniform(-2, 2, size=(max(a.batch, 512), 10, 78)).astype(np.float32)
    print(f"ready {ort.__version__}", flush=True)
    for line in sys.stdin:
        cmd, arg = line.split()
        if cmd == "single":
            med, p99 = single(sess, windows, int(arg))
            print(f"single {med:.3f} {p99:.3f}", flush=True)
        elif cmd == "batched":
            print(f"batched {batched(sess, windows[: a.batch], float(arg)):.1f}", flush=True)
        else:
            print(f"unknown command {cmd}", file=sys.stderr)
            sys.exit(2)


if __name__ == "__main__":
    main()

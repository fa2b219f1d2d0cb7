#!/usr/bin/env python3
"""Checks an exported gatewatch ONNX file in onnxruntime against reference outputs that
`gatewatch-models export --reference FILE` computed with the training engine (candle).

usage: check_onnxruntime.py MODEL.onnx REFERENCE.json [--tolerance 1e-4]
Exit 0 when every output agrees within the tolerance, 1 on a mismatch, 2 on bad input."""
import argparse
import json
import sys

import numpy as np
import onnxruntime as ort


def main():
    p = argparse.ArgumentParser()
    p.add_argument("onnx")
    p.add_argument("reference")
    p.add_argument("--tolerance", type=float, default=1e-4)
    a = p.parse_args()
    with open(a.reference) as f:
        ref = json.load(f)
    x = np.asarray(ref["input"], dtype=np.float32).reshape(ref["shape"])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(a.onnx, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    if names != ["score", "family_probs"]:
        print(f"unexpected outputs {names}")
        return 2
    score, family = sess.run(None, {"input": x})
    # Dynamic batch: the same file must also run one window at a time.
    single = sess.run(None, {"input": x[:1]})[0]
    diffs = {
        "score": float(np.max(np.abs(score[:, 0] - np.asarray(ref["score"], dtype=np.float32)))),
        "family_probs": float(np.max(np.abs(family - np.asarray(ref["family_probs"], dtype=np.float32)))),
        "batch-1 score": float(np.max(np.abs(single[:, 0] - score[:1, 0]))),
    }
    ok = all(d <= a.tolerance for d in diffs.values())
    for k, d in diffs.items():
        print(f"{k}: max |diff| {d:.3g}")
    print(f"onnxruntime {ort.__version__}, opset check on {x.shape[0]} windows: {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""TenSEAL anchor for ckks-bench: CKKS encrypt + serialise of a 50,000-parameter update.

Prints one JSON object per configuration on stdout:
  {"config": "...", "n": N, "encrypt_serialize_ms": median_ms, "bytes": size, "max_err": fresh_error}
"""
import json
import sys
import time

try:
    import numpy as np
    import tenseal as ts
except Exception as exc:  # pragma: no cover - environment dependent
    print(json.dumps({"skip": f"tenseal/numpy unavailable: {exc}"}))
    sys.exit(0)

PARAMS = 50_000
REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 5

CONFIGS = [
    ("tenseal-8192-[60,40,60]-2^40", 8192, [60, 40, 60], 2**40),
    ("tenseal-4096-[60,49]", 4096, [60, 49], 2**40),
]


def main() -> None:
    rng = np.random.default_rng(0)
    values = rng.uniform(-1.0, 1.0, PARAMS)
    for name, n, bits, scale in CONFIGS:
        ctx = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=n, coeff_mod_bit_sizes=bits)
        ctx.global_scale = scale
        slots = n // 2
        chunks = [values[i : i + slots].tolist() for i in range(0, PARAMS, slots)]
        times = []
        size = 0
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            blobs = [ts.ckks_vector(ctx, c).serialize() for c in chunks]
            times.append((time.perf_counter() - t0) * 1000.0)
            size = sum(len(b) for b in blobs)
        times.sort()
        # Fresh-encryption precision, for comparison with ours (same vector, decrypted).
        err = max(
            float(np.max(np.abs(np.array(ts.ckks_vector(ctx, c).decrypt()) - np.array(c)))) for c in chunks
        )
        print(
            json.dumps(
                {"config": name, "n": n, "encrypt_serialize_ms": times[len(times) // 2], "bytes": size, "max_err": err}
            )
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()

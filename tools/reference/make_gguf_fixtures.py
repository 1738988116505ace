#!/usr/bin/env python3
"""GGUF dequantisation fixtures (tests/fixtures/gguf), made by the `gguf` Python package.

    ~/.cache/zimage-ref-venv/bin/python tools/reference/make_gguf_fixtures.py --out tests/fixtures/gguf

Writes only its own files (never the other fixtures):
  quants.gguf            one tensor per (type, case), written by gguf.GGUFWriter:
                           q.<TYPE>.values  random normal values quantized by gguf.quants.quantize
                                            (the types the package can quantize: F32, F16, BF16,
                                            Q8_0, Q5_0, Q4_0)
                           q.<TYPE>.bytes   random block bytes (every type, K-quants included: the
                                            package has no K-quant quantizer; random bytes also
                                            reach every bit pattern of the scales)
                         plus metadata of each value type (the reader's tests read them back).
  quants_ref.safetensors the same names, float32, from gguf.quants.dequantize (the reference).
  MANIFEST.json          versions and sha256 of both files.
"""
import argparse
import hashlib
import json
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from safetensors.numpy import save_file

TYPES = ["F32", "F16", "BF16", "Q8_0", "Q5_0", "Q4_0", "Q6_K", "Q5_K", "Q4_K", "Q3_K", "Q2_K"]
QUANTIZABLE = {"F32", "F16", "BF16", "Q8_0", "Q5_0", "Q4_0"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(15)
    w = gguf.GGUFWriter(os.path.join(args.out, "quants.gguf"), arch="zimage-test")
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -7)
    w.add_float32("test.f32", 0.5)
    w.add_bool("test.bool", True)
    w.add_string("test.str", "hello gguf")
    w.add_array("test.strs", ["a", "bc", ""])
    w.add_array("test.ints", [1, 2, 3])
    ref = {}
    for name in TYPES:
        qt = T[name]
        block, tsize = gguf.GGML_QUANT_SIZES[qt]
        # rows x 256 elements (a multiple of every block size); 3-D for one case to check the order
        shape = (3, 2, 256) if name == "Q4_K" else (2, 256)
        if name in QUANTIZABLE:
            x = (rng.standard_normal(shape) * rng.uniform(0.01, 4.0, size=shape[:-1] + (1,))).astype(np.float32)
            x.reshape(-1)[:3] = [0.0, 1e-9, -65504.0] if name != "F32" else [0.0, 1e-40, 3e38]
            data = gguf.quants.quantize(x, qt)
            w.add_tensor(f"q.{name}.values", data, raw_dtype=qt)
            ref[f"q.{name}.values"] = np.ascontiguousarray(gguf.quants.dequantize(data, qt), dtype=np.float32)
        n_blocks = int(np.prod(shape)) // block
        raw = rng.integers(0, 256, size=n_blocks * tsize, dtype=np.uint8)
        raw = raw.reshape(shape[:-1] + (shape[-1] // block * tsize,))
        w.add_tensor(f"q.{name}.bytes", raw, raw_dtype=qt)
        ref[f"q.{name}.bytes"] = np.ascontiguousarray(gguf.quants.dequantize(raw, qt), dtype=np.float32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    save_file(ref, os.path.join(args.out, "quants_ref.safetensors"))
    man = {"generator": "tools/reference/make_gguf_fixtures.py",
           "versions": {"gguf": gguf.__version__ if hasattr(gguf, "__version__") else "0.19.0",
                        "numpy": np.__version__},
           "files": {}}
    for f in ["quants.gguf", "quants_ref.safetensors"]:
        with open(os.path.join(args.out, f), "rb") as fh:
            man["files"][f] = hashlib.sha256(fh.read()).hexdigest()
    with open(os.path.join(args.out, "MANIFEST.json"), "w") as fh:
        json.dump(man, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()

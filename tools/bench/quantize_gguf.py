#!/usr/bin/env python3
"""Writes a Z-Image transformer's weights as a GGUF file with its linear weights quantized, for
bench.py --quant (run it with the reference venv's python: numpy, safetensors, gguf).

  python tools/bench/quantize_gguf.py --model /work/models/full-l2 --type Q8_0 --out t-q8_0.gguf

Every 2-D `.weight` but the pad tokens whose input width is a whole number of blocks becomes TYPE
(under diffusers' names, as zimage --transformer reads them); the rest is stored as BF16.
Q8_0 comes from gguf.quants.quantize. The gguf package has no K-quant quantizer, so Q4_K is
quantized here: per sub-block of 32 the range [min(0, min x), max x] in 15 steps, the sub-block
scales and mins as 6-bit multiples of the super-block's fp16 d and dmin (ggml's layout; not ggml's
iterative search for the best scales, so its error is somewhat larger than llama.cpp's Q4_K).
The result is checked: dequantized with gguf.quants.dequantize, each tensor's rel-L2 error is
printed and must stay below 0.1.
"""
import argparse
import glob
import json
import os
import sys

import numpy as np


def q4_k(x):
    """x: [n, 256k] float32 -> Q4_K bytes (ggml block_q4_K: d, dmin f16, scales[12], qs[128])."""
    sb = x.reshape(-1, 8, 32).astype(np.float32)
    lo = np.minimum(sb.min(axis=2), 0.0)
    hi = sb.max(axis=2)
    scale = (hi - lo) / 15.0
    mins = -lo
    d = (scale.max(axis=1) / 63.0).astype(np.float16)
    dmin = (mins.max(axis=1) / 63.0).astype(np.float16)
    df = d.astype(np.float32)[:, None]
    dmf = dmin.astype(np.float32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(df > 0, np.clip(np.rint(scale / df), 0, 63), 0).astype(np.uint8)
        mn = np.where(dmf > 0, np.clip(np.rint(mins / dmf), 0, 63), 0).astype(np.uint8)
        es = (df * sc)[:, :, None]
        em = (dmf * mn)[:, :, None]
        q = np.where(es > 0, np.clip(np.rint((sb + em) / es), 0, 15), 0).astype(np.uint8)
    nb = sb.shape[0]
    s = np.zeros((nb, 12), np.uint8)
    s[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
    s[:, 4:8] = mn[:, 0:4] | ((mn[:, 4:8] >> 4) << 6)
    s[:, 8:12] = (sc[:, 4:8] & 0xF) | ((mn[:, 4:8] & 0xF) << 4)
    qs = np.zeros((nb, 4, 32), np.uint8)
    for j in range(8):
        qs[:, j // 2, :] |= q[:, j, :] << (4 * (j % 2))
    out = np.concatenate([d.view(np.uint8).reshape(nb, 2), dmin.view(np.uint8).reshape(nb, 2), s,
                          qs.reshape(nb, 128)], axis=1)
    return out.reshape(x.shape[0], -1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="diffusers Z-Image folder")
    ap.add_argument("--type", required=True, choices=["Q8_0", "Q4_K"])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import gguf
    import torch  # the folder's weights are bf16: numpy has no bfloat16
    from safetensors.torch import load_file

    qt = gguf.GGMLQuantizationType[args.type]
    block = 32 if args.type == "Q8_0" else 256
    files = sorted(glob.glob(os.path.join(args.model, "transformer", "*.safetensors")))
    if not files:
        raise SystemExit(f"[quantize_gguf] no transformer/*.safetensors in {args.model}")
    w = gguf.GGUFWriter(args.out, "zimage")
    worst = 0.0
    nq = 0
    for f in files:
        for name, t in load_file(f).items():
            x = t.float().numpy()
            if x.ndim == 2 and name.endswith(".weight") and "pad_token" not in name and x.shape[1] % block == 0:
                data = gguf.quants.quantize(x, qt) if args.type == "Q8_0" else q4_k(x)
                back = gguf.quants.dequantize(data, qt).reshape(x.shape)
                err = float(np.linalg.norm(back - x) / max(np.linalg.norm(x), 1e-30))
                worst = max(worst, err)
                nq += 1
                w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qt)
            else:
                bf = t.to(torch.bfloat16).view(torch.int16).numpy()
                w.add_tensor(name, bf, raw_shape=bf.shape, raw_dtype=gguf.GGMLQuantizationType.BF16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(json.dumps({"type": args.type, "quantized_tensors": nq, "worst_weight_rel_l2": worst}))
    if worst > 0.1:
        raise SystemExit(f"[quantize_gguf] weight error {worst:.3g} > 0.1: the quantizer is broken")


if __name__ == "__main__":
    sys.exit(main())

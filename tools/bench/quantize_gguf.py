#!/usr/bin/env python3
"""Writes Z-Image weights as GGUF files with their linear weights quantized, in the key layouts
both zimage.cpp and stable-diffusion.cpp read (run it with the reference venv's python: numpy,
safetensors, gguf, torch).

  # transformer, diffusers names (what bench.py --quant writes), or the original / ComfyUI names
  # (fused attention.qkv, attention.out, q_norm/k_norm, x_embedder., final_layer.) that
  # stable-diffusion.cpp's --diffusion-model and zimage's --transformer both read
  python tools/bench/quantize_gguf.py --model /work/models/full-l2 --type Q8_0 --out t-q8_0.gguf
  python tools/bench/quantize_gguf.py --model /work/models/full-l2 --type Q4_K --layout original --out t-q4_k.gguf
  # the Qwen3 text encoder in llama.cpp's names (token_embd, blk.N.attn_q, ...: zimage's
  # --text-encoder and stable-diffusion.cpp's --llm), from the folder's text_encoder/
  python tools/bench/quantize_gguf.py --model /work/models/full-l2 --component text_encoder --type Q4_K_M --out te.gguf
  # or a random full-width Qwen3-4B (36 layers) written straight to GGUF (no 8 GB bf16 folder first)
  python tools/bench/quantize_gguf.py --random-text-encoder 36 --type Q8_0 --out te36-q8_0.gguf

Types:
- Q8_0: every 2-D weight whose input width is a whole number of 32-blocks (gguf.quants.quantize).
- Q4_K: every 2-D weight whose width is a whole number of 256-blocks. The gguf package has no
  K-quant quantizer, so Q4_K is quantized here: per sub-block of 32 the range [min(0, min x), max x]
  in 15 steps, the sub-block scales and mins as 6-bit multiples of the super-block's fp16 d and dmin
  (ggml's block layout; not ggml's iterative search for the best scales, so its error is somewhat
  larger than llama.cpp's Q4_K).
- Q4_K_M (text encoder): llama.cpp's Q4_K_M type choice for a Qwen3 with tied embeddings: Q4_K
  everywhere but token_embd (used as the output head: Q6_K) and attn_v / ffn_down of the layers
  llama.cpp's use_more_bits picks (the first and last eighth, and every third between: Q6_K). Q6_K is
  quantized here too (16 sub-blocks of 16, int8 scales of an fp16 d, 6-bit values: ggml's layout,
  scale = max|x| / 31 per sub-block rather than ggml's search). What differs from llama.cpp's file:
  these scale choices (slightly larger error), and no importance matrix.
The rest is stored as BF16 (the transformer's other linear weights) or F32 (biases, norms, pad tokens:
as llama.cpp does; diffusers' GGUF loader takes only F32/F16 tensors as plain parameters).
Tensors are quantized and written one at a time (the embedding in row chunks), so the memory used
stays near one tensor's size whatever the model's. Each quantized tensor is checked: its first 64 rows,
dequantized with gguf.quants.dequantize, must have a rel-L2 error below 0.1 (the worst is printed).
"""
import argparse
import glob
import json
import os
import sys

import numpy as np


# ---------------------------------------------------------------------------------------------
# Quantizers the gguf package lacks (ggml's block layouts; checked against gguf's dequantize).
# ---------------------------------------------------------------------------------------------
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


def q6_k(x):
    """x: [n, 256k] float32 -> Q6_K bytes (ggml block_q6_K: ql[128], qh[64], int8 scales[16], d f16).
    Value j of a block is sub-block j // 16; q = rint(x / (d * scale)) + 32 in [0, 63]."""
    sb = x.reshape(-1, 16, 16).astype(np.float32)
    nb = sb.shape[0]
    s = np.abs(sb).max(axis=2) / 31.0
    d = (s.max(axis=1) / 127.0).astype(np.float16)
    df = d.astype(np.float32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(df > 0, np.clip(np.rint(s / df), -128, 127), 0).astype(np.int8)
        es = (df * sc).reshape(nb, 16, 1)
        q = np.where(es != 0, np.clip(np.rint(sb / es), -32, 31), 0)
    q = (q + 32).astype(np.uint8).reshape(nb, 2, 4, 32)  # [block, half n, quarter k, l]
    ql = np.zeros((nb, 2, 64), np.uint8)
    ql[:, :, 0:32] = (q[:, :, 0] & 0xF) | ((q[:, :, 2] & 0xF) << 4)
    ql[:, :, 32:64] = (q[:, :, 1] & 0xF) | ((q[:, :, 3] & 0xF) << 4)
    qh = (q[:, :, 0] >> 4) | ((q[:, :, 1] >> 4) << 2) | ((q[:, :, 2] >> 4) << 4) | ((q[:, :, 3] >> 4) << 6)
    out = np.concatenate([ql.reshape(nb, 128), qh.reshape(nb, 64), sc.view(np.uint8), d.view(np.uint8).reshape(nb, 2)],
                         axis=1)
    return out.reshape(x.shape[0], -1)


def quantize(x, qt):
    import gguf
    T = gguf.GGMLQuantizationType
    if qt == T.Q4_K:
        return q4_k(x)
    if qt == T.Q6_K:
        return q6_k(x)
    return gguf.quants.quantize(x, qt)


BLOCK = {"Q8_0": 32, "Q4_K": 256, "Q6_K": 256}


# ---------------------------------------------------------------------------------------------
# Tensor plans: (name in the file, shape, ggml type name, rows(r0, r1) -> float32 [r1 - r0, ...]).
# ---------------------------------------------------------------------------------------------
def st_source(files):
    """name -> (shape, reader(r0, r1)) over a folder's safetensors shards (read lazily)."""
    from safetensors import safe_open
    out = {}
    for f in files:
        with safe_open(f, framework="pt") as h:
            for name in h.keys():
                shape = list(h.get_slice(name).get_shape())

                def read(r0, r1, f=f, name=name, nd=len(shape)):
                    with safe_open(f, framework="pt") as g:
                        s = g.get_slice(name)
                        t = s[r0:r1] if nd >= 1 else g.get_tensor(name)
                        return t.float().numpy()
                out[name] = (shape, read)
    return out


def transformer_plan(src, qtype, layout, prefix):
    plan = []
    block = BLOCK[qtype]

    def kind(name, shape):
        linear = len(shape) == 2 and name.endswith(".weight") and "pad_token" not in name
        if linear and shape[1] % block == 0:
            return qtype
        # other linear weights BF16; biases, norms and pad tokens F32 (as llama.cpp and city96's
        # files: diffusers' GGUF loader reads only F32/F16 tensors as plain parameters)
        return "BF16" if linear else "F32"
    for name in sorted(src):
        shape, read = src[name]
        if layout == "diffusers":
            plan.append((name, shape, kind(name, shape), read))
            continue
        # the inverse of diffusers' convert_z_image_transformer_checkpoint_to_diffusers
        if ".attention.to_k." in name or ".attention.to_v." in name:
            continue
        n = name
        for a, b in (("all_final_layer.2-1.", "final_layer."), ("all_x_embedder.2-1.", "x_embedder."),
                     (".attention.to_out.0.", ".attention.out."), (".attention.norm_q.", ".attention.q_norm."),
                     (".attention.norm_k.", ".attention.k_norm.")):
            n = n.replace(a, b)
        if ".attention.to_q." in name:
            parts = [src[name.replace(".to_q.", x)] for x in (".to_q.", ".to_k.", ".to_v.")]
            rows = [p[0][0] for p in parts]

            def read(r0, r1, parts=parts, rows=rows):
                out, base = [], 0
                for (shape, rd), n_rows in zip(parts, rows):
                    a, b = max(r0 - base, 0), min(r1 - base, n_rows)
                    if a < b:
                        out.append(rd(a, b))
                    base += n_rows
                return np.concatenate(out, axis=0)
            shape = [sum(rows)] + list(parts[0][0][1:])
            n = n.replace(".attention.to_q.", ".attention.qkv.")
            plan.append((prefix + n, shape, kind(n, shape), read))
            continue
        plan.append((prefix + n, shape, kind(n, shape), read))
    return plan


LLAMA_CPP_BLK = [("input_layernorm.weight", "attn_norm.weight"), ("post_attention_layernorm.weight", "ffn_norm.weight"),
                 ("self_attn.q_proj.weight", "attn_q.weight"), ("self_attn.k_proj.weight", "attn_k.weight"),
                 ("self_attn.v_proj.weight", "attn_v.weight"), ("self_attn.o_proj.weight", "attn_output.weight"),
                 ("self_attn.q_norm.weight", "attn_q_norm.weight"), ("self_attn.k_norm.weight", "attn_k_norm.weight"),
                 ("mlp.gate_proj.weight", "ffn_gate.weight"), ("mlp.up_proj.weight", "ffn_up.weight"),
                 ("mlp.down_proj.weight", "ffn_down.weight")]


def use_more_bits(i, n):
    """llama.cpp's llama-quant.cpp use_more_bits: the layers Q4_K_M gives Q6_K for attn_v/ffn_down."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def llama_cpp_name(name):
    """transformers' Qwen3Model / Qwen3ForCausalLM name -> llama.cpp's (None: not written)."""
    if name.startswith("model."):
        name = name[len("model."):]
    if name == "embed_tokens.weight":
        return "token_embd.weight"
    if name == "norm.weight":
        return "output_norm.weight"
    if name.startswith("layers."):
        i, rest = name[len("layers."):].split(".", 1)
        for a, b in LLAMA_CPP_BLK:
            if rest == a:
                return f"blk.{i}.{b}"
        raise SystemExit(f"[quantize_gguf] text encoder tensor '{name}' has no llama.cpp name")
    if name == "lm_head.weight":
        return None
    raise SystemExit(f"[quantize_gguf] text encoder tensor '{name}' has no llama.cpp name")


def text_encoder_plan(src, qtype, n_layers):
    plan = []
    for name in sorted(src, key=lambda n: (n.count("layers."), n)):
        shape, read = src[name]
        ln = llama_cpp_name(name)
        if ln is None:
            continue
        t = "F32"
        if len(shape) == 2:
            if qtype == "Q4_K_M":
                t = "Q4_K"
                if ln == "token_embd.weight":
                    t = "Q6_K"  # tied embeddings: llama.cpp quantizes it as the output head
                elif ln.endswith((".attn_v.weight", ".ffn_down.weight")) and use_more_bits(int(ln.split(".")[1]), n_layers):
                    t = "Q6_K"
            else:
                t = qtype
            if shape[1] % BLOCK[t] != 0:
                t = "F32"
        plan.append((ln, shape, t, read))
    return plan


def random_text_encoder_source(layers, seed=1):
    """A full-width Qwen3-4B (hidden 2560, 32/8 heads of 128, MLP 9728, vocab 151936) with random
    weights drawn as make_model.py's randomize() draws them (norms 1 + 0.05 N, matrices
    N * min(0.02, fan_in^-0.5)); each tensor (each row chunk of the embedding) has its own seed."""
    H, I, D, Hq, Hkv, V = 2560, 9728, 128, 32, 8, 151936
    shapes = {"embed_tokens.weight": [V, H], "norm.weight": [H]}
    for i in range(layers):
        p = f"layers.{i}."
        shapes.update({p + "input_layernorm.weight": [H], p + "post_attention_layernorm.weight": [H],
                       p + "self_attn.q_proj.weight": [Hq * D, H], p + "self_attn.k_proj.weight": [Hkv * D, H],
                       p + "self_attn.v_proj.weight": [Hkv * D, H], p + "self_attn.o_proj.weight": [H, Hq * D],
                       p + "self_attn.q_norm.weight": [D], p + "self_attn.k_norm.weight": [D],
                       p + "mlp.gate_proj.weight": [I, H], p + "mlp.up_proj.weight": [I, H],
                       p + "mlp.down_proj.weight": [H, I]})
    src = {}
    for k, (name, shape) in enumerate(sorted(shapes.items())):
        def read(r0, r1, k=k, shape=shape):
            g = np.random.default_rng([seed, k, r0])
            if len(shape) == 1:
                return (1.0 + 0.05 * g.standard_normal(shape[0], dtype=np.float32))[r0:r1]
            return g.standard_normal((r1 - r0, shape[1]), dtype=np.float32) * np.float32(min(0.02, shape[1] ** -0.5))
        src[name] = (shape, read)
    return src


# ---------------------------------------------------------------------------------------------
# Streaming writer: tensor infos first, then each tensor's data quantized in row chunks.
# ---------------------------------------------------------------------------------------------
def random_blocks(qt, rows, cols, std, rng):
    """rows x cols values of block type qt as random bytes with the scale fields set so that the
    dequantized values have about `std` as standard deviation and mean 0 (no quantization work:
    for files whose values do not matter, e.g. memory and speed runs of a full-size model)."""
    import gguf
    T = gguf.GGMLQuantizationType
    block, size = gguf.GGML_QUANT_SIZES[qt]
    b = rng.integers(0, 256, size=(rows * (cols // block), size), dtype=np.uint8)
    def f16(v):
        return np.full((b.shape[0], 2), np.frombuffer(np.float16(v).tobytes(), np.uint8))
    if qt == T.Q8_0:    # d * q, q int8 uniform (std 73.9)
        b[:, 0:2] = f16(std / 73.9)
    elif qt == T.Q4_K:  # d * sc * q - dmin * m, sc and m 6-bit, q 4-bit uniform (std of sc * q ~ 218)
        d = std / 218.0
        b[:, 0:2] = f16(d)
        b[:, 2:4] = f16(7.5 * d)
    elif qt == T.Q6_K:  # d * sc * (q - 32), sc int8 (std ~74), q 6-bit (std ~18.5)
        b[:, 208:210] = f16(std / 1365.0)
    else:
        raise SystemExit(f"[quantize_gguf] no random blocks for {qt.name}")
    return b.reshape(rows, -1)


def write(out, arch, plan, kv=None, chunk_bytes=64 << 20, random=False):
    import gguf
    T = gguf.GGMLQuantizationType
    w = gguf.GGUFWriter(out, arch)
    for k, v in (kv or {}).items():
        (w.add_uint32 if isinstance(v, int) else w.add_float32 if isinstance(v, float) else w.add_string)(k, v)
    nbytes = {}
    for name, shape, t, _ in plan:
        qt = T[t]
        if t in ("BF16", "F32"):
            nb = int(np.prod(shape)) * (2 if t == "BF16" else 4)
            w.add_tensor_info(name, shape, np.dtype(np.int16 if t == "BF16" else np.float32), nb,
                              raw_dtype=qt if t == "BF16" else None)
        else:
            bshape = gguf.quant_shape_to_byte_shape(shape, qt)
            nb = int(np.prod(bshape))
            w.add_tensor_info(name, bshape, np.dtype(np.uint8), nb, raw_dtype=qt)
        nbytes[name] = nb
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    fout = w.fout[0]
    w.write_padding(fout, fout.tell())
    import torch
    worst, counts = 0.0, {}
    for name, shape, t, read in plan:
        qt = T[t]
        rows = shape[0] if len(shape) >= 1 else 1
        row_bytes = 4 * int(np.prod(shape[1:])) if len(shape) > 1 else 4 * rows
        step = rows if len(shape) == 1 else max(1, chunk_bytes // max(row_bytes, 1))
        written, err2, ref2 = 0, 0.0, 0.0
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            if random and t not in ("F32", "BF16"):  # the values are not used: no read
                x = np.empty((r1 - r0, shape[1]), np.float32)
            else:
                x = np.ascontiguousarray(read(r0, r1), dtype=np.float32)
            if t == "F32":
                data = x
            elif t == "BF16":
                data = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy()
            elif random:
                data = random_blocks(qt, x.shape[0], x.shape[1], min(0.02, x.shape[1] ** -0.5),
                                     np.random.default_rng([len(name), r0, sum(name.encode())]))
            else:
                data = quantize(x, qt)
                if r0 == 0:  # the check: the first chunk's first 64 rows, dequantized by the gguf package
                    n = min(64, x.shape[0])
                    back = gguf.quants.dequantize(data[:n], qt).reshape(x[:n].shape)
                    err2 += float(np.square(back - x[:n], dtype=np.float64).sum())
                    ref2 += float(np.square(x[:n], dtype=np.float64).sum())
            fout.write(np.ascontiguousarray(data).tobytes())
            written += data.nbytes
        if written != nbytes[name]:
            raise SystemExit(f"[quantize_gguf] {name}: wrote {written} bytes, its info says {nbytes[name]}")
        w.write_padding(fout, written)
        counts[t] = counts.get(t, 0) + 1
        if ref2 > 0:
            worst = max(worst, (err2 / ref2) ** 0.5)
    w.close()
    return worst, counts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="diffusers Z-Image folder")
    ap.add_argument("--component", choices=["transformer", "text_encoder"], default="transformer")
    ap.add_argument("--random-text-encoder", type=int, metavar="LAYERS",
                    help="write a random full-width Qwen3 text encoder of LAYERS layers (no --model)")
    ap.add_argument("--type", required=True, choices=["Q8_0", "Q4_K", "Q4_K_M"],
                    help="Q4_K_M: llama.cpp's Q4_K/Q6_K mix (text encoder only)")
    ap.add_argument("--layout", choices=["diffusers", "original"], default="diffusers",
                    help="transformer key names: diffusers', or the original / ComfyUI ones (stable-diffusion.cpp)")
    ap.add_argument("--prefix", default="", help="prefix of every --layout original name (e.g. model.diffusion_model.)")
    ap.add_argument("--random-blocks", action="store_true",
                    help="quantized tensors get random well-scaled blocks instead of the quantized values (fast; "
                    "for memory/speed runs of full-size models whose values do not matter)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    te = args.random_text_encoder is not None or args.component == "text_encoder"
    if args.random_text_encoder is not None:
        if args.model or args.random_text_encoder < 1:
            ap.error("--random-text-encoder takes a layer count >= 1 and no --model")
        layers = args.random_text_encoder
        src = random_text_encoder_source(layers)
    else:
        if not args.model:
            ap.error("--model is needed (or --random-text-encoder)")
        comp = "text_encoder" if te else "transformer"
        files = sorted(glob.glob(os.path.join(args.model, comp, "*.safetensors")))
        if not files:
            raise SystemExit(f"[quantize_gguf] no {comp}/*.safetensors in {args.model}")
        src = st_source(files)
        if te:
            layers = json.load(open(os.path.join(args.model, comp, "config.json")))["num_hidden_layers"]
    if te:
        if args.layout != "diffusers" or args.prefix:
            ap.error("--layout/--prefix are for the transformer (the text encoder is written in llama.cpp's names)")
        plan = text_encoder_plan(src, args.type, layers)
        kv = {"qwen3.block_count": layers, "qwen3.embedding_length": 2560}
        worst, counts = write(args.out, "qwen3", plan, kv, random=args.random_blocks)
    else:
        if args.type == "Q4_K_M":
            ap.error("Q4_K_M is the text encoder's llama.cpp mix; the transformer takes Q8_0 or Q4_K")
        plan = transformer_plan(src, args.type, args.layout, args.prefix)
        worst, counts = write(args.out, "zimage", plan, random=args.random_blocks)
    print(json.dumps({"type": args.type, "component": "text_encoder" if te else "transformer",
                      "layout": "llama.cpp" if te else args.layout, "tensors_by_type": counts,
                      "bytes": os.path.getsize(args.out), "random_blocks": args.random_blocks,
                      "worst_weight_rel_l2": None if args.random_blocks else worst}))
    if worst > 0.1:
        raise SystemExit(f"[quantize_gguf] weight error {worst:.3g} > 0.1: the quantizer is broken")


if __name__ == "__main__":
    sys.exit(main())

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

    ~/.cache/zimage-ref-venv/bin/python tools/reference/make_gguf_fixtures.py --diffusers-parity \
        --out tests/fixtures/ref/gguf

makes only the files of diffusers' GGUF path as a pipeline reference (nothing else is touched):
  tiny-bf16_q8_0_q4_k.gguf  the tiny-bf16 transformer in the original / ComfyUI key layout (fused
                            attention.qkv, x_embedder, final_layer, q_norm/k_norm, attention.out) written
                            by gguf.GGUFWriter: every linear weight whose rows are whole 32-blocks
                            quantized to Q8_0 by gguf.quants.quantize, the timestep embedder's two
                            linears (256 and 1024 columns) as Q4_K blocks (random codes with small
                            scales: the package has no K-quant quantizer), the other linear weights
                            BF16 (the fixture's values), the rest F32
  <case>_latents.safetensors final latents of a 2-step 32x32 run (guidance 0, seed 42, the fp8
                            fixtures' call) of ZImagePipeline on tiny-bf16 with
                            ZImageTransformer2DModel.from_single_file(gguf, config=tiny-bf16,
                            subfolder="transformer", quantization_config=GGUFQuantizationConfig(
                            compute_dtype=D), torch_dtype=D), D = float32 (gguf_fp32) and bfloat16 (gguf_bf16);
                            exact_fp32: the same weights dequantized by gguf.quants.dequantize, loaded dense
                            (diffusers' GGUF path dequantizes into float16 first: dequantize_gguf_tensor
                            passes dtype=None)
  MANIFEST.json             versions, the call, the cases and sha256 of every file.
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


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PARITY_MODEL = os.path.join(ROOT, "tests/fixtures/models/tiny-bf16")
PARITY_GGUF = "tiny-bf16_q8_0_q4_k.gguf"
PARITY_CALL = dict(prompt="a photo of a cat", height=32, width=32, num_inference_steps=2, guidance_scale=0.0, seed=42)


def sha256(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def to_original_layout(sd):
    """diffusers names -> the original / ComfyUI layout (the inverse of diffusers' conversion)."""
    import torch
    out = {}
    for k, v in sd.items():
        if ".attention.to_k." in k or ".attention.to_v." in k:
            continue
        if ".attention.to_q.weight" in k:
            p = k.replace(".attention.to_q.weight", "")
            out[p + ".attention.qkv.weight"] = torch.cat(
                [sd[p + ".attention.to_q.weight"], sd[p + ".attention.to_k.weight"], sd[p + ".attention.to_v.weight"]], 0)
            continue
        n = (k.replace("all_final_layer.2-1.", "final_layer.").replace("all_x_embedder.2-1.", "x_embedder.")
             .replace(".attention.to_out.0.", ".attention.out.").replace(".attention.norm_k.", ".attention.k_norm.")
             .replace(".attention.norm_q.", ".attention.q_norm."))
        out[n] = v
    return out


def random_q4_k(rows, cols, rng):
    """Q4_K blocks (d, dmin f16; 12 bytes of 6-bit scales/mins; 128 bytes of 4-bit codes): random codes
    and scales, d and dmin small enough for values within about +-0.06."""
    block, tsize = gguf.GGML_QUANT_SIZES[T.Q4_K]
    raw = rng.integers(0, 256, size=(rows, cols // block, tsize), dtype=np.uint8)
    raw[:, :, 0:2] = np.frombuffer(np.float16(0.06 / (63 * 15)).tobytes(), dtype=np.uint8)
    raw[:, :, 2:4] = np.frombuffer(np.float16(0.03 / 63).tobytes(), dtype=np.uint8)
    return raw.reshape(rows, cols // block * tsize)


def diffusers_parity(out_dir):
    import torch
    import diffusers
    from diffusers import GGUFQuantizationConfig, ZImagePipeline, ZImageTransformer2DModel
    from safetensors.torch import load_file, save_file as save_torch

    os.makedirs(out_dir, exist_ok=True)
    sd = load_file(os.path.join(PARITY_MODEL, "transformer/diffusion_pytorch_model.safetensors"))
    rng = np.random.default_rng(1515)
    path = os.path.join(out_dir, PARITY_GGUF)
    w = gguf.GGUFWriter(path, arch="zimage")
    types = {}
    for name, t in sorted(to_original_layout(sd).items()):
        x = t.float().numpy()
        if x.ndim == 2 and name.endswith(".weight") and name.startswith("t_embedder.mlp.") and x.shape[1] % 256 == 0:
            w.add_tensor(name, random_q4_k(x.shape[0], x.shape[1], rng), raw_dtype=T.Q4_K)
            types[name] = "Q4_K"
        elif x.ndim == 2 and name.endswith(".weight") and x.shape[1] % 32 == 0:
            w.add_tensor(name, gguf.quants.quantize(x, T.Q8_0), raw_dtype=T.Q8_0)
            types[name] = "Q8_0"
        elif x.ndim == 2 and name.endswith(".weight"):
            w.add_tensor(name, gguf.quants.quantize(x, T.BF16), raw_dtype=T.BF16)
            types[name] = "BF16"
        else:
            w.add_tensor(name, np.ascontiguousarray(x, dtype=np.float32))
            types[name] = "F32"
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    c = PARITY_CALL
    man = dict(generator="tools/reference/make_gguf_fixtures.py --diffusers-parity", model="tiny-bf16", gguf=PARITY_GGUF,
               types={k: sum(1 for v in types.values() if v == k) for k in sorted(set(types.values()))},
               **c, versions=dict(torch=torch.__version__, diffusers=diffusers.__version__, gguf="0.19.0"),
               cases=[], files={})
    # The same weights dequantized by gguf.quants.dequantize (float32, exact), as a dense file: diffusers'
    # GGUF path dequantizes in float16 (dequantize_gguf_tensor passes dtype=None), so its float32 run
    # sees every weight rounded to float16.
    dense = {}
    for t in gguf.GGUFReader(path).tensors:
        dense[t.name] = torch.from_numpy(np.ascontiguousarray(
            gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32))
    dense_path = os.path.join(out_dir, "dense.tmp.safetensors")
    save_torch(dense, dense_path)
    runs = [("gguf_fp32", "fp32", torch.float32, "diffusers_gguf"), ("gguf_bf16", "bf16", torch.bfloat16, "diffusers_gguf"),
            ("exact_fp32", "fp32", torch.float32, "exact_dequant")]
    for cname, dname, dtype, kind in runs:
        if kind == "diffusers_gguf":
            tr = ZImageTransformer2DModel.from_single_file(
                path, config=PARITY_MODEL, subfolder="transformer", local_files_only=True, torch_dtype=dtype,
                quantization_config=GGUFQuantizationConfig(compute_dtype=dtype))
        else:
            tr = ZImageTransformer2DModel.from_single_file(
                dense_path, config=PARITY_MODEL, subfolder="transformer", local_files_only=True, torch_dtype=dtype)
        pipe = ZImagePipeline.from_pretrained(PARITY_MODEL, transformer=tr, torch_dtype=dtype)
        captured = {}

        def cb(p, i, t, kw):
            captured["latents"] = kw["latents"].detach().float().clone()
            return {}

        with torch.no_grad():
            pipe(prompt=c["prompt"], height=c["height"], width=c["width"], num_inference_steps=c["num_inference_steps"],
                 guidance_scale=c["guidance_scale"], generator=torch.Generator("cpu").manual_seed(c["seed"]),
                 output_type="latent", callback_on_step_end=cb, callback_on_step_end_tensor_inputs=["latents"])
        f = f"{cname}_latents.safetensors"
        save_torch({"latents": captured["latents"].contiguous()}, os.path.join(out_dir, f))
        man["cases"].append(dict(name=cname, dtype=dname, kind=kind, latents=f))
    os.remove(dense_path)
    for f in sorted(os.listdir(out_dir)):
        if f != "MANIFEST.json":
            man["files"][f] = sha256(os.path.join(out_dir, f))
    with open(os.path.join(out_dir, "MANIFEST.json"), "w") as fh:
        json.dump(man, fh, indent=1)
        fh.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--diffusers-parity", action="store_true",
                    help="make only the diffusers GGUF-path pipeline reference (tests/fixtures/ref/gguf)")
    args = ap.parse_args()
    if args.diffusers_parity:
        diffusers_parity(args.out)
        return
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

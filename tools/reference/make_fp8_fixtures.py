#!/usr/bin/env python3
"""fp8 (float8_e4m3fn) fixtures (tests/fixtures/fp8), made by torch and diffusers.

    ~/.cache/zimage-ref-venv/bin/python tools/reference/make_fp8_fixtures.py --out tests/fixtures/fp8

Writes only its own files (never the other fixtures):
  codes.safetensors           "codes": all 256 F8_E4M3 codes; "f32": torch's codes.to(torch.float32)
  transformer_fp8.safetensors the tiny-bf16 transformer, every tensor .to(torch.float8_e4m3fn), in
                              the original / ComfyUI layout (model.diffusion_model. prefix, fused
                              attention.qkv, attention.out, q_norm/k_norm, x_embedder, final_layer):
                              the inverse of diffusers' convert_z_image_transformer_checkpoint_to_diffusers,
                              checked by loading it back with from_single_file
  transformer_fp8_scaled.safetensors
                              the same weights in diffusers' layout; the linear weights fp8 with a
                              scale: even layers' per tensor (ComfyUI's `<layer>.scale_weight`, one
                              float32, plus its `scale_input` and the `scaled_fp8` marker), the rest per
                              row (diffusers' fp8r `<layer>.weight_scale` [N], from diffusers'
                              quantize_fp8r); norms, biases, embedders' other tensors stay bfloat16
  <case>_latents.safetensors  final latents of a 2-step 32x32 run (guidance 0, seed 42) of
                              ZImagePipeline on tiny-bf16 with that transformer:
                                fp8_{fp32,bf16}: ZImageTransformer2DModel.from_single_file(file,
                                  config=tiny-bf16, subfolder="transformer", torch_dtype=...): diffusers
                                  casts each fp8 tensor to torch_dtype (load_model_dict_into_meta)
                                scaled_{fp32,bf16}: the transformer with each weight dequantized as its
                                  layout says (w.float() * scale, diffusers' dequantize_fp8r for the
                                  per-row ones), then .to(torch_dtype), loaded with load_state_dict
  MANIFEST.json               versions, cases and sha256 of every file.
"""
import argparse
import hashlib
import json
import os

import torch
import diffusers
from diffusers import ZImagePipeline, ZImageTransformer2DModel
from diffusers.quantizers.bfl.utils import dequantize_fp8r, quantize_fp8r
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "tests/fixtures/models/tiny-bf16")
PROMPT = "a photo of a cat"
F8 = torch.float8_e4m3fn


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def to_original_layout(sd):
    """diffusers names -> the original / ComfyUI layout (inverse of diffusers' conversion)."""
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
    return {"model.diffusion_model." + k: v.contiguous() for k, v in out.items()}


def run(transformer, dtype):
    pipe = ZImagePipeline.from_pretrained(MODEL, transformer=transformer, torch_dtype=dtype)
    captured = {}

    def cb(p, i, t, kw):
        captured["latents"] = kw["latents"].detach().float().clone()
        return {}

    with torch.no_grad():
        pipe(prompt=PROMPT, height=32, width=32, num_inference_steps=2, guidance_scale=0.0,
             generator=torch.Generator("cpu").manual_seed(42), output_type="latent",
             callback_on_step_end=cb, callback_on_step_end_tensor_inputs=["latents"])
    return captured["latents"].contiguous()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    out = lambda f: os.path.join(args.out, f)  # noqa: E731

    codes = torch.arange(256, dtype=torch.uint8).view(F8)
    save_file({"codes": codes, "f32": codes.to(torch.float32)}, out("codes.safetensors"))

    sd = load_file(os.path.join(MODEL, "transformer/diffusion_pytorch_model.safetensors"))
    # plain fp8, original layout
    fp8 = {k: v.to(F8) for k, v in to_original_layout(sd).items()}
    save_file(fp8, out("transformer_fp8.safetensors"))

    # scaled fp8, diffusers layout
    lin = sorted(k for k, v in sd.items() if v.ndim == 2 and k.endswith(".weight") and "pad_token" not in k
                 and "cap_embedder.0" not in k)
    scaled, deq = {}, {}
    for k, v in sd.items():
        scaled[k], deq[k] = v, v.float()
    for i, k in enumerate(lin):
        p = k[: -len(".weight")]
        w = sd[k].float()
        if i % 2 == 0:  # ComfyUI: one float32 scale per tensor
            s = (w.abs().amax() / 448.0).clamp(min=1e-12).reshape(())
            q = (w / s).clamp(-448, 448).to(F8)
            scaled[p + ".scale_weight"] = s.to(torch.float32)
            scaled[p + ".scale_input"] = torch.ones((), dtype=torch.float32)
            deq[k] = q.float() * s
        else:  # diffusers fp8r: one float32 scale per row
            q, s = quantize_fp8r(w)
            scaled[p + ".weight_scale"] = s.to(torch.float32).contiguous()
            deq[k] = dequantize_fp8r(q, s)
        scaled[k] = q
    scaled["scaled_fp8"] = torch.empty(0, dtype=F8)
    save_file({k: v.contiguous() for k, v in scaled.items()}, out("transformer_fp8_scaled.safetensors"))

    manifest = dict(generator="tools/reference/make_fp8_fixtures.py", model="tiny-bf16", prompt=PROMPT, height=32,
                    width=32, num_inference_steps=2, guidance_scale=0.0, seed=42,
                    versions=dict(torch=torch.__version__, diffusers=diffusers.__version__), cases=[], files={})
    for dname, dtype in [("fp32", torch.float32), ("bf16", torch.bfloat16)]:
        t = ZImageTransformer2DModel.from_single_file(out("transformer_fp8.safetensors"), config=MODEL,
                                                      subfolder="transformer", torch_dtype=dtype)
        # the file loads back to the fp8-rounded weights: the layout conversion is the inverse
        for k, v in sd.items():
            assert torch.equal(t.state_dict()[k], v.to(F8).to(dtype)), k
        lat = run(t, dtype)
        save_file({"latents": lat}, out(f"fp8_{dname}_latents.safetensors"))
        manifest["cases"].append(dict(name=f"fp8_{dname}", file="transformer_fp8.safetensors", dtype=dname,
                                      latents=f"fp8_{dname}_latents.safetensors"))
        t = ZImageTransformer2DModel.from_pretrained(MODEL, subfolder="transformer", torch_dtype=dtype)
        t.load_state_dict({k: v.to(dtype) for k, v in deq.items()})
        lat_s = run(t, dtype)
        save_file({"latents": lat_s}, out(f"scaled_{dname}_latents.safetensors"))
        manifest["cases"].append(dict(name=f"scaled_{dname}", file="transformer_fp8_scaled.safetensors", dtype=dname,
                                      latents=f"scaled_{dname}_latents.safetensors"))
        ref = run(ZImageTransformer2DModel.from_pretrained(MODEL, subfolder="transformer", torch_dtype=dtype), dtype)
        rl2 = lambda a: ((a - ref).norm() / ref.norm()).item()  # noqa: E731
        print(dname, "fp8 vs bf16 weights rel L2", rl2(lat), "scaled vs bf16 weights", rl2(lat_s), flush=True)
        manifest[f"rel_l2_vs_bf16_weights_{dname}"] = dict(fp8=rl2(lat), scaled=rl2(lat_s))
    for f in sorted(os.listdir(args.out)):
        if f.endswith(".safetensors"):
            manifest["files"][f] = dict(bytes=os.path.getsize(out(f)), sha256=sha256(out(f)))
    with open(out("MANIFEST.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""LoRA fixtures (tests/fixtures/lora), made by diffusers' load_lora_weights + set_adapters (peft).

    ~/.cache/zimage-ref-venv/bin/python tools/reference/make_lora_fixtures.py --out tests/fixtures/lora

Writes only its own files (never the other fixtures). Random LoRAs on the tiny fixture
transformers (tests/fixtures/models/tiny-fp32, tiny-bf16; one set per model: <model>_<layout>.safetensors),
in three key layouts:
  peft.safetensors     diffusers/PEFT: transformer.layers.N.{attention.to_q|to_k|to_v|to_out.0,
                       feed_forward.w1|w2|w3}.lora_A/lora_B.weight, rank 4, bf16, no alpha
                       (what save_lora_weights writes; diffusers reads .alpha keys only unprefixed)
  kohya.safetensors    kohya: lora_unet_{noise_refiner|context_refiner}_N_attention_{to_q|to_out_0}
                       .lora_down/lora_up.weight + .alpha (1.0), rank 2, fp16
  fused.safetensors    kohya with the original fused qkv: lora_unet_layers_N_attention_qkv.lora_down /
                       lora_up.weight (up [3*dim, r], split into to_q/to_k/to_v) + .alpha (4.0), rank 2,
                       float32 (diffusers splits fused qkv only in this layout)
and, per case, the final latents of a 2-step 32x32 run (guidance 0, seed 42, the fixture prompt)
with the LoRAs loaded by pipe.load_lora_weights(file, adapter_name=...) and weighted by
pipe.set_adapters(names, adapter_weights=scales):
  <model>_<case>_latents.safetensors   {"latents": [1, 16, 4, 4] float32}
  MANIFEST.json                cases, versions, sha256 of every file.
"""
import argparse
import hashlib
import json
import os

import torch
import diffusers
import peft
from diffusers import ZImagePipeline
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMPT = "a photo of a cat"
CASES = [
    dict(name="peft", loras=[["peft", 0.8]]),
    dict(name="two", loras=[["peft", 0.8], ["kohya", 0.5]]),
    dict(name="fused", loras=[["fused", 1.3]]),
    dict(name="none", loras=[]),
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def rand(g, *shape, s=0.2):
    return torch.randn(*shape, generator=g) * s


def make_lora_files(out, model):
    g = torch.Generator().manual_seed(1515)
    ref = ZImagePipeline.from_pretrained(os.path.join(ROOT, "tests/fixtures/models", model), torch_dtype=torch.float32)
    mods = dict(ref.transformer.named_modules())
    shape = lambda name: tuple(mods[name].weight.shape)  # noqa: E731

    peft_sd = {}
    for n in range(len(ref.transformer.layers)):
        for m in ["attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0",
                  "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"]:
            o, i = shape(f"layers.{n}.{m}")
            peft_sd[f"transformer.layers.{n}.{m}.lora_A.weight"] = rand(g, 4, i).bfloat16()
            peft_sd[f"transformer.layers.{n}.{m}.lora_B.weight"] = rand(g, o, 4).bfloat16()
    kohya_sd = {}
    for blk in ["noise_refiner", "context_refiner"]:
        for n in range(len(getattr(ref.transformer, blk))):
            for m, km in [("attention.to_q", "attention_to_q"), ("attention.to_out.0", "attention_to_out_0")]:
                o, i = shape(f"{blk}.{n}.{m}")
                k = f"lora_unet_{blk}_{n}_{km}"
                kohya_sd[k + ".lora_down.weight"] = rand(g, 2, i).half()
                kohya_sd[k + ".lora_up.weight"] = rand(g, o, 2).half()
                kohya_sd[k + ".alpha"] = torch.tensor(1.0)
    fused_sd = {}
    for n in range(2):
        o, i = shape(f"layers.{n}.attention.to_q")
        fused_sd[f"lora_unet_layers_{n}_attention_qkv.lora_down.weight"] = rand(g, 2, i)
        fused_sd[f"lora_unet_layers_{n}_attention_qkv.lora_up.weight"] = rand(g, 3 * o, 2)
        fused_sd[f"lora_unet_layers_{n}_attention_qkv.alpha"] = torch.tensor(4.0)
    files = {"peft": peft_sd, "kohya": kohya_sd, "fused": fused_sd}
    for name, sd in files.items():
        save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(out, f"{model}_{name}.safetensors"))



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    manifest = dict(generator="tools/reference/make_lora_fixtures.py", prompt=PROMPT, height=32, width=32,
                    num_inference_steps=2, guidance_scale=0.0, seed=42,
                    versions=dict(torch=torch.__version__, diffusers=diffusers.__version__, peft=peft.__version__),
                    cases=[], files={})
    for model, dtype in [("tiny-fp32", torch.float32), ("tiny-bf16", torch.bfloat16)]:
        make_lora_files(args.out, model)
        for case in CASES:
            pipe = ZImagePipeline.from_pretrained(os.path.join(ROOT, "tests/fixtures/models", model), torch_dtype=dtype)
            names = []
            for fname, _ in case["loras"]:
                pipe.load_lora_weights(os.path.join(args.out, f"{model}_{fname}.safetensors"), adapter_name=fname)
                names.append(fname)
            if names:
                pipe.set_adapters(names, adapter_weights=[s for _, s in case["loras"]])
            captured = {}

            def cb(p, i, t, kw):
                captured["latents"] = kw["latents"].detach().float().clone()
                return {}

            with torch.no_grad():
                pipe(prompt=PROMPT, height=32, width=32, num_inference_steps=2, guidance_scale=0.0,
                     generator=torch.Generator("cpu").manual_seed(42), output_type="latent",
                     callback_on_step_end=cb, callback_on_step_end_tensor_inputs=["latents"])
            out = f"{model}_{case['name']}_latents.safetensors"
            save_file({"latents": captured["latents"].contiguous()}, os.path.join(args.out, out))
            manifest["cases"].append(dict(model=model, name=case["name"], loras=case["loras"], latents=out))
            print(model, case["name"], captured["latents"].abs().mean().item(), flush=True)
    for f in sorted(os.listdir(args.out)):
        if f.endswith(".safetensors"):
            manifest["files"][f] = dict(bytes=os.path.getsize(os.path.join(args.out, f)), sha256=sha256(os.path.join(args.out, f)))
    with open(os.path.join(args.out, "MANIFEST.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()

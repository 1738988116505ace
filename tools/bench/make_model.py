#!/usr/bin/env python3
"""Writes a full-width random-weight Z-Image diffusers folder for benchmarks.

Same shapes as Tongyi-MAI/Z-Image-Turbo (transformer dim 3840, 30 heads, Qwen3-4B-width text
encoder, Flux VAE) with a configurable number of layers, fixed seeds, saved with
save_pretrained (sharded safetensors, like the real model).

  python tools/bench/make_model.py --out /tmp/zimage-full --layers 4 --te-layers 4
  # + a ZImageControlNetModel with a real Union config's layer placement (needs --layers 30)
  python tools/bench/make_model.py --out /tmp/zimage-full --controlnet union-2.1 --controlnet-out /tmp/cn-union-2.1
"""
import argparse
import json
import os
import shutil
import sys

import torch

from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImageControlNetModel, ZImageTransformer2DModel
from transformers import AutoTokenizer, Qwen3Config, Qwen3Model

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@torch.no_grad()
def randomize(module, seed, std=0.02):
    g = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        if p.ndim == 1 and ("norm" in name or name.endswith("weight") and "norm" in name):
            p.copy_(1.0 + 0.05 * torch.randn(p.shape, generator=g, dtype=torch.float32))
        elif p.ndim == 1:
            p.copy_(0.02 * torch.randn(p.shape, generator=g, dtype=torch.float32))
        else:
            fan_in = p[0].numel()
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * min(std, fan_in ** -0.5))


# The placements of alibaba-pai's Z-Image-Turbo-Fun-Controlnet-Union checkpoints (diffusers' single-file
# configs hlky/Z-Image-Turbo-Fun-Controlnet-Union*, VideoX-Fun config/z_image/z_image_control*.yaml).
UNION_CONFIGS = {
    "union-1.0": dict(control_layers_places=[0, 5, 10, 15, 20, 25], control_refiner_layers_places=None,
                      add_control_noise_refiner=None, control_in_dim=16),
    "union-2.1": dict(control_layers_places=list(range(0, 30, 2)), control_refiner_layers_places=[0, 1],
                      add_control_noise_refiner="control_noise_refiner", control_in_dim=33),
}


def write_controlnet(name, out, dtype):
    cn = ZImageControlNetModel(all_patch_size=(2,), all_f_patch_size=(1,), dim=3840, n_refiner_layers=2, n_heads=30,
                               n_kv_heads=30, norm_eps=1e-5, qk_norm=True, **UNION_CONFIGS[name]).to(dtype)
    randomize(cn, 4)  # before_proj / after_proj are zero-initialised by diffusers: random here (same work)
    cn.save_pretrained(out, safe_serialization=True, max_shard_size="5GB")
    print(f"wrote {out}: ControlNet {name}, {sum(p.numel() for p in cn.parameters()) / 1e9:.2f}B params")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=30, help="transformer main layers (Z-Image-Turbo: 30)")
    ap.add_argument("--te-layers", type=int, default=36, help="Qwen3 layers (Qwen3-4B: 36)")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--controlnet", choices=sorted(UNION_CONFIGS), help="write only a ControlNet with this placement")
    ap.add_argument("--controlnet-out", help="folder of --controlnet")
    ap.add_argument("--only", choices=["text_encoder", "transformer", "vae"],
                    help="write only this component (and the tokenizer) into --out, e.g. a 36-layer text encoder "
                    "to link beside another folder's transformer and VAE")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    torch.set_default_dtype(dtype)
    if args.controlnet:
        if not args.controlnet_out:
            ap.error("--controlnet needs --controlnet-out")
        write_controlnet(args.controlnet, args.controlnet_out, dtype)
        return 0

    # One component at a time: the full model is ~20 GB in bf16, so holding the text encoder and
    # the transformer together would not fit a 24 GB machine.
    os.makedirs(args.out, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(os.path.join(ROOT, "tests/fixtures/qwen3_tokenizer"))
    tok.save_pretrained(os.path.join(args.out, "tokenizer"))

    te_params = tr_params = vae_params = 0
    if args.only in (None, "text_encoder"):
        te = Qwen3Model(Qwen3Config(vocab_size=151936, hidden_size=2560, intermediate_size=9728,
                                    num_hidden_layers=args.te_layers, num_attention_heads=32, num_key_value_heads=8,
                                    head_dim=128, rope_theta=1000000.0, rms_norm_eps=1e-6, max_position_embeddings=40960,
                                    tie_word_embeddings=True, torch_dtype=args.dtype)).to(dtype)
        randomize(te, 1)
        te_params = sum(p.numel() for p in te.parameters())
        te.save_pretrained(os.path.join(args.out, "text_encoder"), safe_serialization=True, max_shard_size="5GB")
        del te

    if args.only in (None, "transformer"):
        tr = ZImageTransformer2DModel(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=3840,
                                      n_layers=args.layers, n_refiner_layers=2, n_heads=30, n_kv_heads=30, norm_eps=1e-5,
                                      qk_norm=True, cap_feat_dim=2560, rope_theta=256.0, t_scale=1000.0,
                                      axes_dims=[32, 48, 48], axes_lens=[1536, 512, 512]).to(dtype)
        randomize(tr, 2)
        tr_params = sum(p.numel() for p in tr.parameters())
        tr.save_pretrained(os.path.join(args.out, "transformer"), safe_serialization=True, max_shard_size="5GB")
        del tr

    if args.only in (None, "vae"):
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                            layers_per_block=2, latent_channels=16, norm_num_groups=32, scaling_factor=0.3611,
                            shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False, force_upcast=True,
                            sample_size=1024).to(dtype)
        randomize(vae, 3, std=0.05)
        vae.save_pretrained(os.path.join(args.out, "vae"), safe_serialization=True)
        vae_params = sum(p.numel() for p in vae.parameters())

    if args.only:
        print(f"wrote {args.out}: {args.only} only (text encoder {te_params/1e9:.2f}B, transformer "
              f"{tr_params/1e9:.2f}B, vae {vae_params/1e6:.1f}M params)")
        return 0

    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False)
    sched.save_pretrained(os.path.join(args.out, "scheduler"))
    import diffusers
    index = {"_class_name": "ZImagePipeline", "_diffusers_version": diffusers.__version__,
             "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
             "text_encoder": ["transformers", "Qwen3Model"],
             "tokenizer": ["transformers", "Qwen2Tokenizer"],
             "transformer": ["diffusers", "ZImageTransformer2DModel"],
             "vae": ["diffusers", "AutoencoderKL"]}
    with open(os.path.join(args.out, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2)
    print(f"wrote {args.out}: transformer {tr_params/1e9:.2f}B params, "
          f"text encoder {te_params/1e9:.2f}B, vae {vae_params/1e6:.1f}M")

if __name__ == "__main__":
    sys.exit(main())

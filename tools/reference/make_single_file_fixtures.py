#!/usr/bin/env python3
"""Single-file fixtures (tests/fixtures/single_file), checked with diffusers' from_single_file.

    ~/.cache/zimage-ref-venv/bin/python tools/reference/make_single_file_fixtures.py --out tests/fixtures/single_file

Writes only its own files (never the other fixtures):
  vae_ldm.safetensors  the tiny-fp32 VAE in the original LDM / Flux layout of ComfyUI's
                       vae/ae.safetensors (encoder.down.N.block.M, downsample, mid.block_1/2,
                       mid.attn_1.{norm,q,k,v,proj_out} with 1x1-convolution weights [C, C, 1, 1],
                       norm_out, nin_shortcut, decoder.up.N in LDM's reversed order): the inverse of
                       diffusers' convert_ldm_vae_checkpoint, checked by loading the file back with
                       AutoencoderKL.from_single_file(config=tiny-fp32/vae), which must give every
                       weight of the folder bit for bit
  MANIFEST.json        versions and sha256.
"""
import argparse
import hashlib
import json
import os

import torch
import diffusers
from diffusers import AutoencoderKL
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "tests/fixtures/models/tiny-fp32")


def to_ldm(sd, n_blocks):
    out = {}
    for k, v in sd.items():
        n = k
        for a, b in [("conv_norm_out.", "norm_out."), ("conv_shortcut.", "nin_shortcut."),
                     ("mid_block.resnets.0.", "mid.block_1."), ("mid_block.resnets.1.", "mid.block_2."),
                     ("mid_block.attentions.0.group_norm.", "mid.attn_1.norm."),
                     ("mid_block.attentions.0.to_q.", "mid.attn_1.q."), ("mid_block.attentions.0.to_k.", "mid.attn_1.k."),
                     ("mid_block.attentions.0.to_v.", "mid.attn_1.v."),
                     ("mid_block.attentions.0.to_out.0.", "mid.attn_1.proj_out.")]:
            n = n.replace(a, b)
        for i in range(n_blocks):
            n = n.replace(f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.")
            n = n.replace(f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample.")
            j = n_blocks - 1 - i
            n = n.replace(f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{j}.block.")
            n = n.replace(f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{j}.upsample.")
        if ".mid.attn_1." in n and n.endswith(".weight") and ".norm." not in n:
            v = v[:, :, None, None]  # LDM's attention projections are 1x1 convolutions
        out[n] = v.contiguous()
    return out


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "vae_ldm.safetensors")
    with open(os.path.join(MODEL, "vae/config.json")) as f:
        cfg = json.load(f)
    sd = load_file(os.path.join(MODEL, "vae/diffusion_pytorch_model.safetensors"))
    ldm = to_ldm(sd, len(cfg["block_out_channels"]))
    assert len(ldm) == len(sd)
    save_file(ldm, path)
    vae = AutoencoderKL.from_single_file(path, config=MODEL, subfolder="vae", torch_dtype=torch.float32)
    got = vae.state_dict()
    assert set(got) == set(sd), set(got) ^ set(sd)
    for k, v in sd.items():
        assert torch.equal(got[k], v.float()), k
    print("vae_ldm: from_single_file gives the folder's", len(sd), "tensors bit for bit")
    man = dict(generator="tools/reference/make_single_file_fixtures.py", model="tiny-fp32",
               versions=dict(torch=torch.__version__, diffusers=diffusers.__version__),
               files={"vae_ldm.safetensors": dict(bytes=os.path.getsize(path), sha256=sha256(path))})
    with open(os.path.join(args.out, "MANIFEST.json"), "w") as fh:
        json.dump(man, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()

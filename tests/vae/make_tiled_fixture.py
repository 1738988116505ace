"""Writes tests/vae/data/tiled_decode.safetensors: diffusers' AutoencoderKL.tiled_decode (the real
code, small tiles so that tiling happens) of the tiny-fp32 fixture VAE.

Run: /work/venv-ref/bin/python tests/vae/make_tiled_fixture.py
Cases (latent tile T, sample tile T * 2^(n-1), overlap factor 0.25):
  a.z [1, 16, 12, 20], T = 8  -> a.out      (edge tiles smaller than T)
  b.z [2, 16, 10, 7],  T = 4  -> b.out      (batch 2, several rows and columns)
"""
import os

import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "..", "fixtures", "models", "tiny-fp32", "vae")
OUT = os.path.join(HERE, "data", "tiled_decode.safetensors")

torch.set_num_threads(2)
vae = AutoencoderKL.from_pretrained(MODEL, torch_dtype=torch.float32).eval()
scale = 2 ** (len(vae.config.block_out_channels) - 1)
gen = torch.Generator().manual_seed(123)
out = {}
with torch.no_grad():
    for name, shape, tile in [("a", (1, 16, 12, 20), 8), ("b", (2, 16, 10, 7), 4)]:
        z = torch.randn(shape, generator=gen)
        vae.enable_tiling()
        vae.tile_latent_min_size = tile
        vae.tile_sample_min_size = tile * scale
        vae.tile_overlap_factor = 0.25
        out[f"{name}.z"] = z
        out[f"{name}.out"] = vae.decode(z).sample.contiguous()
        out[f"{name}.tile"] = torch.tensor([float(tile)])
        print(name, tuple(z.shape), "->", tuple(out[f"{name}.out"].shape))
os.makedirs(os.path.dirname(OUT), exist_ok=True)
save_file(out, OUT)

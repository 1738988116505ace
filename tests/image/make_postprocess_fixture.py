"""Writes tests/fixtures/image/postprocess.json: diffusers' VaeImageProcessor.postprocess outputs
("np" and "pil") for decoded images in float32, bfloat16 and float16.

Run: /work/venv-ref/bin/python tests/image/make_postprocess_fixture.py
Values are stored as raw bits (uint32 for float32, uint16 for bf16/f16) so the test is bit-exact.
The float32 input starts with values whose (x/2 + 1/2) * 255 is exactly k + 0.5 in float32, so
numpy's round-half-to-even is exercised in both directions.
"""
import json
import os

import numpy as np
import torch
from diffusers.image_processor import VaeImageProcessor

B, C, H, W = 2, 3, 8, 16
N = B * C * H * W
OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "image", "postprocess.json")


def tie_inputs():
    """float32 x with fl(fl(x*0.5)+0.5)*255 == k + 0.5 exactly, for many k."""
    xs = []
    for k in range(255):
        y0 = np.float32((k + 0.5) / 255)
        for d in range(-40, 41):
            y = np.float32(y0)
            step = np.float32(np.inf if d > 0 else -np.inf)
            for _ in range(abs(d)):
                y = np.nextafter(y, step)
            x = np.float32(np.float32(y) * np.float32(2) - np.float32(1))
            yy = np.float32(np.float32(x * np.float32(0.5)) + np.float32(0.5))
            if np.float32(yy * np.float32(255)) == np.float32(k + 0.5):
                xs.append(x)
                break
    return np.array(xs, dtype=np.float32)


def main():
    g = np.random.default_rng(1234)
    ties = tie_inputs()
    special = np.array([-1, 1, 0, -0.0, 1.5, -1.5, 3e38, -3e38, np.inf, -np.inf, 1e-45, -1e-45,
                        0.99999994, -0.99999994, 1 / 255, -1 / 255], dtype=np.float32)
    rand = (g.standard_normal(N) * 0.7).astype(np.float32)
    base = np.concatenate([ties, special, rand])[:N]
    assert len(ties) > 100, len(ties)
    proc = VaeImageProcessor(vae_scale_factor=16)  # as ZImagePipeline builds it (do_normalize=True)
    out = {"shape": [B, C, H, W], "num_ties": int(len(ties))}
    for name, dt in [("float32", torch.float32), ("bfloat16", torch.bfloat16), ("float16", torch.float16)]:
        x = torch.from_numpy(base.copy()).reshape(B, C, H, W).to(dt)
        npo = proc.postprocess(x, output_type="np")
        pil = proc.postprocess(x, output_type="pil")
        pil_bytes = np.stack([np.asarray(im) for im in pil])
        assert npo.dtype == np.float32 and npo.shape == (B, H, W, C)
        if dt == torch.float32:
            in_bits = x.numpy().view(np.uint32)
        else:
            in_bits = x.view(torch.int16).numpy().view(np.uint16)
        out[name] = {
            "input_bits": [int(v) for v in in_bits.reshape(-1)],
            "np_bits": [int(v) for v in npo.view(np.uint32).reshape(-1)],
            "pil": [int(v) for v in pil_bytes.reshape(-1)],
        }
    with open(OUT, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print("wrote", OUT, "ties:", len(ties))


if __name__ == "__main__":
    main()

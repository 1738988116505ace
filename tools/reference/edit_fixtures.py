"""img2img / inpaint reference fixtures (part "edit" of make_fixtures.py; `--only edit` makes only these).

Writes, reusing the tiny models (never rewriting any other fixture file):

  tests/fixtures/edit/                    input images (PNG in several modes, JPEG) and masks
  tests/fixtures/edit/modes.safetensors   PIL's convert("RGB") and convert("L") of the mode_* and JPEG/RGBA files
                                          ("<file>.rgb" [H, W, 3], "<file>.l" [H, W]) and PIL Lanczos resizes
                                          ("<file>.resize<W>x<H>"); uint8 values stored as bfloat16 (exact)
  tests/fixtures/ref/<model>/edit_cases.json, edit_<case>.safetensors
                                          ZImageImg2ImgPipeline / ZImageInpaintPipeline runs: final latents
                                          (callback at the last step; float32), and edit_<case>_image.safetensors:
                                          the uint8 image (as bfloat16, exact)

Inputs are loaded with diffusers.utils.load_image (EXIF transpose, then convert("RGB")), the way a user
loads them; diffusers' VaeImageProcessor of these pipelines has do_convert_rgb=False and refuses other modes.
"""

import os

import numpy as np
import PIL.Image
import torch
from diffusers import ZImageImg2ImgPipeline, ZImageInpaintPipeline
from diffusers.utils import load_image
from safetensors.torch import save_file

PROMPT = "a photo of a cat"


def _pattern(h, w, seed):
    rs = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([128 + 100 * np.sin(x / 5 + c) * np.cos(y / 7 - c) for c in range(3)], -1)
    return np.clip(base + rs.randint(-20, 21, size=(h, w, 3)), 0, 255).astype(np.uint8)


def make_inputs(edit_dir):
    """Small deterministic input files; returns their names."""
    os.makedirs(edit_dir, exist_ok=True)
    files = {}

    def save(name, im, **kw):
        im.save(os.path.join(edit_dir, name), **kw)
        files[name] = os.path.join(edit_dir, name)

    rgb = _pattern(48, 48, 1)
    save("rgb_48.png", PIL.Image.fromarray(rgb, "RGB"))
    save("rgb_32x64.jpg", PIL.Image.fromarray(_pattern(32, 64, 2), "RGB"), quality=90)
    alpha = np.tile(np.linspace(0, 255, 48).astype(np.uint8)[None, :], (48, 1))
    save("rgba_48.png", PIL.Image.fromarray(np.dstack([_pattern(48, 48, 3), alpha]), "RGBA"))
    # Mask with holes: a filled square with two holes; values near the 0.5 threshold (127, 128) on a band.
    m = np.zeros((48, 48), np.uint8)
    m[8:40, 8:40] = 255
    m[14:20, 14:20] = 0
    m[28:34, 24:36] = 0
    m[44, :] = 127
    m[45, :] = 128
    save("mask_holes_48.png", PIL.Image.fromarray(m, "L"))
    mc = np.zeros((48, 48, 3), np.uint8)
    mc[:, 20:] = (255, 200, 40)  # L = 214: inpaint
    mc[10:20, 30:40] = (0, 0, 255)  # L = 29: keep
    save("mask_rgb_48.png", PIL.Image.fromarray(mc, "RGB"))
    # Sides that are not multiples of 16: VaeImageProcessor resizes them down with PIL's Lanczos filter.
    save("rgb_50x44.png", PIL.Image.fromarray(_pattern(44, 50, 8), "RGB"))
    m2 = np.full((44, 50), 255, np.uint8)
    m2[5:20, 5:25] = 0
    m2[30:40, 30:45] = 0
    save("mask_50x44.png", PIL.Image.fromarray(m2, "L"))
    # Mode conversions (small odd sizes).
    rs = np.random.RandomState(9)
    g = rs.randint(0, 256, size=(5, 7)).astype(np.uint8)
    save("mode_l.png", PIL.Image.fromarray(g, "L"))
    save("mode_la.png", PIL.Image.fromarray(np.dstack([g, g[::-1]]), "LA"))
    p = PIL.Image.fromarray(_pattern(5, 7, 4), "RGB").convert("P", palette=PIL.Image.Palette.ADAPTIVE, colors=12)
    save("mode_p.png", p, transparency=3)
    save("mode_rgba.png", PIL.Image.fromarray(rs.randint(0, 256, size=(5, 7, 4)).astype(np.uint8), "RGBA"))
    save("mode_1.png", PIL.Image.fromarray(g > 127).convert("1"))
    save("mode_l.jpg", PIL.Image.fromarray(_pattern(9, 11, 5)[:, :, 0], "L"), quality=85)
    save("mode_rgb.jpg", PIL.Image.fromarray(_pattern(9, 11, 6), "RGB"), quality=75)
    return files


def save_u8_tensors(path, tensors):
    """uint8 values (exact in bfloat16: every integer up to 256) at half the bytes of float32."""
    save_file({k: v.detach().to(torch.bfloat16).contiguous().clone() for k, v in tensors.items()}, path)


def mode_refs(files):
    out = {}
    for name, path in sorted(files.items()):
        if not (name.startswith("mode_") or name.endswith(".jpg") or name.startswith("rgba")):
            continue  # plain RGB / L PNGs: covered by the pipeline cases
        im = PIL.Image.open(path)
        out[f"{name}.rgb"] = torch.from_numpy(np.asarray(im.convert("RGB")).astype(np.float32))
        out[f"{name}.l"] = torch.from_numpy(np.asarray(im.convert("L")).astype(np.float32))
    for name, (w, h) in RESIZES:
        im = PIL.Image.open(files[name]).convert("RGB").resize((w, h), resample=PIL.Image.LANCZOS)
        out[f"{name}.resize{w}x{h}"] = torch.from_numpy(np.asarray(im).astype(np.float32))
    return out


# PIL Image.resize(LANCZOS) references (what VaeImageProcessor.resize does to an RGB PIL image).
RESIZES = [("rgb_48.png", (40, 24)), ("mode_rgb.jpg", (16, 16)), ("rgb_50x44.png", (48, 32)), ("rgb_32x64.jpg", (17, 50)),
           ("mask_50x44.png", (48, 40)), ("mode_l.png", (3, 9))]


def cases_for(name):
    cases = [
        dict(name="i2i_s06", kind="img2img", image="rgb_48.png", strength=0.6, num_inference_steps=5,
             guidance_scale=0.0, seed=42),
        dict(name="i2i_s09_cfg", kind="img2img", image="rgb_48.png", strength=0.9, num_inference_steps=4,
             guidance_scale=3.0, negative_prompt="blurry", seed=7),
        dict(name="i2i_nonsquare_jpg", kind="img2img", image="rgb_32x64.jpg", strength=0.5, num_inference_steps=4,
             guidance_scale=0.0, seed=13),
        dict(name="inp_holes", kind="inpaint", image="rgb_48.png", mask="mask_holes_48.png", strength=1.0,
             num_inference_steps=4, guidance_scale=0.0, seed=5),
        dict(name="inp_rgba", kind="inpaint", image="rgba_48.png", mask="mask_rgb_48.png", strength=0.7,
             num_inference_steps=5, guidance_scale=2.0, seed=9),
        dict(name="inp_mil", kind="inpaint", image="rgb_48.png", mask="mask_holes_48.png", strength=0.8,
             num_inference_steps=4, guidance_scale=0.0, seed=11, masked_image_latents_seed=99),
    ]
    if name == "tiny-fp32":  # sides not multiples of 16: resized (fp32 only, fixture size budget)
        cases += [
            dict(name="i2i_resize", kind="img2img", image="rgb_50x44.png", strength=0.7, num_inference_steps=3,
                 guidance_scale=0.0, seed=21),
            dict(name="inp_resize", kind="inpaint", image="rgb_50x44.png", mask="mask_50x44.png", strength=1.0,
                 num_inference_steps=3, guidance_scale=0.0, seed=23),
            # Batches: one generator draws the image sample, then the noise of both images at once;
            # a generator list draws the image sample from the first, then each image's noise from its own.
            dict(name="i2i_batch_seeds", kind="img2img", image="rgb_48.png", strength=0.75, num_inference_steps=4,
                 guidance_scale=0.0, seeds=[3, 4], num_images_per_prompt=2),
            dict(name="inp_batch_seed", kind="inpaint", image="rgb_48.png", mask="mask_holes_48.png", strength=0.9,
                 num_inference_steps=3, guidance_scale=0.0, seed=6, num_images_per_prompt=2),
        ]
    if name == "tiny-bf16":
        cases = [c for c in cases if c["name"] in ("i2i_s06", "i2i_nonsquare_jpg", "inp_holes", "inp_rgba")]
    return cases


def run_case(pipes, edit_dir, case):
    pipe = pipes[case["kind"]]
    image = load_image(os.path.join(edit_dir, case["image"]))
    params = dict(prompt=PROMPT, negative_prompt=case.get("negative_prompt"), image=image,
                  strength=case["strength"], num_inference_steps=case["num_inference_steps"],
                  guidance_scale=case["guidance_scale"], num_images_per_prompt=case.get("num_images_per_prompt", 1))
    if case["kind"] == "inpaint":
        params["mask_image"] = load_image(os.path.join(edit_dir, case["mask"]))
    mil = None
    if "masked_image_latents_seed" in case:
        lh = 2 * (image.height // (pipe.vae_scale_factor * 2))
        lw = 2 * (image.width // (pipe.vae_scale_factor * 2))
        mil = torch.randn((1, 16, lh, lw), generator=torch.Generator().manual_seed(case["masked_image_latents_seed"]))
        params["masked_image_latents"] = mil.to(pipe.transformer.dtype)
    captured = {}

    def cb(p, i, t, kw):
        captured["latents"] = kw["latents"].detach().clone()
        captured["steps"] = i + 1
        return {}

    with torch.no_grad():
        if "seeds" in case:
            generator = [torch.Generator("cpu").manual_seed(s) for s in case["seeds"]]
        else:
            generator = torch.Generator("cpu").manual_seed(case["seed"])
        res = pipe(**params, generator=generator, output_type="pil",
                   callback_on_step_end=cb, callback_on_step_end_tensor_inputs=["latents"])
    imgs = np.stack([np.asarray(im) for im in res.images]).astype(np.float32)
    tens = dict(latents=captured["latents"].float(), image_u8=torch.from_numpy(imgs))
    if mil is not None:
        tens["masked_image_latents"] = mil
    rec = dict(case)
    rec.update(prompt=PROMPT, steps_run=captured["steps"], latents_shape=list(captured["latents"].shape),
               image_shape=list(imgs.shape),
               generator="list of torch.Generator('cpu').manual_seed(s) for s in seeds" if "seeds" in case
               else "torch.Generator('cpu').manual_seed(seed)",
               file=f"edit_{case['name']}.safetensors")
    return tens, rec


def make_edit(model_name, model_dir, ref_dir, out_dir, run_dtype, log, save_tensors, write_json):
    edit_dir = os.path.join(out_dir, "edit")
    files = make_inputs(edit_dir)
    save_u8_tensors(os.path.join(edit_dir, "modes.safetensors"), mode_refs(files))
    i2i = ZImageImg2ImgPipeline.from_pretrained(model_dir, torch_dtype=run_dtype)
    inp = ZImageInpaintPipeline(**i2i.components)
    for p in (i2i, inp):
        p.set_progress_bar_config(disable=True)
    records = []
    for case in cases_for(model_name):
        log(f"{model_name}: edit {case['name']}")
        tens, rec = run_case(dict(img2img=i2i, inpaint=inp), edit_dir, case)
        rec["dtype"] = str(run_dtype).replace("torch.", "")
        save_tensors(os.path.join(ref_dir, rec["file"]), {k: v for k, v in tens.items() if k != "image_u8"})
        save_u8_tensors(os.path.join(ref_dir, rec["file"].replace(".safetensors", "_image.safetensors")),
                        {"image_u8": tens["image_u8"]})
        records.append(rec)
    write_json(os.path.join(ref_dir, "edit_cases.json"), records)

"""ControlNet / ControlNet-inpaint reference fixtures (part "controlnet" of make_fixtures.py;
`--only controlnet` makes only these).

Writes, reusing the tiny models and the edit inputs (never rewriting any other fixture file):

  tests/fixtures/controlnet/ctrl_32.png, ctrl_40x24.png   control images (line drawings)
  tests/fixtures/controlnet/<model>/<net>/                tiny random-weight ZImageControlNetModel folders
                                                          (save_pretrained: config.json + safetensors)
  tests/fixtures/ref/<model>/controlnet_cases.json, controlnet_<case>.safetensors (final latents, float32)
                                                          and controlnet_<case>_image.safetensors (uint8 image as bf16)

The ControlNets are built by the real diffusers class with the transformer's dim / heads, every parameter
re-initialised (diffusers zero-initialises before_proj / after_proj: a zero ControlNet would test nothing),
and stored in bfloat16 (fixture size budget). The tiny-fp32 runs load them with torch_dtype=float32: the
values are bf16-representable, the compute is float32. The pipelines are ZImageControlNetPipeline and
ZImageControlNetInpaintPipeline built from the tiny model's components (from_transformer shares its modules).
"""

import os

import numpy as np
import PIL.Image
import torch
from diffusers import ZImageControlNetInpaintPipeline, ZImageControlNetModel, ZImageControlNetPipeline, ZImagePipeline
from diffusers.utils import load_image

from edit_fixtures import save_u8_tensors

PROMPT = "a photo of a cat"

# name -> config (dim / heads / eps / qk_norm / patch sizes are taken from the transformer).
NETS = {
    "tiny-fp32": {
        # add_control_noise_refiner=None: plain refiner blocks on the control context, hints only in the main layers.
        "cn_plain": dict(control_layers_places=[0, 2], control_refiner_layers_places=None, control_in_dim=16,
                         add_control_noise_refiner=None, n_refiner_layers=1),
        # "control_layers": the control layers run first over the image tokens (hints into the noise refiner).
        "cn_layers": dict(control_layers_places=[0, 2], control_refiner_layers_places=[0, 1], control_in_dim=16,
                          add_control_noise_refiner="control_layers", n_refiner_layers=2),
        # "control_noise_refiner", 33 input channels (Union 2.x layout: control + mask + masked image latents).
        "cn_refiner": dict(control_layers_places=[0], control_refiner_layers_places=[0, 1], control_in_dim=33,
                           add_control_noise_refiner="control_noise_refiner", n_refiner_layers=2),
    },
    "tiny-bf16": {
        "cn_plain": dict(control_layers_places=[0, 1], control_refiner_layers_places=None, control_in_dim=16,
                         add_control_noise_refiner=None, n_refiner_layers=1),
        "cn_refiner": dict(control_layers_places=[0], control_refiner_layers_places=[0], control_in_dim=33,
                           add_control_noise_refiner="control_noise_refiner", n_refiner_layers=1),
    },
}


def cases_for(name):
    cases = [
        dict(name="plain_s075", net="cn_plain", control="ctrl_32.png", scale=0.75, height=32, width=32,
             num_inference_steps=3, guidance_scale=0.0, seed=1),
        dict(name="plain_s15_cfg", net="cn_plain", control="ctrl_32.png", scale=1.5, height=32, width=32,
             num_inference_steps=3, guidance_scale=2.0, negative_prompt="blurry", seed=2),
        dict(name="refiner_s075", net="cn_refiner", control="ctrl_32.png", scale=0.75, height=32, width=32,
             num_inference_steps=3, guidance_scale=0.0, seed=5),
        dict(name="inpaint_holes", kind="inpaint", net="cn_refiner", control="ctrl_32.png", image="rgb_48.png",
             mask="mask_holes_48.png", scale=0.8, height=48, width=48, num_inference_steps=3, guidance_scale=0.0,
             seed=7),
    ]
    if name == "tiny-fp32":
        cases += [
            dict(name="layers_s075", net="cn_layers", control="ctrl_32.png", scale=0.75, height=32, width=32,
                 num_inference_steps=3, guidance_scale=0.0, seed=3),
            dict(name="layers_s04", net="cn_layers", control="ctrl_32.png", scale=0.4, height=32, width=32,
                 num_inference_steps=2, guidance_scale=0.0, seed=4),
            dict(name="refiner_s13_cfg", net="cn_refiner", control="ctrl_32.png", scale=1.3, height=32, width=32,
                 num_inference_steps=3, guidance_scale=2.5, seed=6),
            # Control image resized with PIL's Lanczos filter to a non-square size.
            dict(name="plain_resize", net="cn_plain", control="ctrl_40x24.png", scale=1.0, height=32, width=48,
                 num_inference_steps=2, guidance_scale=0.0, seed=8),
            dict(name="inpaint_rgba_cfg", kind="inpaint", net="cn_refiner", control="ctrl_40x24.png",
                 image="rgba_48.png", mask="mask_rgb_48.png", scale=0.6, height=32, width=48, num_inference_steps=3,
                 guidance_scale=2.0, negative_prompt="blurry", seed=9),
            dict(name="plain_batch", net="cn_plain", control="ctrl_32.png", scale=0.9, height=32, width=32,
                 num_inference_steps=2, guidance_scale=0.0, seed=10, num_images_per_prompt=2),
        ]
    return cases


def make_control_images(cn_dir):
    os.makedirs(cn_dir, exist_ok=True)
    img = np.zeros((32, 32, 3), np.uint8)  # a "pose" / edge drawing: white lines on black
    img[4:28, 15:17] = 255
    img[10:12, 6:26] = 255
    for i in range(10):
        img[20 + i, 15 - i] = (255, 255, 255)
        img[20 + i, 16 + i] = (255, 255, 255)
    img[3:7, 13:19] = (200, 120, 40)
    PIL.Image.fromarray(img, "RGB").save(os.path.join(cn_dir, "ctrl_32.png"))
    img2 = np.zeros((24, 40, 3), np.uint8)
    img2[::6, :] = 255
    img2[:, 3::7] = (80, 200, 255)
    PIL.Image.fromarray(img2, "RGB").save(os.path.join(cn_dir, "ctrl_40x24.png"))


def make_nets(model_name, transformer, net_root, seed, reinit_):
    tc = transformer.config
    for i, (net_name, cfg) in enumerate(NETS[model_name].items()):
        torch.manual_seed(seed + i)
        net = ZImageControlNetModel(all_patch_size=tuple(tc.all_patch_size), all_f_patch_size=tuple(tc.all_f_patch_size),
                                    dim=tc.dim, n_heads=tc.n_heads, n_kv_heads=tc.n_kv_heads, norm_eps=tc.norm_eps,
                                    qk_norm=tc.qk_norm, **cfg).eval()
        reinit_(net, seed + 100 + i)
        net.to(torch.bfloat16).save_pretrained(os.path.join(net_root, net_name), safe_serialization=True)


def make_controlnet(model_name, model_dir, ref_dir, out_dir, run_dtype, log, save_tensors, write_json, reinit_):
    cn_dir = os.path.join(out_dir, "controlnet")
    edit_dir = os.path.join(out_dir, "edit")
    make_control_images(cn_dir)
    net_root = os.path.join(cn_dir, model_name)
    base = ZImagePipeline.from_pretrained(model_dir, torch_dtype=run_dtype)
    make_nets(model_name, base.transformer, net_root, 5000 if model_name == "tiny-fp32" else 6000, reinit_)
    records = []
    pipes = {}
    for case in cases_for(model_name):
        log(f"{model_name}: controlnet {case['name']}")
        net_name = case["net"]
        if net_name not in pipes:  # loaded from the saved folder, like a user would
            net = ZImageControlNetModel.from_pretrained(os.path.join(net_root, net_name), torch_dtype=run_dtype)
            comps = {k: v for k, v in base.components.items()}
            p1 = ZImageControlNetPipeline(**comps, controlnet=net)
            p2 = ZImageControlNetInpaintPipeline(**comps, controlnet=net) if net.config.control_in_dim != 16 else None
            for p in (p1, p2):
                if p is not None:
                    p.set_progress_bar_config(disable=True)
            pipes[net_name] = dict(control=p1, inpaint=p2)
        kind = case.get("kind", "control")
        pipe = pipes[net_name][kind]
        params = dict(prompt=PROMPT, negative_prompt=case.get("negative_prompt"), height=case["height"],
                      width=case["width"], control_image=load_image(os.path.join(cn_dir, case["control"])),
                      controlnet_conditioning_scale=case["scale"], num_inference_steps=case["num_inference_steps"],
                      guidance_scale=case["guidance_scale"], num_images_per_prompt=case.get("num_images_per_prompt", 1))
        if kind == "inpaint":
            params["image"] = load_image(os.path.join(edit_dir, case["image"]))
            params["mask_image"] = load_image(os.path.join(edit_dir, case["mask"]))
        captured = {}

        def cb(p, i, t, kw):
            captured["latents"] = kw["latents"].detach().clone()
            captured["steps"] = i + 1
            return {}

        with torch.no_grad():
            res = pipe(**params, generator=torch.Generator("cpu").manual_seed(case["seed"]), output_type="pil",
                       callback_on_step_end=cb, callback_on_step_end_tensor_inputs=["latents"])
        imgs = np.stack([np.asarray(im) for im in res.images]).astype(np.float32)
        rec = dict(case)
        rec.update(kind=kind, prompt=PROMPT, steps_run=captured["steps"], latents_shape=list(captured["latents"].shape),
                   image_shape=list(imgs.shape), dtype=str(run_dtype).replace("torch.", ""),
                   controlnet=f"controlnet/{model_name}/{net_name}",
                   generator="torch.Generator('cpu').manual_seed(seed)", file=f"controlnet_{case['name']}.safetensors")
        save_tensors(os.path.join(ref_dir, rec["file"]), dict(latents=captured["latents"].float()))
        save_u8_tensors(os.path.join(ref_dir, f"controlnet_{case['name']}_image.safetensors"),
                        dict(image_u8=torch.from_numpy(imgs)))
        records.append(rec)
    write_json(os.path.join(ref_dir, "controlnet_cases.json"), records)

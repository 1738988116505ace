#!/usr/bin/env python3
"""zimage.cpp vs diffusers/transformers on PyTorch CPU, side by side, same weights, one invocation.

  python tools/bench/bench.py --model /work/models/full-l2 --size 512 --steps 2 --dtype bf16 --threads 2
  python tools/bench/bench.py --model /work/models/full-l2 --text-encoder-only --threads 2
  python tools/bench/bench.py --model /work/models/full-l2 --vae-only --size 512 1024 --threads 2
  python tools/bench/bench.py --model /work/models/full-l2 --quant Q8_0 Q4_K --size 512 --threads 2 --repeat 2

Every number is measured in this run: the zimage binaries (CLI + tools/bench helpers) and a
PyTorch subprocess (--python, a venv with torch/diffusers/transformers) run one after the other
on the same model folder, dtype, size, steps, seed and thread count. Each process' peak RSS comes
from the kernel (wait4 ru_maxrss). Results print as a Markdown table and can be written as JSON
(--json) and Markdown (--markdown). See tools/bench/README.md for what each row means.

This script itself only needs the Python standard library.
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# A ~100-token prompt (after ZImagePipeline's chat template) for the text-encoder benchmark.
LONG_PROMPT = (
    "A photorealistic portrait of an elderly fisherman with a weathered face and a thick white beard, "
    "wearing a yellow raincoat, standing on a wooden pier at dawn. Soft golden light, mist over the harbour, "
    "seagulls in the background, small boats with peeling paint, shallow depth of field, 85mm lens, "
    "highly detailed skin texture, cinematic colour grading. Reflections shimmer on the calm water."
)
DEFAULT_PROMPT = "A cat holding a sign that says hello world, studio lighting, highly detailed"

# ---------------------------------------------------------------------------------------------
# PyTorch side: one script, run in the reference venv, prints "BENCH_JSON {...}" on stdout.
# ---------------------------------------------------------------------------------------------
TORCH_SCRIPT = r'''
import json, os, statistics, sys, time, resource
a = json.loads(sys.argv[1])
import torch
torch.set_num_threads(a["threads"])
DT = {"bf16": torch.bfloat16, "f32": torch.float32}
out = {"torch": torch.__version__, "threads": torch.get_num_threads()}
clock = time.perf_counter

def rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2

@torch.no_grad()
def pipeline():
    import diffusers
    from diffusers import ZImagePipeline
    out["diffusers"] = diffusers.__version__
    t0 = clock()
    kw = {}
    if a.get("gguf"):  # diffusers' GGUF path: weights stay quantized, dequantized to compute_dtype per forward
        from diffusers import GGUFQuantizationConfig, ZImageTransformer2DModel
        kw["transformer"] = ZImageTransformer2DModel.from_single_file(
            a["gguf"], quantization_config=GGUFQuantizationConfig(compute_dtype=DT[a["dtype"]]), config=a["model"],
            subfolder="transformer", torch_dtype=DT[a["dtype"]], local_files_only=True)
    pipe = ZImagePipeline.from_pretrained(a["model"], torch_dtype=DT[a["dtype"]], **kw)
    if a["vae_dtype"] != a["dtype"]:
        pipe.vae.to(DT[a["vae_dtype"]])
    pipe.set_progress_bar_config(disable=True)
    out["load_s"] = clock() - t0
    marks = {}
    enc = pipe.encode_prompt
    def timed_encode(*args, **kw):
        s = clock()
        r = enc(*args, **kw)
        marks["enc_end"] = clock()
        out["text_encoder_s"] = marks["enc_end"] - s
        out["prompt_tokens"] = int(r[0][0].shape[0])
        if r[1]:
            out["negative_tokens"] = int(r[1][0].shape[0])
        return r
    pipe.encode_prompt = timed_encode
    dec = pipe.vae.decode
    def timed_decode(*args, **kw):
        s = clock()
        r = dec(*args, **kw)
        out["vae_decode_only_s"] = clock() - s
        return r
    pipe.vae.decode = timed_decode
    step_marks = []
    final = {}
    def on_step(p, i, t, kw):
        step_marks.append(clock())
        if a.get("latents_out") and i == a["steps"] - 1:  # the final latents, before the VAE (zimage's --save-latents)
            final["latents"] = kw["latents"].float().clone()  # written after the timed call
        return kw
    extra = {}
    if a.get("controlnet"):  # ZImageControlNetPipeline on the same components (+ the ControlNet's load time)
        from diffusers import ZImageControlNetModel, ZImageControlNetPipeline
        from PIL import Image
        t1 = clock()
        cn = ZImageControlNetModel.from_pretrained(a["controlnet"], torch_dtype=DT[a["dtype"]])
        pipe = ZImageControlNetPipeline(**pipe.components, controlnet=cn)
        pipe.set_progress_bar_config(disable=True)
        out["load_s"] += clock() - t1
        pipe.encode_prompt = timed_encode
        extra = dict(control_image=Image.open(a["control_image"]).convert("RGB"),
                     controlnet_conditioning_scale=a["control_scale"])
    g = torch.Generator("cpu").manual_seed(a["seed"])
    t0 = clock()
    img = pipe(prompt=a["prompt"], height=a["height"], width=a["width"], num_inference_steps=a["steps"],
               guidance_scale=a["guidance"], generator=g, callback_on_step_end=on_step, **extra).images[0]
    t_end = clock()
    out["total_s"] = t_end - t0
    prev = marks["enc_end"]
    out["step_s"] = []
    for m in step_marks:
        out["step_s"].append(m - prev)
        prev = m
    out["vae_s"] = t_end - step_marks[-1]  # unscale + vae.decode + postprocess, as zimage's "vae" stage
    if a.get("output"):
        img.save(a["output"])
    if "latents" in final:
        from safetensors.torch import save_file
        save_file({"latents": final["latents"].contiguous()}, a["latents_out"])

@torch.no_grad()
def text_encoder():
    import transformers
    from transformers import AutoModel, AutoTokenizer
    out["transformers"] = transformers.__version__
    t0 = clock()
    tok = AutoTokenizer.from_pretrained(os.path.join(a["model"], "tokenizer"))
    te = AutoModel.from_pretrained(os.path.join(a["model"], "text_encoder"), dtype=DT[a["dtype"]])
    te.eval()
    out["load_s"] = clock() - t0
    secs = []
    for _ in range(a["reps"]):
        s = clock()
        # ZImagePipeline._encode_prompt, line for line.
        text = tok.apply_chat_template([{"role": "user", "content": a["prompt"]}], tokenize=False,
                                       add_generation_prompt=True, enable_thinking=True)
        ti = tok([text], padding="max_length", max_length=a["max_sequence_length"], truncation=True, return_tensors="pt")
        mask = ti.attention_mask.bool()
        h = te(input_ids=ti.input_ids, attention_mask=mask, output_hidden_states=True).hidden_states[-2]
        emb = h[0][mask[0]]
        secs.append(clock() - s)
    out["tokens"] = int(emb.shape[0])
    out["seconds"] = secs

def tokenizer():
    import transformers
    from transformers import AutoTokenizer
    out["transformers"] = transformers.__version__
    t0 = clock()
    tok = AutoTokenizer.from_pretrained(os.path.join(a["model"], "tokenizer"))
    out["load_s"] = clock() - t0
    with open(a["corpus"], "rb") as f:
        lines = [l.decode("utf-8", "replace") for l in f.read().split(b"\n") if l]
    secs, n = [], 0
    for _ in range(a["reps"]):
        s = clock()
        ids = tok(lines, add_special_tokens=False)["input_ids"]
        secs.append(clock() - s)
        n = sum(len(x) for x in ids)
    out.update(lines=len(lines), tokens=n, first_pass_s=secs[0], best_pass_s=min(secs),
               tokens_per_s=n / min(secs), tokens_per_s_first=n / secs[0])
    # The Rust core alone, its fastest batch path (encode_batch_fast: no offsets; no BatchEncoding).
    backend = tok.backend_tokenizer
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    secs = []
    for _ in range(a["reps"]):
        s = clock()
        enc = encode(lines, add_special_tokens=False)
        secs.append(clock() - s)
    nr = sum(len(e.ids) for e in enc)
    out["rust"] = dict(tokens=nr, first_pass_s=secs[0], best_pass_s=min(secs), tokens_per_s=nr / min(secs),
                       tokens_per_s_first=nr / secs[0])

@torch.no_grad()
def vae():
    from diffusers import AutoencoderKL
    t0 = clock()
    v = AutoencoderKL.from_pretrained(os.path.join(a["model"], "vae"), torch_dtype=DT[a["dtype"]])
    v.eval()
    out["load_s"] = clock() - t0
    s = 2 ** (len(v.config.block_out_channels) - 1)
    g = torch.Generator("cpu").manual_seed(0)
    z = torch.randn(1, v.config.latent_channels, a["height"] // s, a["width"] // s, generator=g).to(DT[a["dtype"]])
    secs = []
    for _ in range(a["reps"]):
        t = clock()
        img = v.decode(z, return_dict=False)[0]
        secs.append(clock() - t)
    assert img.shape[-2:] == (a["height"], a["width"]), img.shape
    out["seconds"] = secs

@torch.no_grad()
def gemm():
    # torch.nn.functional.linear(x[M, K], w[N, K]) at the shapes bench_gemm times, same dtypes.
    import torch.nn.functional as F
    res = []
    for dt in a["dtypes"]:
        for (M, K, N) in a["shapes"]:
            x = torch.randn(M, K).to(DT[dt])
            w = (torch.randn(N, K) * K ** -0.5).to(DT[dt])
            F.linear(x, w)
            secs, t_all = [], clock()
            while len(secs) < 3 or clock() - t_all < a["min_seconds"]:
                t = clock()
                F.linear(x, w)
                secs.append(clock() - t)
            fl = 2.0 * M * N * K
            res.append(dict(dtype=dt, M=M, K=K, N=N, ms_median=1e3 * statistics.median(secs),
                            gflops_median=fl / statistics.median(secs) / 1e9, gflops_best=fl / min(secs) / 1e9))
    out["results"] = res

{"pipeline": pipeline, "text_encoder": text_encoder, "tokenizer": tokenizer, "vae": vae, "gemm": gemm}[a["mode"]]()
out["peak_rss_gb_self"] = rss_gb()
print("BENCH_JSON " + json.dumps(out), flush=True)
'''


# ---------------------------------------------------------------------------------------------
# Running processes with peak RSS.
# ---------------------------------------------------------------------------------------------
class RunResult:
    def __init__(self, rc, stdout, stderr, wall_s, peak_rss_gb):
        self.rc, self.stdout, self.stderr, self.wall_s, self.peak_rss_gb = rc, stdout, stderr, wall_s, peak_rss_gb


def run_measured(cmd, env=None, label=""):
    """Runs cmd; returns its output, wall time and peak RSS (ru_maxrss of the child via wait4)."""
    print(f"[bench] {label}: {' '.join(cmd) if len(' '.join(cmd)) < 300 else cmd[0] + ' ...'}", file=sys.stderr, flush=True)
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        res = RunResult(p.returncode, fo.read().decode("utf-8", "replace"), fe.read().decode("utf-8", "replace"), wall,
                        ru.ru_maxrss / 1024**2)  # KiB -> GiB
    if res.rc != 0:
        raise SystemExit(f"[bench] {label} failed (exit {res.rc}):\n{res.stderr[-4000:]}\n{res.stdout[-2000:]}")
    print(f"[bench] {label}: done in {wall:.1f} s, peak RSS {res.peak_rss_gb:.2f} GB", file=sys.stderr, flush=True)
    return res


def last_json(text, prefix=""):
    for line in reversed(text.splitlines()):
        line = line.strip()
        if prefix:
            if line.startswith(prefix):
                return json.loads(line[len(prefix):])
        elif line.startswith("{"):
            return json.loads(line)
    raise SystemExit(f"[bench] no JSON result in output:\n{text[-3000:]}")


def torch_env(threads):
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), RAYON_NUM_THREADS=str(max(threads, 1)),
               TOKENIZERS_PARALLELISM="true", TRANSFORMERS_VERBOSITY="error", DIFFUSERS_VERBOSITY="error",
               HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    return env


def zimage_env(threads, extra=None):
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env.update(extra or {})
    return env


def parse_variant(text):
    """--variant LABEL=BUILD_DIR[:KEY=VALUE...]: another zimage build (or the same one under other
    environment variables, e.g. ZIMAGE_CPU=avx2) as an extra column."""
    label, sep, rest = text.partition("=")
    if not sep or not label or not rest or not re.fullmatch(r"[A-Za-z0-9_.+-]+", label):
        raise argparse.ArgumentTypeError(f"--variant '{text}': expected LABEL=BUILD_DIR[:KEY=VALUE...]")
    parts = rest.split(":")
    env = {}
    for kv in parts[1:]:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise argparse.ArgumentTypeError(f"--variant '{text}': '{kv}' is not KEY=VALUE")
        env[k] = v
    build = os.path.abspath(parts[0])
    if not os.path.isdir(build):
        raise argparse.ArgumentTypeError(f"--variant '{text}': {build} is not a folder")
    return dict(label=label, build_dir=build, env=env, zimage_bin=os.path.join(build, "zimage"))


def kernel_level(build_dir, extra_env=None):
    """The CPU kernel level a build takes here (under ZIMAGE_CPU of the environment), as its
    bench_gemm --kernel-level reports it; builds before the kernel table cannot say."""
    exe = os.path.join(build_dir, "tools", "bench", "bench_gemm")
    if not os.path.exists(exe):
        return f"unknown (no {exe})"
    try:
        r = subprocess.run([exe, "--kernel-level"], capture_output=True, text=True, timeout=60,
                           env=zimage_env(1, extra_env))
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    if r.returncode != 0:
        err = r.stderr.strip().splitlines()
        if err and "usage:" in err[0]:
            return "n/a (build without the kernel table)"
        return f"error: {err[0] if err else r.returncode}"
    try:
        return json.loads(r.stdout)["cpu_kernel_level"]
    except (ValueError, KeyError):
        return "unknown"


def evict_model(args):
    """Drops the model folder's weight files from the page cache (posix_fadvise DONTNEED after a
    sync; no root needed, but pages another process maps stay): the next run reads them from disk.
    Returns the bytes still cached (fincore), or None when fincore is missing."""
    files = []
    for d, _, fs in os.walk(args.model, followlinks=True):
        files += [os.path.join(d, f) for f in sorted(fs) if f.endswith((".safetensors", ".gguf"))]
    os.sync()
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    try:
        r = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", *files], capture_output=True,
                           text=True, timeout=60)
        return sum(int(x) for x in r.stdout.split()) if r.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def run_torch(args, mode, **kw):
    payload = dict(mode=mode, model=os.path.abspath(args.model), threads=args.threads, **kw)
    cmd = [args.python, "-c", TORCH_SCRIPT, json.dumps(payload)]
    r = run_measured(cmd, env=torch_env(args.threads), label=f"pytorch {mode} {kw.get('dtype', '')}".strip())
    d = last_json(r.stdout, "BENCH_JSON ")
    d["peak_rss_gb"] = r.peak_rss_gb
    d["wall_s"] = r.wall_s
    return d


COMPARE_SCRIPT = r'''
import json, sys
import numpy as np
from PIL import Image
a = np.asarray(Image.open(sys.argv[1]).convert("RGB")).astype(np.int16)
b = np.asarray(Image.open(sys.argv[2]).convert("RGB")).astype(np.int16)
d = np.abs(a - b) if a.shape == b.shape else None
print(json.dumps(None if d is None else {"max_abs": int(d.max()), "mean_abs": float(d.mean())}))
'''


def compare_images(args, a, b):
    """Pixel difference of the two sides' PNGs (a sanity check that both did the same work)."""
    try:
        r = subprocess.run([args.python, "-c", COMPARE_SCRIPT, a, b], capture_output=True, text=True, timeout=120)
        return json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else None
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def steady(step_s):
    """Steady-state seconds per step: median of the steps after the first (the first alone if only one)."""
    return statistics.median(step_s[1:]) if len(step_s) > 1 else step_s[0]


def best_of(runs):
    """Merges repetitions of one side: every timing and the peak RSS is the minimum over the runs
    (interference from other processes only ever adds time); all runs are kept under "runs"."""
    if len(runs) == 1:
        return runs[0]
    out = dict(runs[-1])
    for k, v in runs[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "loadavg_before":
            out[k] = min(r[k] for r in runs)
    out["runs"] = runs
    return out


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


# ---------------------------------------------------------------------------------------------
# Analytic transformer FLOPs.
# ---------------------------------------------------------------------------------------------
SEQ_MULTI_OF = 32  # diffusers transformer_z_image.SEQ_MULTI_OF: caption and image tokens are padded to it


def pad32(n):
    return n + (-n) % SEQ_MULTI_OF


def transformer_flops_per_step(cfg, width, height, vae_scale, cap_tokens_list):
    """FLOPs of one ZImageTransformer2DModel forward (all items of the batch: one per caption).

    linear: 2 * tokens * in * out; attention: 4 * S^2 * head_dim * heads per block (QK^T and PV).
    Token counts as the model pads them (multiples of 32). Elementwise ops and norms are ignored.
    """
    dim, n_heads = cfg["dim"], cfg["n_heads"]
    head_dim = dim // n_heads
    kv_dim = cfg.get("n_kv_heads", n_heads) * head_dim
    ffn = int(dim / 3 * 8)
    p = cfg["all_patch_size"][0]
    fp = cfg["all_f_patch_size"][0]
    cin = cfg["in_channels"]
    adaln = min(dim, 256)
    lh, lw = 2 * (height // (vae_scale * 2)), 2 * (width // (vae_scale * 2))  # latent size, as prepare_latents
    img = pad32((lh // p) * (lw // p))

    def block(t, modulation):
        f = 2 * t * dim * dim * 2 + 2 * t * dim * kv_dim * 2  # to_q, to_out; to_k, to_v
        f += 2 * t * dim * ffn * 3  # w1, w3, w2
        f += 4 * t * t * head_dim * n_heads  # scores and weighted sum
        if modulation:
            f += 2 * adaln * 4 * dim  # adaLN_modulation on the timestep embedding
        return f

    total = 0
    for cap_real in cap_tokens_list:
        cap = pad32(cap_real)
        f = 2 * img * (fp * p * p * cin) * dim  # x_embedder
        f += 2 * cap * cfg["cap_feat_dim"] * dim  # cap_embedder
        f += 2 * (256 * 1024 + 1024 * adaln)  # t_embedder (frequency 256 -> mid 1024 -> 256)
        f += cfg["n_refiner_layers"] * (block(img, True) + block(cap, False))  # noise / context refiners
        f += cfg["n_layers"] * block(img + cap, True)  # main layers on [image | caption]
        f += 2 * adaln * dim + 2 * img * dim * (p * p * fp * cin)  # final layer
        total += f
    return total


# ---------------------------------------------------------------------------------------------
# zimage side.
# ---------------------------------------------------------------------------------------------
TIME_RE = re.compile(r"time: load ([\d.]+) s, text encoder ([\d.]+) s, denoise ([\d.]+) s \(([\d.]+) s/step\), "
                     r"vae ([\d.]+) s, total ([\d.]+) s")
STEP_RE = re.compile(r"denoise step (\d+)/(\d+): ([\d.]+) s")


def tool(args, name):
    path = os.path.join(args.build_dir, "tools", "bench", name)
    if not os.path.exists(path):
        raise SystemExit(f"[bench] {path} not found: build it (ninja -C {args.build_dir} {name})")
    return path


def run_zimage_cli(args, width, height, dtype, vae_dtype, low_memory, outdir, extra=(), extra_env=None, tag="",
                   control=None, variant=None):
    names = {"bf16": "bfloat16", "f32": "float32"}
    vtag = f"_{variant['label']}" if variant else ""
    out_png = os.path.join(outdir, f"zimage{vtag}_{width}x{height}_{dtype}{'_lowmem' if low_memory else ''}{tag}"
                                   f"{'_controlnet' if control else ''}.png")
    cmd = [variant["zimage_bin"] if variant else args.zimage_bin, "generate", "-m", args.model, "-p", args.prompt, "-W", str(width), "-H", str(height),
           "-s", str(args.steps), "-g", str(args.guidance), "--seed", str(args.seed), "--dtype", names[dtype],
           "--vae-dtype", names[vae_dtype], "-t", str(args.threads), "-o", out_png, "--overwrite"]
    if low_memory:
        cmd.append("--low-memory")
    cmd += list(extra)
    if control:
        cmd += ["--controlnet", args.controlnet, "--control-image", control, "--control-scale", str(args.control_scale)]
    env = zimage_env(args.threads, variant and variant["env"])
    env.update(extra_env or {})
    r = run_measured(cmd, env=env, label=f"zimage{' ' + variant['label'] if variant else ''} generate"
                                         f"{' --low-memory' if low_memory else ''}{tag}")
    m = TIME_RE.search(r.stderr)
    if not m:
        raise SystemExit(f"[bench] no 'time:' line in zimage's stderr:\n{r.stderr[-3000:]}")
    load, te, den, _, vae, total = map(float, m.groups())
    steps = [float(s.group(3)) for s in STEP_RE.finditer(r.stderr)]
    if len(steps) != args.steps:
        raise SystemExit(f"[bench] expected {args.steps} 'denoise step' lines, got {len(steps)}:\n{r.stderr[-3000:]}")
    return dict(load_s=load, text_encoder_s=te, denoise_s=den, step_s=steps, vae_s=vae, total_s=total - load,
                peak_rss_gb=r.peak_rss_gb, wall_s=r.wall_s, output=out_png)


def prompt_tokens(args, prompt):
    r = run_measured([tool(args, "bench_tokenizer"), os.path.join(args.model, "tokenizer"), "--prompt-tokens", prompt],
                     label="zimage prompt token count")
    return last_json(r.stdout)["prompt_tokens"]


def run_gemm(args):
    cmd = [tool(args, "bench_gemm"), "--json", "--threads", str(args.threads), "--min-seconds", str(args.gemm_seconds)]
    r = run_measured(cmd, env=zimage_env(args.threads), label="zimage bench_gemm")
    return json.loads(r.stdout)["results"]


def run_torch_gemm(args, shapes):
    """PyTorch's own GEMM (F.linear) at bench_gemm's shapes: the other library's peak on this machine."""
    dtypes = sorted({g["dtype"] for g in shapes})
    mkn = sorted({(g["M"], g["K"], g["N"]) for g in shapes})
    return run_torch(args, "gemm", dtypes=dtypes, shapes=mkn, min_seconds=args.gemm_seconds)["results"]


# ---------------------------------------------------------------------------------------------
# Tables.
# ---------------------------------------------------------------------------------------------
def fmt(v, digits=3):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.{digits}f}" if abs(v) < 1 else f"{v:.2f}"


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(c) for c in r) + " |")
    return "\n".join(lines)


def x_ratio(v):
    return None if v is None else f"{v:.2f}x"


def environment(args):
    def git(*a):
        try:
            return subprocess.run(["git", "-C", ROOT, *a], capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""
    cpu, flags = "", set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            if cpu and flags:
                break
    except OSError:
        pass
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    commit = args.commit or (git("rev-parse", "--short=12", "HEAD") + ("-dirty" if dirty else "")) or "unknown"
    return dict(commit=commit,
                date=datetime.datetime.now().isoformat(timespec="seconds"), cpu=cpu, cores=os.cpu_count(),
                cpu_flags={f: f in flags for f in CPU_FLAGS}, zimage_cpu=os.environ.get("ZIMAGE_CPU", ""),
                cpu_kernel_level=kernel_level(args.build_dir),
                threads=args.threads, loadavg_start=os.getloadavg()[0], host=platform.node())


# /proc/cpuinfo flags that decide which kernels run (src/backend/cpu/cpu_level.h).
CPU_FLAGS = ["avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16", "avx512_vnni", "avx_vnni",
             "amx_tile", "amx_bf16", "amx_int8"]


def env_line(env):
    fl = env.get("cpu_flags", {})
    have = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8") if fl.get(f)]
    level = env.get("cpu_kernel_level", "unknown") + (f" (ZIMAGE_CPU={env['zimage_cpu']})" if env.get("zimage_cpu") else "")
    return (f"commit {env['commit']}, {env['cpu']} ({env['cores']} cores; {' '.join(have) or 'no avx2'}"
            f"{'' if fl.get('amx_tile') else ', no AMX'}), kernel level {level}, {env['threads']} threads, "
            f"load average {env['loadavg_start']:.1f} at start / {env.get('loadavg_end', float('nan')):.1f} at end, {env['date']}")


# ---------------------------------------------------------------------------------------------
# Benchmarks.
# ---------------------------------------------------------------------------------------------
def variant_levels(args):
    """Kernel level of each zimage column: the main build under this environment, each variant
    under its own."""
    main = kernel_level(args.build_dir)
    levels = {"zimage": main, "zimage_low_memory": main}
    for v in args.variant:
        levels["variant_" + v["label"]] = kernel_level(v["build_dir"], v["env"])
    return levels


def bench_pipeline(args, report, md):
    cfg = json.load(open(os.path.join(args.model, "transformer", "config.json")))
    vcfg = json.load(open(os.path.join(args.model, "vae", "config.json")))
    vae_scale = 2 ** (len(vcfg["block_out_channels"]) - 1)
    gemm = None if args.skip_gemm or args.skip_zimage else run_gemm(args)
    torch_gemm = run_torch_gemm(args, gemm) if gemm and not args.skip_torch else None
    report["gemm"] = gemm
    report["gemm_pytorch"] = torch_gemm
    levels = variant_levels(args)
    outdir = args.out_dir or tempfile.mkdtemp(prefix="zimage-bench-")
    os.makedirs(outdir, exist_ok=True)
    if gemm:
        tg = {(g["dtype"], g["M"], g["K"], g["N"]): g for g in (torch_gemm or [])}
        md.append("GEMM (zimage ops::linear; PyTorch F.linear when run):\n\n" + md_table(
            ["dtype", "M", "K", "N", "ms (median)", "GFLOP/s (median)", "GFLOP/s (best)", "PyTorch GFLOP/s (best)"],
            [[g["dtype"], str(g["M"]), str(g["K"]), str(g["N"]), g["ms_median"], g["gflops_median"], g["gflops_best"],
              tg.get((g["dtype"], g["M"], g["K"], g["N"]), {}).get("gflops_best")]
             for g in gemm]))
    for dtype in args.dtype:
        vae_dtype = args.vae_dtype or dtype
        for (w, h) in args.sizes:
            key = f"{w}x{h}_{dtype}"
            res = dict(width=w, height=h, dtype=dtype, vae_dtype=vae_dtype, steps=args.steps, guidance=args.guidance,
                       seed=args.seed, prompt=args.prompt)
            runs = {}  # side -> one result per repetition; the sides alternate so slow phases hit both
            for rep in range(args.repeat):
                sides = []
                if not args.skip_zimage:
                    sides.append(("zimage", lambda: run_zimage_cli(args, w, h, dtype, vae_dtype, False, outdir)))
                    if args.low_memory:
                        sides.append(("zimage_low_memory", lambda: run_zimage_cli(args, w, h, dtype, vae_dtype, True, outdir)))
                    for v in args.variant:
                        sides.append(("variant_" + v["label"],
                                      lambda v=v: run_zimage_cli(args, w, h, dtype, vae_dtype, False, outdir, variant=v)))
                if not args.skip_torch:
                    png = os.path.join(outdir, f"pytorch_{w}x{h}_{dtype}.png")
                    sides.append(("pytorch", lambda: dict(run_torch(
                        args, "pipeline", dtype=dtype, vae_dtype=vae_dtype, width=w, height=h, steps=args.steps,
                        guidance=args.guidance, seed=args.seed, prompt=args.prompt, output=png), output=png)))
                if args.controlnet:  # the same runs with the ControlNet: its extra cost per step
                    ctrl = control_image(args, outdir, w, h)
                    if not args.skip_zimage:
                        sides.append(("zimage_controlnet",
                                      lambda: run_zimage_cli(args, w, h, dtype, vae_dtype, False, outdir, control=ctrl)))
                    if not args.skip_torch:
                        cpng = os.path.join(outdir, f"pytorch_{w}x{h}_{dtype}_controlnet.png")
                        sides.append(("pytorch_controlnet", lambda: dict(run_torch(
                            args, "pipeline", dtype=dtype, vae_dtype=vae_dtype, width=w, height=h, steps=args.steps,
                            guidance=args.guidance, seed=args.seed, prompt=args.prompt, output=cpng,
                            controlnet=os.path.abspath(args.controlnet), control_image=ctrl,
                            control_scale=args.control_scale), output=cpng)))
                for name, fn in (sides if rep % 2 == 0 else sides[::-1]):
                    cached = evict_model(args) if args.evict else None
                    load_before = os.getloadavg()[0]
                    r = fn()
                    r["loadavg_before"] = load_before
                    if args.evict:
                        r["cached_bytes_before"] = cached
                    r["steady_step_s"] = steady(r["step_s"])
                    r["first_step_s"] = r["step_s"][0]
                    runs.setdefault(name, []).append(r)
            for name, rs in runs.items():
                res[name] = best_of(rs)
            # FLOPs of one step: caption token counts from zimage's tokenizer (or PyTorch's run).
            if not args.skip_zimage:
                caps = [prompt_tokens(args, args.prompt)] + ([prompt_tokens(args, "")] if args.guidance > 0 else [])
            else:
                caps = [res["pytorch"]["prompt_tokens"]] + ([res["pytorch"]["negative_tokens"]] if args.guidance > 0 else [])
            flops = transformer_flops_per_step(cfg, w, h, vae_scale, caps)
            res["caption_tokens"] = caps
            res["step_gflop"] = flops / 1e9
            # The machine's measured GEMM peak: the best call of either library at these shapes.
            peak = max((g["gflops_best"] for g in (gemm or []) + (torch_gemm or []) if g["dtype"] == dtype),
                       default=None)
            res["gemm_peak_gflops"] = peak
            vcols = ["variant_" + v["label"] for v in args.variant if "variant_" + v["label"] in res]
            cols = [c for c in ("zimage", "zimage_low_memory", *vcols, "pytorch", "zimage_controlnet", "pytorch_controlnet")
                    if c in res]
            for c in cols:
                if c.endswith("_controlnet"):  # the FLOP count is the transformer's alone
                    continue
                r = res[c]
                # (a tiny model's step can print as 0.000 s)
                r["step_gflops"] = flops / r["steady_step_s"] / 1e9 if r["steady_step_s"] > 0 else None
                r["pct_of_gemm_peak"] = 100 * r["step_gflops"] / peak if peak and r["step_gflops"] else None
            for c in cols:
                if not c.startswith("pytorch"):  # zimage + ControlNet runs the main build
                    res[c]["kernel_level"] = levels.get(c, levels["zimage"])
            report["pipeline"][key] = res
            names = {"zimage": "zimage", "zimage_low_memory": "zimage --low-memory", "pytorch": "PyTorch",
                     "zimage_controlnet": "zimage + ControlNet", "pytorch_controlnet": "PyTorch + ControlNet",
                     **{"variant_" + v["label"]: v["label"] for v in args.variant}}
            header = ["", *[names[c] for c in cols]]
            z, t = res.get("zimage"), res.get("pytorch")
            if z and t:
                header.append("zimage / PyTorch")
            if z:
                header += [f"{names[c]} / zimage" for c in vcols]
            rows = [["kernel level", *[res[c].get("kernel_level", "–") for c in cols]]
                    + [None] * (len(header) - 1 - len(cols))]
            for label, k in [("load s", "load_s"), ("text encoding s", "text_encoder_s"),
                             ("first denoising step s", "first_step_s"), ("s / denoising step (steady)", "steady_step_s"),
                             ("VAE decode s", "vae_s"), ("end-to-end s (excl. load)", "total_s"),
                             ("peak RSS GB", "peak_rss_gb"), ("step GFLOP/s", "step_gflops"),
                             (f"% of {dtype} GEMM peak (best of zimage, PyTorch)", "pct_of_gemm_peak")]:
                row = [label] + [res[c].get(k) for c in cols]
                if z and t:
                    row.append(x_ratio(ratio(z.get(k), t.get(k))) if k != "pct_of_gemm_peak" else None)
                if z:
                    row += [x_ratio(ratio(res[c].get(k), z.get(k))) if k != "pct_of_gemm_peak" else None for c in vcols]
                rows.append(row)
            title = (f"{w}x{h}, {dtype} (VAE {vae_dtype}), {args.steps} steps, guidance {args.guidance}, seed {args.seed}, "
                     f"caption tokens {caps}, transformer {cfg['n_layers']}+{cfg['n_refiner_layers']}+{cfg['n_refiner_layers']} "
                     f"layers dim {cfg['dim']}: {flops / 1e9:.0f} GFLOP/step"
                     + (f"; {dtype} GEMM peak {peak:.0f} GFLOP/s" if peak else "")
                     + (f"; best of {args.repeat} runs per side" if args.repeat > 1 else "")
                     + ("; weights evicted from the page cache before each run" if args.evict else ""))
            if z and t:
                res["pixel_diff"] = compare_images(args, z["output"], t["output"])
                if res["pixel_diff"]:
                    rows.append(["image vs PyTorch: max / mean abs diff (0-255)",
                                 f"{res['pixel_diff']['max_abs']} / {res['pixel_diff']['mean_abs']:.2f}"]
                                + [None] * (len(header) - 2))
            md.append(f"{title}\n\n" + md_table(header, rows))
            if args.controlnet:
                md.append(controlnet_table(args, res))


def control_image(args, outdir, w, h):
    """A control image of the output size (a line drawing; the ControlNet's cost does not depend on it)."""
    path = os.path.join(outdir, f"control_{w}x{h}.png")
    script = ("import sys\nfrom PIL import Image, ImageDraw\nw, h = int(sys.argv[2]), int(sys.argv[3])\n"
              "im = Image.new('RGB', (w, h))\nd = ImageDraw.Draw(im)\n"
              "[d.line((0, y, w, h - y), fill=(255, 255, 255), width=3) for y in range(0, h, 37)]\nim.save(sys.argv[1])\n")
    subprocess.run([args.python, "-c", script, path, str(w), str(h)], check=True)
    return path


def controlnet_table(args, res):
    """ControlNet's extra seconds per denoising step on each side (with minus without, steady steps)."""
    cn = json.load(open(os.path.join(args.controlnet, "config.json")))
    rows = []
    extra = {}
    for side, base in (("zimage", "zimage"), ("PyTorch", "pytorch")):
        a, b = res.get(base + "_controlnet"), res.get(base)
        if a and b:
            extra[side] = a["steady_step_s"] - b["steady_step_s"]
            rows.append([side, b["steady_step_s"], a["steady_step_s"], extra[side], a["load_s"] - b["load_s"]])
    res["controlnet_extra_step_s"] = extra
    if "zimage" in extra and "PyTorch" in extra:
        rows.append(["zimage / PyTorch", None, None, x_ratio(ratio(extra["zimage"], extra["PyTorch"])), None])
    title = (f"ControlNet {args.controlnet}: control_layers_places {cn['control_layers_places']}, "
             f"add_control_noise_refiner {cn.get('add_control_noise_refiner')}, control_refiner_layers_places "
             f"{cn.get('control_refiner_layers_places')}, control_in_dim {cn['control_in_dim']}, "
             f"conditioning scale {args.control_scale}")
    return f"{title}\n\n" + md_table(["", "s / step without", "s / step with ControlNet", "extra s / step",
                                         "extra load s"], rows)


QUANT_COMPARE_SCRIPT = r"""
import json, sys
import numpy as np
from PIL import Image
from safetensors.numpy import load_file
out = {}
for name, a_png, b_png, a_lat, b_lat in json.loads(sys.argv[1]):
    a = np.asarray(Image.open(a_png).convert("RGB")).astype(np.float64)
    b = np.asarray(Image.open(b_png).convert("RGB")).astype(np.float64)
    mse = float(((a - b) ** 2).mean())
    out[name] = {"psnr_db": 10 * np.log10(255.0 ** 2 / mse) if mse > 0 else float("inf")}
    if a_lat and b_lat:
        la = next(iter(load_file(a_lat).values())).astype(np.float64)
        lb = next(iter(load_file(b_lat).values())).astype(np.float64)
        out[name]["latents_rel_l2"] = float(np.linalg.norm(la - lb) / np.linalg.norm(lb))
print(json.dumps(out))
"""

# stable-diffusion.cpp's log (sd-cli): the progress line of each sampling step ("\r[===] 2/4 - 3.21s/it",
# the time since the previous step; step 1 prints 0), and its stage times.
SD_STEP_RE = re.compile(r"\|?\s*(\d+)/(\d+) - ([\d.]+)(s/it|it/s)")
SD_TIMES = {"text_encoder_s": re.compile(r"get_learned_condition completed, taking ([\d.]+)s"),
            "denoise_s": re.compile(r"sampling completed, taking ([\d.]+)s"),
            "vae_s": re.compile(r"decode_first_stage completed, taking ([\d.]+)s"),
            "total_s": re.compile(r"generate_image completed in ([\d.]+)s"),
            "load_s": re.compile(r"loading tensors completed, taking ([\d.]+)s")}


def parse_sdcpp_log(text, steps):
    """Stage times and per-step seconds from sd-cli's output (stdout and stderr together)."""
    out = {}
    for k, rx in SD_TIMES.items():
        m = rx.findall(text)
        out[k] = sum(float(x) for x in m) if k == "load_s" else (float(m[-1]) if m else None)
    # the sampling section: after the last "sampling using", before "sampling completed"
    a = text.rfind("sampling using")
    b = text.find("sampling completed", max(a, 0))
    sec = text[max(a, 0):b if b >= 0 else len(text)]
    per = {}
    for m in SD_STEP_RE.finditer(sec.replace("\r", "\n")):
        i, n, v, unit = int(m.group(1)), int(m.group(2)), float(m.group(3)), m.group(4)
        if n == steps and i >= 1:
            per[i] = (1.0 / v if v > 0 else 0.0) if unit == "it/s" else v
    if None in (out["denoise_s"], out["total_s"]) or sorted(per) != list(range(1, steps + 1)):
        raise SystemExit(f"[bench] cannot read stable-diffusion.cpp's step times (steps {sorted(per)} of {steps}):\n"
                         f"{text[-3000:]}")
    later = [per[i] for i in range(2, steps + 1)]
    # step 1 prints no time of its own: the sampling total minus the later steps
    out["step_s"] = [out["denoise_s"] - sum(later)] + later
    return out


def run_sdcpp(args, width, height, transformer, text_encoder, outdir, tag):
    """One sd-cli txt2img run on the same GGUF transformer; its peak RSS from wait4."""
    png = os.path.join(outdir, f"sdcpp_{width}x{height}{tag}.png")
    vae = sorted(f for f in os.listdir(os.path.join(args.model, "vae")) if f.endswith(".safetensors"))
    if len(vae) != 1:
        raise SystemExit(f"[bench] stable-diffusion.cpp needs one vae/*.safetensors in {args.model}, found {vae}")
    cmd = [args.sdcpp, "--diffusion-model", transformer, "--llm", text_encoder,
           "--vae", os.path.join(args.model, "vae", vae[0]), "-p", args.prompt, "-W", str(width), "-H", str(height),
           "--steps", str(args.steps), "--cfg-scale", str(max(1.0, args.guidance)), "--sampling-method", "euler",
           "-s", str(args.seed), "-t", str(args.threads), "-o", png, *args.sdcpp_arg]
    r = run_measured(cmd, env=zimage_env(args.threads), label=f"stable-diffusion.cpp{tag}")
    d = parse_sdcpp_log(r.stdout + "\n" + r.stderr, args.steps)
    d.update(peak_rss_gb=r.peak_rss_gb, wall_s=r.wall_s, output=png)
    return d


def quantize_file(args, report, outdir, what, qtype, extra):
    """A GGUF file of tools/bench/quantize_gguf.py in --out-dir (reused when there)."""
    path = os.path.join(outdir, f"{what}-{qtype}.gguf")
    if not os.path.exists(path):
        r = run_measured([args.python, os.path.join(ROOT, "tools", "bench", "quantize_gguf.py"), "--model", args.model,
                          "--type", qtype, "--out", path + ".part", *extra], env=torch_env(args.threads),
                         label=f"quantize {what} {qtype}")
        os.replace(path + ".part", path)
        report.setdefault("quantize", {})[f"{what}-{qtype}"] = last_json(r.stdout)
    return path


def bench_quant(args, report, md):
    """bf16 transformer vs its quantized GGUF (tools/bench/quantize_gguf.py, in the original /
    ComfyUI key layout that zimage and stable-diffusion.cpp both read) on the integer GEMM and on
    the dequantize path (ZIMAGE_QUANT_COMPUTE=dequant), all in bf16 compute; beside them diffusers
    bf16 and diffusers' GGUF path (from_single_file + GGUFQuantizationConfig(compute_dtype=bf16)) on
    the same files, and stable-diffusion.cpp (--sdcpp) on the same files; every run interleaved
    (the order reversed every other repetition). Quality: the final latents' rel-L2 and the image
    PSNR against the bf16 run, and against the same file's dequantize path."""
    outdir = args.out_dir or tempfile.mkdtemp(prefix="zimage-bench-quant-")
    os.makedirs(outdir, exist_ok=True)
    ggufs = {t: quantize_file(args, report, outdir, "transformer-original", t, ["--layout", "original"])
             for t in args.quant}
    te_gguf = (quantize_file(args, report, outdir, "text_encoder", args.sdcpp_te, ["--component", "text_encoder"])
               if args.sdcpp else None)
    variants = []  # (name, kind, run(tag))
    if not args.skip_zimage:
        def zi(extra, env):
            def run(tag, w, h):
                lat = os.path.join(outdir, f"latents_{w}x{h}{tag}.safetensors")
                r = run_zimage_cli(args, w, h, "bf16", args.vae_dtype or "bf16", False, outdir,
                                   extra=list(extra) + ["--save-latents", lat], extra_env=env, tag=tag)
                r["latents"] = lat
                return r
            return run
        variants.append(("bf16", "zimage", zi([], {})))
        for t in args.quant:
            variants.append((f"{t} int", "zimage", zi(["--transformer", ggufs[t]], {"ZIMAGE_QUANT_COMPUTE": "int"})))
            if not args.no_dequant:
                variants.append((f"{t} dequant", "zimage",
                                 zi(["--transformer", ggufs[t]], {"ZIMAGE_QUANT_COMPUTE": "dequant"})))
    if not args.skip_torch:
        def torch_run(gguf):
            def run(tag, w, h):
                png = os.path.join(outdir, f"diffusers_{w}x{h}{tag}.png")
                lat = os.path.join(outdir, f"diffusers_latents_{w}x{h}{tag}.safetensors")
                kw = dict(gguf=gguf) if gguf else {}
                return dict(run_torch(args, "pipeline", dtype="bf16", vae_dtype=args.vae_dtype or "bf16", width=w,
                                      height=h, steps=args.steps, guidance=args.guidance, seed=args.seed,
                                      prompt=args.prompt, output=png, latents_out=lat, **kw), output=png, latents=lat)
            return run
        variants.append(("diffusers bf16", "diffusers", torch_run(None)))
        for t in (args.quant if args.torch_quant is None else args.torch_quant):
            variants.append((f"diffusers {t} GGUF", "diffusers", torch_run(ggufs[t])))
    if args.sdcpp:
        for t in args.quant:
            variants.append((f"sd.cpp {t}", "sd.cpp",
                             lambda tag, w, h, t=t: dict(run_sdcpp(args, w, h, ggufs[t], te_gguf, outdir, tag),
                                                         latents=None)))
    for (w, h) in args.sizes:
        key = f"{w}x{h}_quant"
        runs = {}
        for rep in range(args.repeat):
            for name, kind, fn in (variants if rep % 2 == 0 else variants[::-1]):
                tag = "_" + name.replace(" ", "_")
                load_before = os.getloadavg()[0]
                r = fn(tag, w, h)
                r["engine"] = kind
                r["loadavg_before"] = load_before
                r["steady_step_s"] = steady(r["step_s"])
                r["first_step_s"] = r["step_s"][0]
                runs.setdefault(name, []).append(r)
        res = {name: best_of(rs) for name, rs in runs.items()}
        pairs = []
        for name in res:
            if name != "bf16" and "bf16" in res and res[name]["engine"] != "sd.cpp":
                ref = "bf16" if res[name]["engine"] == "zimage" else "diffusers bf16"
                if ref in res and ref != name:
                    pairs.append([f"{name} vs bf16", res[name]["output"], res[ref]["output"], res[name]["latents"],
                                  res[ref]["latents"]])
            if name.endswith(" int"):
                dq = name.replace(" int", " dequant")
                if dq in res:
                    pairs.append([f"{name} vs {dq}", res[name]["output"], res[dq]["output"], res[name]["latents"],
                                  res[dq]["latents"]])
            if name.startswith("diffusers ") and name.endswith(" GGUF"):  # same math as zimage's dequantize path
                zq = name[len("diffusers "):-len(" GGUF")]
                for zn in (f"{zq} dequant", f"{zq} int"):
                    if zn in res:
                        pairs.append([f"{name} vs zimage {zn}", res[name]["output"], res[zn]["output"],
                                      res[name]["latents"], res[zn]["latents"]])
                        break
            if name == "diffusers bf16" and "bf16" in res:
                pairs.append(["diffusers bf16 vs zimage bf16", res[name]["output"], res["bf16"]["output"],
                              res[name]["latents"], res["bf16"]["latents"]])
        quality = {}
        if pairs:
            r = subprocess.run([args.python, "-c", QUANT_COMPARE_SCRIPT, json.dumps(pairs)], capture_output=True,
                               text=True, timeout=600)
            if r.returncode != 0:
                raise SystemExit(f"[bench] comparing the quant runs failed:\n{r.stderr[-3000:]}")
            quality = json.loads(r.stdout.strip().splitlines()[-1])
        report["pipeline"][key] = dict(variants=res, quality=quality)
        base = res["bf16"]["steady_step_s"] if "bf16" in res else None
        rows = []
        for name, kind, _ in variants:
            v = res[name]
            q = quality.get(f"{name} vs bf16", {})
            qd = quality.get(f"{name} vs {name.replace(' int', ' dequant')}", {}) if name.endswith(" int") else {}
            qz = next((x for k, x in quality.items() if k.startswith(f"{name} vs zimage")), {})
            rows.append([kind, name, v["steady_step_s"], x_ratio(ratio(base, v["steady_step_s"])), v["first_step_s"],
                         v.get("text_encoder_s"), v.get("vae_s"), v["total_s"], v["peak_rss_gb"],
                         q.get("latents_rel_l2"), q.get("psnr_db"), qd.get("latents_rel_l2"), qd.get("psnr_db"),
                         qz.get("latents_rel_l2"), qz.get("psnr_db")])
        sd_note = ""
        if args.sdcpp:
            sd_note = (f"; stable-diffusion.cpp {os.path.abspath(args.sdcpp)} with text encoder "
                       f"{os.path.basename(te_gguf)}, flags {' '.join(args.sdcpp_arg) or '(none)'}, its own RNG "
                       "(images not comparable)")
        md.append(f"{w}x{h}, bf16 compute (VAE {args.vae_dtype or 'bf16'}), {args.steps} steps, seed {args.seed}; "
                  f"transformer bf16 vs the same GGUF files ({', '.join(args.quant)}, original/ComfyUI key layout) "
                  f"in every engine; best of {args.repeat} interleaved runs per variant{sd_note}. Ratios: zimage bf16's "
                  "steady step divided by this one (> 1: faster than zimage bf16). Quality: vs the same engine's bf16 "
                  "run; 'vs dequant': zimage's integer GEMM against the same file's dequantize path; 'vs zimage': "
                  "diffusers against zimage on the same weights (same seed and RNG)\n\n"
                  + md_table(["engine", "transformer", "s / step (steady)", "zimage bf16 step / this step",
                              "first step s", "text encoding s", "VAE s", "end-to-end s", "peak RSS GB",
                              "latents rel-L2 vs bf16", "PSNR vs bf16 dB", "latents rel-L2 vs dequant",
                              "PSNR vs dequant dB", "latents rel-L2 vs zimage", "PSNR vs zimage dB"], rows))


def default_corpus(path):
    """License texts + diffusers' Python sources (sorted, deterministic), about 4 MB."""
    parts, size = [], 0
    lic = "/usr/share/common-licenses"
    srcs = []
    if os.path.isdir(lic):
        srcs += [os.path.join(lic, f) for f in sorted(os.listdir(lic))]
    try:
        out = subprocess.run([ARGS.python, "-c", "import diffusers, os; print(os.path.dirname(diffusers.__file__))"],
                             capture_output=True, text=True, env=torch_env(1)).stdout.strip()
        for d, _, fs in sorted(os.walk(out)):
            srcs += [os.path.join(d, f) for f in sorted(fs) if f.endswith(".py")]
    except OSError:
        pass
    for s in srcs:
        if not os.path.isfile(s) or os.path.islink(s):
            continue
        b = open(s, "rb").read()
        parts.append(b)
        size += len(b)
        if size > 4 << 20:
            break
    with open(path, "wb") as f:
        f.write(b"\n".join(parts))
    return path


def bench_text_encoder(args, report, md):
    rows = []
    corpus = args.corpus or default_corpus(os.path.join(tempfile.mkdtemp(prefix="zimage-bench-"), "corpus.txt"))
    tk = {}
    if not args.skip_zimage:
        r = run_measured([tool(args, "bench_tokenizer"), os.path.join(args.model, "tokenizer"), "--corpus", corpus,
                          "--threads", str(args.threads), "--reps", "3"], env=zimage_env(args.threads),
                         label="zimage bench_tokenizer")
        tk["zimage"] = last_json(r.stdout)
    if not args.skip_torch:
        tk["pytorch"] = run_torch(args, "tokenizer", corpus=corpus, reps=3)
    report["tokenizer"] = dict(corpus=corpus, **tk)
    z, t = tk.get("zimage"), tk.get("pytorch")
    if z and t and not z["tokens"] == t["tokens"] == t["rust"]["tokens"]:
        print(f"[bench] WARNING: token counts differ: zimage {z['tokens']}, transformers {t['tokens']}, "
              f"tokenizers {t['rust']['tokens']}", file=sys.stderr)
    rs = t and t["rust"]
    for label, k in [("tokens", "tokens"), ("tokens/s (first pass)", "tokens_per_s_first"),
                     ("tokens/s (best of 3)", "tokens_per_s")]:
        rows.append([label, z and z[k], t and t[k], rs and rs[k],
                     x_ratio(ratio(z and z[k], t and t[k])) if k != "tokens" else None,
                     x_ratio(ratio(z and z[k], rs and rs[k])) if k != "tokens" else None])
    size = os.path.getsize(corpus)
    md.append(f"Tokenizer: {size / 1e6:.1f} MB corpus, one text per non-empty line, {args.threads} threads "
              f"(zimage: OpenMP over lines; transformers: `tokenizer(lines)` batch call; tokenizers: the Rust "
              f"`backend_tokenizer.encode_batch_fast`; both with RAYON_NUM_THREADS={args.threads})\n\n"
              + md_table(["", "zimage", "transformers", "tokenizers (Rust)", "zimage / transformers",
                          "zimage / tokenizers"], rows))
    for dtype in args.dtype:
        te = {}
        if not args.skip_zimage:
            r = run_measured([tool(args, "bench_text_encoder"), args.model, "--prompt", args.te_prompt, "--dtype", dtype,
                              "--threads", str(args.threads), "--reps", str(args.reps)], env=zimage_env(args.threads),
                             label=f"zimage bench_text_encoder {dtype}")
            te["zimage"] = dict(last_json(r.stdout), peak_rss_gb=r.peak_rss_gb)
        if not args.skip_torch:
            te["pytorch"] = run_torch(args, "text_encoder", dtype=dtype, prompt=args.te_prompt, reps=args.reps,
                                      max_sequence_length=512)
        for v in te.values():
            v["steady_s"] = steady(v["seconds"])
            v["first_s"] = v["seconds"][0]
        report["text_encoder"][dtype] = te
        z, t = te.get("zimage"), te.get("pytorch")
        rows = []
        for label, k in [("load s", "load_s"), ("first call s", "first_s"), ("encode s (median after first)", "steady_s"),
                         ("peak RSS GB", "peak_rss_gb")]:
            rows.append([label, z and z[k], t and t[k], x_ratio(ratio(z and z[k], t and t[k]))])
        tokens = (z or t)["tokens"]
        layers = json.load(open(os.path.join(args.model, "text_encoder", "config.json")))["num_hidden_layers"]
        md.append(f"Text encoder ({layers} layers in the folder), {dtype}, prompt of {tokens} tokens after the chat template "
                  f"(transformers pads to 512 as the pipeline does), {args.reps} calls\n\n"
                  + md_table(["", "zimage", "transformers", "zimage / transformers"], rows))


def bench_vae(args, report, md):
    dtypes = args.dtype
    levels = variant_levels(args)
    for dtype in dtypes:
        for (w, h) in args.sizes:
            def zimage_vae(exe, extra_env, name):
                r = run_measured([exe, os.path.join(args.model, "vae"), "--width", str(w), "--height", str(h), "--dtype",
                                  dtype, "--threads", str(args.threads), "--reps", str(args.reps), "--tiling", "off"],
                                 env=zimage_env(args.threads, extra_env), label=f"{name} bench_vae {w}x{h} {dtype}")
                return dict(last_json(r.stdout), peak_rss_gb=r.peak_rss_gb)
            sides = []
            if not args.skip_zimage:
                sides.append(("zimage", lambda: zimage_vae(tool(args, "bench_vae"), None, "zimage")))
                for var in args.variant:
                    sides.append(("variant_" + var["label"], lambda var=var: zimage_vae(
                        os.path.join(var["build_dir"], "tools", "bench", "bench_vae"), var["env"], "zimage " + var["label"])))
            if not args.skip_torch:
                sides.append(("pytorch", lambda: run_torch(args, "vae", dtype=dtype, width=w, height=h, reps=args.reps)))
            runs = {}  # as in the pipeline mode: --repeat alternates the order, each timing is the minimum
            for rep in range(args.repeat):
                for name, fn in (sides if rep % 2 == 0 else sides[::-1]):
                    load_before = os.getloadavg()[0]
                    v = fn()
                    v.update(loadavg_before=load_before, steady_s=steady(v["seconds"]), first_s=v["seconds"][0])
                    runs.setdefault(name, []).append(v)
            res = {name: best_of(rs) for name, rs in runs.items()}
            for name in res:
                if name != "pytorch":
                    res[name]["kernel_level"] = levels[name]
            report["vae"][f"{w}x{h}_{dtype}"] = res
            z, t = res.get("zimage"), res.get("pytorch")
            vs = [(v["label"], res.get("variant_" + v["label"])) for v in args.variant if "variant_" + v["label"] in res]
            rows = [["kernel level", z and z["kernel_level"], *[x["kernel_level"] for _, x in vs], None, None]
                    + [None] * len(vs)]
            for label, k in [("load s", "load_s"), ("first decode s", "first_s"), ("decode s (median after first)", "steady_s"),
                             ("peak RSS GB", "peak_rss_gb")]:
                rows.append([label, z and z[k], *[x[k] for _, x in vs], t and t[k], x_ratio(ratio(z and z[k], t and t[k]))]
                            + [x_ratio(ratio(x[k], z and z[k])) for _, x in vs])
            md.append(f"VAE decode {w}x{h}, {dtype}, untiled, {args.reps} decodes"
                      + (f"; best of {args.repeat} runs per side" if args.repeat > 1 else "") + "\n\n"
                      + md_table(["", "zimage", *[n for n, _ in vs], "diffusers", "zimage / diffusers",
                                  *[f"{n} / zimage" for n, _ in vs]], rows))


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="diffusers Z-Image folder (tools/bench/make_model.py writes one)")
    ap.add_argument("--size", type=int, nargs="+", help="square image size(s) (default 512)")
    ap.add_argument("--width", type=int)
    ap.add_argument("--height", type=int)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--guidance", type=float, default=0.0, help="guidance scale (Turbo: 0 = no CFG)")
    ap.add_argument("--dtype", nargs="+", choices=["bf16", "f32"],
                    help="compute dtype(s) (default bf16; --vae-only: f32 bf16)")
    ap.add_argument("--vae-dtype", choices=["bf16", "f32"], help="pipeline VAE dtype (default: --dtype, as "
                    "ZImagePipeline.from_pretrained(torch_dtype=...) runs it)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--prompt", default=DEFAULT_PROMPT)
    ap.add_argument("--te-prompt", default=LONG_PROMPT, help="prompt of --text-encoder-only (~100 tokens)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of --text-encoder-only / --vae-only calls")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--skip-zimage", action="store_true")
    ap.add_argument("--skip-gemm", action="store_true", help="do not run bench_gemm (no %% of peak)")
    ap.add_argument("--gemm-seconds", type=float, default=1.0, help="minimum seconds per GEMM shape")
    ap.add_argument("--low-memory", action="store_true", help="also run zimage with --low-memory (extra column)")
    ap.add_argument("--repeat", type=int, default=1, help="run each pipeline side N times, alternating the order, and "
                    "report the minimum of each timing (use 2-3 on a machine shared with other work)")
    ap.add_argument("--controlnet", help="pipeline mode: also run both sides with this ZImageControlNetModel folder "
                    "(make_model.py --controlnet) and report the ControlNet's extra cost per step")
    ap.add_argument("--control-scale", type=float, default=0.75, help="controlnet_conditioning_scale of --controlnet")
    ap.add_argument("--evict", action="store_true", help="drop the model's weight files from the page cache before "
                    "every pipeline run (cold start: the first step and text encoding read from disk)")
    ap.add_argument("--text-encoder-only", action="store_true", help="tokenizer throughput + text encoder time")
    ap.add_argument("--vae-only", action="store_true", help="VAE decode time on random latents")
    ap.add_argument("--quant", nargs="+", choices=["Q8_0", "Q4_K"],
                    help="bf16 vs the transformer quantized to these GGUF types, integer GEMM and dequantize path")
    ap.add_argument("--no-dequant", action="store_true", help="--quant: skip zimage's dequantize-path runs")
    ap.add_argument("--torch-quant", nargs="*", choices=["Q8_0", "Q4_K"], help="--quant: the types diffusers' GGUF "
                    "path runs (default: all of --quant; none: only diffusers bf16)")
    ap.add_argument("--sdcpp", metavar="BIN", help="--quant: also run stable-diffusion.cpp's sd-cli (tools/bench/peers/"
                    "stable-diffusion.cpp.sh builds it) on the same GGUF files")
    ap.add_argument("--sdcpp-te", default="Q8_0", choices=["Q8_0", "Q4_K", "Q4_K_M"],
                    help="type of the llama.cpp-named text encoder GGUF given to sd-cli --llm (default Q8_0)")
    ap.add_argument("--sdcpp-arg", action="append", default=[], help="an extra sd-cli argument (repeatable), e.g. "
                    "--sdcpp-arg=--diffusion-fa")
    ap.add_argument("--corpus", help="tokenizer corpus (default: license texts + diffusers sources, ~4 MB)")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"), help="CMake build folder with the binaries")
    ap.add_argument("--zimage-bin", help="zimage CLI (default BUILD_DIR/zimage)")
    ap.add_argument("--variant", action="append", default=[], type=parse_variant, metavar="LABEL=BUILD_DIR[:KEY=VALUE...]",
                    help="another zimage build, or this one under environment variables (e.g. "
                    "avx2=build:ZIMAGE_CPU=avx2), as an extra column beside 'zimage' (pipeline and --vae-only "
                    "modes); repeatable; with --repeat the columns alternate with the others")
    ap.add_argument("--python", default=os.path.expanduser("~/.cache/zimage-ref-venv/bin/python"),
                    help="python with torch + diffusers + transformers (default: the venv tools/reference/regenerate.sh makes)")
    ap.add_argument("--out-dir", help="folder for the generated images (default: a temp folder)")
    ap.add_argument("--commit", help="commit to report (default: git HEAD of this checkout, -dirty if modified); "
                    "set it when the binaries come from another tree (e.g. a clean export of a commit)")
    ap.add_argument("--json", help="write all results here")
    ap.add_argument("--markdown", help="write the tables here")
    args = ap.parse_args(argv)
    if args.text_encoder_only and args.vae_only:
        ap.error("--text-encoder-only and --vae-only are separate runs")
    if args.size and (args.width or args.height):
        ap.error("give --size or --width/--height")
    if args.width or args.height:
        args.sizes = [(args.width or args.height, args.height or args.width)]
    else:
        args.sizes = [(s, s) for s in (args.size or [512])]
    if not args.dtype:
        args.dtype = ["f32", "bf16"] if args.vae_only else ["bf16"]
    args.zimage_bin = args.zimage_bin or os.path.join(args.build_dir, "zimage")
    if args.steps < 1 or args.threads < 1 or args.repeat < 1:
        ap.error("--steps, --threads and --repeat must be >= 1")
    labels = [v["label"] for v in args.variant]
    if len(set(labels)) != len(labels):
        ap.error(f"--variant labels must differ (got {labels})")
    if args.torch_quant and not set(args.torch_quant) <= set(args.quant or []):
        ap.error("--torch-quant takes types of --quant")
    if args.sdcpp and not args.quant:
        ap.error("--sdcpp is a column of --quant runs")
    if args.sdcpp and not os.access(args.sdcpp, os.X_OK):
        ap.error(f"--sdcpp {args.sdcpp} is not an executable")
    if args.sdcpp and args.steps < 2:
        ap.error("--sdcpp needs --steps >= 2 (sd-cli prints no time for its first step alone)")
    if not os.path.isdir(args.model):
        ap.error(f"--model {args.model} is not a folder")
    if not args.skip_zimage and not args.text_encoder_only and not args.vae_only and not os.path.exists(args.zimage_bin):
        ap.error(f"{args.zimage_bin} not found: build it (ninja -C {args.build_dir} zimage_cli) or pass --zimage-bin")
    return args


ARGS = None


def main(argv=None):
    global ARGS
    args = ARGS = parse_args(sys.argv[1:] if argv is None else argv)
    env = environment(args)
    report = dict(environment=env, model=os.path.abspath(args.model), pipeline={}, text_encoder={}, vae={})
    md = []
    mode = ("text_encoder" if args.text_encoder_only else "vae" if args.vae_only else "quant" if args.quant
            else "pipeline")
    {"pipeline": bench_pipeline, "text_encoder": bench_text_encoder, "vae": bench_vae,
     "quant": bench_quant}[mode](args, report, md)
    env["loadavg_end"] = os.getloadavg()[0]
    what = ("bf16 vs quantized transformer: zimage.cpp, diffusers on PyTorch, stable-diffusion.cpp" if mode == "quant"
            else "zimage.cpp vs PyTorch CPU")
    text = f"{what} on {args.model}: {env_line(env)}\n\n" + "\n\n".join(md) + "\n"
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

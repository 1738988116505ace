#!/usr/bin/env python3
"""Peak RSS of the zimage pipeline on single weight files (GGUF transformer and text encoder), and
where that memory is: anonymous (allocated buffers) vs file-backed (mapped weight pages resident).

  python tools/bench/memory.py --model /work/wt/bench-runs/full-l30 --te-layers 36 \
      --run q8=--transformer:t-q8_0.gguf,--text-encoder:te36-q8_0.gguf \
      --run q8-lowmem=--transformer:t-q8_0.gguf,--text-encoder:te36-q8_0.gguf,--low-memory \
      --size 1024 --steps 1 --threads 2 --markdown mem.md

Each --run LABEL=ARG,ARG,... is one `zimage generate` (':' in an ARG stands for a space between an
option and its value), run one after the other (never two at once). Peak RSS is the kernel's
(wait4 ru_maxrss); while the process runs, /proc/PID/smaps_rollup is read every --interval seconds
and the sample with the largest Rss is reported split into anonymous and file-backed pages
(reading smaps_rollup costs CPU time: keep --interval at 1 s or more on a small machine); zimage's
progress lines on stderr say which stage each sample falls in, and the largest sample of each stage
(load + text encoding, denoising, VAE decode) is reported too.

--te-layers N: the folder's text_encoder/config.json says how many layers to run; a text encoder
file with another depth (e.g. quantize_gguf.py --random-text-encoder 36 on a folder made with
--te-layers 2) is run through a shadow folder (symlinks to the model's components, a copy of the
text encoder config with num_hidden_layers = N) written under --work-dir.
Only the Python standard library is needed.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (TIME_RE, STEP_RE, md_table, environment)


def shadow_folder(model, te_layers, work):
    d = os.path.join(work, f"model-te{te_layers}")
    os.makedirs(os.path.join(d, "text_encoder"), exist_ok=True)
    for name in os.listdir(model):
        if name == "text_encoder":
            continue
        link = os.path.join(d, name)
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(os.path.join(model, name)), link)
    cfg = json.load(open(os.path.join(model, "text_encoder", "config.json")))
    cfg["num_hidden_layers"] = te_layers
    if isinstance(cfg.get("layer_types"), list):
        cfg["layer_types"] = [cfg["layer_types"][0]] * te_layers
    with open(os.path.join(d, "text_encoder", "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return d


def rollup(pid):
    """kB values of /proc/PID/smaps_rollup (Rss, Anonymous, ...), or None when gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            out = {}
            for line in f:
                m = re.match(r"(\w+):\s+(\d+) kB", line)
                if m:
                    out[m.group(1)] = int(m.group(2))
            return out
    except OSError:
        return None


STAGE_RE = re.compile(r"^(text_encoder|vae): [\d.]+ s$|^denoise step (\d+)/(\d+):")


def run(cmd, env, interval):
    """Runs one zimage generate. Its stderr is read as it comes: the progress lines ("text_encoder:
    S s", "denoise step i/n: ...", "vae: S s") tell which stage each smaps_rollup sample falls in
    (load + text encoding, denoising, VAE decode), and the largest sample of each stage is kept."""
    print(f"[memory] {' '.join(cmd)}", file=sys.stderr, flush=True)
    with tempfile.TemporaryFile() as fo:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fo, stderr=subprocess.PIPE, env=env)
        best = {}
        stages = {}
        stage = ["load+text_encoder"]
        err_lines = []
        done = threading.Event()

        def sample():
            nonlocal best
            while not done.is_set():
                r = rollup(p.pid)
                if r:
                    st = stage[0]
                    if r.get("Rss", 0) > best.get("Rss", 0):
                        best = dict(r, t=time.perf_counter() - t0, stage=st)
                    if r.get("Rss", 0) > stages.get(st, {}).get("Rss", 0):
                        stages[st] = r
                done.wait(interval)

        def read_err():
            for raw in p.stderr:
                line = raw.decode("utf-8", "replace")
                err_lines.append(line)
                m = STAGE_RE.match(line.strip())
                if m:
                    if m.group(1) == "text_encoder":
                        stage[0] = "denoise"
                    elif m.group(1) == "vae":
                        stage[0] = "end"
                    elif m.group(2) and m.group(2) == m.group(3):
                        stage[0] = "vae"
        th = threading.Thread(target=sample, daemon=True)
        te = threading.Thread(target=read_err, daemon=True)
        th.start()
        te.start()
        _, status, ru = os.wait4(p.pid, 0)
        done.set()
        th.join()
        te.join()
        wall = time.perf_counter() - t0
        rc = os.waitstatus_to_exitcode(status)
        err = "".join(err_lines)
    if rc != 0:
        raise SystemExit(f"[memory] failed (exit {rc}):\n{err[-4000:]}")
    m = bench.TIME_RE.search(err)
    if not m:
        raise SystemExit(f"[memory] no 'time:' line in zimage's stderr:\n{err[-3000:]}")
    load, te_s, den, _, vae, total = map(float, m.groups())
    gib = 1024 ** 2  # kB -> GiB
    steps = [float(x.group(3)) for x in bench.STEP_RE.finditer(err)]
    by_stage = {k: dict(rss_gb=v.get("Rss", 0) / gib, anon_gb=v.get("Anonymous", 0) / gib,
                        file_gb=(v.get("Rss", 0) - v.get("Anonymous", 0)) / gib) for k, v in stages.items()}
    return dict(peak_rss_gb=ru.ru_maxrss / gib, wall_s=wall, load_s=load, text_encoder_s=te_s, denoise_s=den, vae_s=vae,
                total_s=total, step_s=steps, sampled_peak_rss_gb=best.get("Rss", 0) / gib,
                sampled_anon_gb=best.get("Anonymous", 0) / gib,
                sampled_file_gb=(best.get("Rss", 0) - best.get("Anonymous", 0)) / gib,
                sampled_at_s=best.get("t"), sampled_stage=best.get("stage"), by_stage=by_stage,
                stderr_tail=err[-2000:])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--zimage-bin", default=os.path.join(bench.ROOT, "build", "zimage"))
    ap.add_argument("--run", action="append", required=True, metavar="LABEL=ARG,ARG,...")
    ap.add_argument("--te-layers", type=int)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--prompt", default=bench.DEFAULT_PROMPT)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between smaps_rollup samples (each read walks the "
                    "page tables of the process: CPU time on a busy machine)")
    ap.add_argument("--work-dir", default=tempfile.gettempdir())
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    args = ap.parse_args()
    model = shadow_folder(args.model, args.te_layers, args.work_dir) if args.te_layers else args.model
    res = {}
    for spec in args.run:
        label, sep, rest = spec.partition("=")
        if not sep or not label:
            ap.error(f"--run '{spec}': expected LABEL=ARG,ARG,...")
        extra = [x for a in rest.split(",") if a for x in a.split(":", 1)]
        png = os.path.join(args.work_dir, f"memory_{label}.png")
        cmd = [args.zimage_bin, "generate", "-m", model, "-p", args.prompt, "-W", str(args.size), "-H", str(args.size),
               "-s", str(args.steps), "--seed", str(args.seed), "--dtype", "bfloat16", "--vae-dtype", "bfloat16",
               "-t", str(args.threads), "-o", png, "--overwrite", *extra]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        load_before = os.getloadavg()[0]
        r = run(cmd, env, args.interval)
        r.update(args=extra, loadavg_before=load_before)
        res[label] = r
        print(f"[memory] {label}: peak RSS {r['peak_rss_gb']:.2f} GB (sampled {r['sampled_peak_rss_gb']:.2f}: anon "
              f"{r['sampled_anon_gb']:.2f}, file {r['sampled_file_gb']:.2f}), end to end {r['total_s'] - r['load_s']:.1f} s",
              file=sys.stderr, flush=True)
    env = bench.environment(argparse.Namespace(commit=None, build_dir=os.path.dirname(os.path.abspath(args.zimage_bin)),
                                               threads=args.threads))
    env["loadavg_end"] = os.getloadavg()[0]

    def stage_gb(r, st):
        v = r["by_stage"].get(st)
        return f"{v['rss_gb']:.2f} ({v['anon_gb']:.2f} + {v['file_gb']:.2f})" if v else "-"

    rows = [[label, " ".join(r["args"]), r["peak_rss_gb"], r["sampled_stage"] or "-", r["sampled_anon_gb"],
             r["sampled_file_gb"], stage_gb(r, "load+text_encoder"), stage_gb(r, "denoise"), stage_gb(r, "vae"),
             r["load_s"], r["text_encoder_s"], " / ".join(f"{x:.2f}" for x in r["step_s"]), r["vae_s"],
             r["total_s"] - r["load_s"], r["loadavg_before"]]
            for label, r in res.items()]
    text = (f"zimage peak RSS on {args.model}{f' (text encoder run with {args.te_layers} layers)' if args.te_layers else ''}, "
            f"{args.size}x{args.size}, {args.steps} step(s), bf16 compute and VAE: {bench.env_line(env)}\n\n"
            + bench.md_table(["run", "arguments", "peak RSS GB (wait4)", "sampled peak in", "at the peak: anonymous GB",
                              "at the peak: file-backed GB", "load + text encoding: max RSS GB (anon + file)",
                              "denoising: max RSS GB", "VAE: max RSS GB", "load s", "text encoding s", "s per step",
                              "VAE s", "end-to-end s (excl. load)", "load average before"], rows) + "\n")
    print(text)
    if args.markdown:
        open(args.markdown, "w").write(text)
    if args.json:
        json.dump(dict(environment=env, model=args.model, te_layers=args.te_layers, runs=res), open(args.json, "w"),
                  indent=1)


if __name__ == "__main__":
    sys.exit(main())

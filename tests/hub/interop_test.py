"""zimage and huggingface_hub share one cache, both ways (run by tests/hub/interop.sh with the
test virtualenv's python, which has the pinned huggingface_hub).

1. `zimage pull` from the fake hub -> huggingface_hub finds the snapshot with
   local_files_only=True (snapshot_download, hf_hub_download) and scan_cache_dir sees no damage.
2. huggingface_hub's snapshot_download from the fake hub (HF_ENDPOINT) -> `zimage generate -m`
   uses it with HF_HUB_OFFLINE=1, and `zimage pull` finds every file already there.
Prints a summary and exits non-zero on any failure.
"""
import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile

REPO = "tiny-org/zimage-tiny"
results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else ": " + str(detail)), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--fixture", required=True)
    ap.add_argument("--fake-hub", required=True)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="zimage_interop_")
    log = os.path.join(tmp, "requests.log")
    hub = subprocess.Popen([sys.executable, a.fake_hub, "--repo", REPO + "=" + a.fixture, "--log", log,
                            "--lifetime", "240"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        hub_port = int(hub.stdout.readline().split()[0])
        endpoint = "http://127.0.0.1:%d" % hub_port
        # huggingface_hub reads its environment when imported.
        for k in ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_HOME", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                  "ALL_PROXY", "all_proxy"):
            os.environ.pop(k, None)
        os.environ.update({"HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                           "HF_HOME": os.path.join(tmp, "home")})
        import huggingface_hub
        from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download

        print("huggingface_hub", huggingface_hub.__version__, flush=True)
        env = dict(os.environ)

        # 1. zimage writes, huggingface_hub reads.
        cache_a = os.path.join(tmp, "cache-a")
        r = subprocess.run([a.cli, "pull", REPO], env={**env, "HF_HUB_CACHE": cache_a}, capture_output=True, text=True)
        check("zimage pull", r.returncode == 0, r.stderr)
        zimage_snapshot = r.stdout.strip()
        try:
            snap = snapshot_download(REPO, cache_dir=cache_a, local_files_only=True)
            check("snapshot_download(local_files_only=True) finds zimage's snapshot",
                  os.path.realpath(snap) == os.path.realpath(zimage_snapshot), (snap, zimage_snapshot))
            f = hf_hub_download(REPO, "transformer/diffusion_pytorch_model.safetensors", cache_dir=cache_a,
                                local_files_only=True)
            check("hf_hub_download(local_files_only=True) reads zimage's blob",
                  filecmp.cmp(f, os.path.join(a.fixture, "transformer/diffusion_pytorch_model.safetensors"), shallow=False))
            info = scan_cache_dir(cache_a)
            repos = [x for x in info.repos if x.repo_id == REPO]
            check("scan_cache_dir sees the repository without warnings",
                  not info.warnings and len(repos) == 1 and repos[0].size_on_disk > 0 and
                  any(rv.commit_hash in zimage_snapshot and "main" in rv.refs for rv in repos[0].revisions),
                  (info.warnings, repos))
        except Exception as e:  # noqa: BLE001
            check("huggingface_hub reads zimage's cache", False, repr(e))

        # 2. huggingface_hub writes, zimage reads (offline), and a zimage pull finds it all there.
        cache_b = os.path.join(tmp, "cache-b")
        try:
            snap = snapshot_download(REPO, cache_dir=cache_b)
            check("snapshot_download from the fake hub", os.path.isfile(os.path.join(snap, "model_index.json")), snap)
        except Exception as e:  # noqa: BLE001
            check("snapshot_download from the fake hub", False, repr(e))
        png = os.path.join(tmp, "out.png")
        r = subprocess.run([a.cli, "generate", "-m", REPO, "-p", "a cat", "-W", "64", "-H", "64", "-s", "2", "--seed", "3",
                            "-o", png, "-q"], env={**env, "HF_HUB_CACHE": cache_b, "HF_HUB_OFFLINE": "1"},
                           capture_output=True, text=True)
        check("zimage generate -m with HF_HUB_OFFLINE=1 uses huggingface_hub's cache",
              r.returncode == 0 and os.path.getsize(png) > 0, r.stderr)
        open(log, "w").close()
        r = subprocess.run([a.cli, "pull", REPO], env={**env, "HF_HUB_CACHE": cache_b}, capture_output=True, text=True)
        with open(log) as f:
            reqs = [json.loads(line) for line in f if line.strip()]
        check("zimage pull over huggingface_hub's download fetches nothing",
              r.returncode == 0 and len(reqs) == 1 and "/revision/main" in reqs[0]["path"], (r.stderr, reqs))
    finally:
        hub.stdin.close()
        hub.terminate()
        hub.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    failed = results.count(False)
    print("interop checks: %d ok, %d failed" % (len(results) - failed, failed))
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())

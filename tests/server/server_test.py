"""End-to-end tests of `zimage serve` against the tiny fixture model on a loopback port, with real
clients: the `openai` package, `requests`, curl, raw sockets and headless Chromium (selenium).

    server_test.py PART --cli build/zimage --model tests/fixtures/models/tiny-fp32 --out build/tests/server

PART: openai | routes | jobs | faults | load | web | lora. Exit 0 = pass, 77 = skipped (only `web`, when
Chromium cannot start), anything else = fail.
"""
import argparse
import base64
import concurrent.futures
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

import requests

KEY = "test-key-0123456789"
SKIP = 77


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


# ---------------------------------------------------------------------------------------------
# A minimal PNG reader (no Pillow in the venv): pixels and text chunks.

def png_read(data):
    check(data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG")
    pos, idat, text, hdr = 8, b"", {}, None
    while pos < len(data):
        n, = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"tEXt":
            k, v = body.split(b"\0", 1)
            text[k.decode("latin-1")] = v.decode("latin-1")
        elif kind == b"iTXt":
            k, rest = body.split(b"\0", 1)
            rest = rest[2:]
            _lang, rest = rest.split(b"\0", 1)
            _tk, v = rest.split(b"\0", 1)
            text[k.decode("latin-1")] = v.decode("utf-8")
    w, h, depth, ctype = hdr[0], hdr[1], hdr[2], hdr[3]
    check(depth == 8 and ctype in (0, 2, 4, 6), "unexpected PNG format %r" % (hdr,))
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    raw = zlib.decompress(idat)
    stride = w * bpp
    out, prev = bytearray(), bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += line
        prev = line
    return {"width": w, "height": h, "channels": bpp, "pixels": bytes(out), "text": text}


# ---------------------------------------------------------------------------------------------
# The server under test.

class Server:
    def __init__(self, args, extra=(), key=KEY, env=None):
        self.args = args
        cmd = [args.cli, "serve", "-m", args.model, "--dtype", "float32", "--port", "0", "-W", "32", "-H", "32", "-s", "2"]
        if key:
            cmd += ["--api-key", key]
        cmd += list(extra)
        self.key = key
        e = dict(os.environ)
        e.pop("ZIMAGE_API_KEY", None)
        e.update(env or {})
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=e, text=True, errors="replace")
        self.lines = []
        self.port = None
        self.ready = threading.Event()
        self.started = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(120):
            self.kill()
            raise Failure("the server did not get ready: " + "".join(self.lines[-20:]))
        self.base = "http://127.0.0.1:%d" % self.port

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            m = re.search(r"listening on http://[^:]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                self.started.set()
            if "ready:" in line:
                self.ready.set()
        self.ready.set()

    def headers(self, key=None):
        key = self.key if key is None else key
        return {"Authorization": "Bearer " + key} if key else {}

    def get(self, path, **kw):
        kw.setdefault("headers", self.headers())
        return requests.get(self.base + path, timeout=120, **kw)

    def post(self, path, body=None, **kw):
        kw.setdefault("headers", self.headers())
        return requests.post(self.base + path, json=body, timeout=120, **kw)

    def delete(self, path, **kw):
        kw.setdefault("headers", self.headers())
        return requests.delete(self.base + path, timeout=120, **kw)

    def alive(self):
        return self.proc.poll() is None and requests.get(self.base + "/health", timeout=30).status_code == 200

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        """SIGTERM: the server must exit 0."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.kill()
            raise Failure("the server did not stop within 60 s of SIGTERM")
        check(rc == 0, "the server exited %s after SIGTERM: %s" % (rc, "".join(self.lines[-10:])))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.stop()
        else:
            self.kill()


def png_write(w, h, channels, pixels):
    """A plain 8-bit PNG (gray, RGB or RGBA) of row-major pixel bytes."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + pixels[y * w * channels:(y + 1) * w * channels] for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, {1: 0, 3: 2, 4: 6}[channels], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def openai_error(r, status, param):
    check(r.status_code == status, "expected HTTP %d, got %d: %s" % (status, r.status_code, r.text[:300]))
    e = r.json()["error"]
    check(isinstance(e["message"], str) and e["message"].startswith("[serve] "), "error message: %r" % e)
    check("type" in e and "code" in e, "OpenAI error shape: %r" % e)
    check(e["param"] == param, "expected param %r, got %r (%s)" % (param, e["param"], e["message"]))
    return e


def cli_png(args, tmp, prompt, seed, steps, w, h, extra=()):
    out = os.path.join(tmp, "cli-%d.png" % seed)
    subprocess.run([args.cli, "generate", "-q", "--dtype", "float32", "-m", args.model, "-p", prompt, "-W", str(w), "-H", str(h),
                    "-s", str(steps), "--seed", str(seed), "-o", out, "--overwrite"] + list(extra), check=True, stdout=subprocess.DEVNULL)
    with open(out, "rb") as f:
        return f.read()


# ---------------------------------------------------------------------------------------------

def test_openai(args):
    import openai
    with tempfile.TemporaryDirectory() as tmp, Server(args) as s:
        client = openai.OpenAI(base_url=s.base + "/v1", api_key=KEY, max_retries=0)
        r = client.images.generate(prompt="a red fox", n=1, size="48x32", response_format="b64_json", model="z-image",
                                   extra_body={"seed": 42, "steps": 3, "guidance": 0})
        served = png_read(base64.b64decode(r.data[0].b64_json))
        cli = png_read(cli_png(args, tmp, "a red fox", 42, 3, 48, 32))
        check((served["width"], served["height"]) == (48, 32), "size %r" % ((served["width"], served["height"]),))
        check(served["pixels"] == cli["pixels"], "the served image differs from the CLI's for the same parameters and seed")
        check(served["text"]["parameters"] == cli["text"]["parameters"], "infotext differs: %r vs %r" % (served["text"]["parameters"], cli["text"]["parameters"]))
        # Two images from one seed: the batch of `generate --seed 7 --num-images 2`.
        r = client.images.generate(prompt="a cat", n=2, size="32x32", response_format="url", extra_body={"seed": 7})
        check(len(r.data) == 2, "n=2 gave %d images" % len(r.data))
        got = [png_read(requests.get(d.url, headers=s.headers(), timeout=60).content)["pixels"] for d in r.data]
        check(got[0] != got[1], "two images of a batch are equal")
        out = os.path.join(tmp, "b.png")
        subprocess.run([args.cli, "generate", "-q", "--dtype", "float32", "-m", args.model, "-p", "a cat", "-W", "32", "-H", "32", "-s", "2",
                        "--seed", "7", "--num-images", "2", "-o", out], check=True, stdout=subprocess.DEVNULL)
        for i, p in enumerate([out, os.path.join(tmp, "b-1.png")]):
            with open(p, "rb") as f:
                check(png_read(f.read())["pixels"] == got[i], "batch image %d differs from the CLI's" % i)
        # The client's own errors: a wrong key, a bad value.
        bad = openai.OpenAI(base_url=s.base + "/v1", api_key="wrong", max_retries=0)
        try:
            bad.images.generate(prompt="x", size="32x32")
            raise Failure("a wrong key was accepted")
        except openai.AuthenticationError as e:
            check(e.status_code == 401, "wrong key: %s" % e)
        try:
            client.images.generate(prompt="x", size="33x32")
            raise Failure("size 33x32 was accepted")
        except openai.BadRequestError as e:
            check(e.body.get("param") == "size", "bad size names %r" % e.body)
    print("openai: served image == CLI image (48x32, seed 42; batch of 2 from seed 7); 401 and 400 through the client")


def test_routes(args):
    with tempfile.TemporaryDirectory() as tmp, Server(args, ["--max-body", "0.05", "--cors-origin", "http://allowed.example",
                                                         "--max-steps", "20", "--max-size", "128", "--max-images", "3"]) as s:
        # Auth.
        check(requests.get(s.base + "/health", timeout=30).status_code == 200, "/health without a key")
        check(requests.get(s.base + "/", timeout=30).status_code == 200, "the page without a key")
        for path in ["/v1/models", "/metrics", "/sdapi/v1/sd-models", "/sdapi/v1/options", "/sdapi/v1/progress", "/v1/jobs/00"]:
            openai_or_sd = requests.get(s.base + path, timeout=30)
            check(openai_or_sd.status_code == 401, "%s without a key: %d" % (path, openai_or_sd.status_code))
            check(s.get(path, headers=s.headers("nope")).status_code == 401, "%s with a wrong key" % path)
        openai_error(requests.post(s.base + "/v1/images/generations", json={"prompt": "x"}, timeout=30), 401, None)
        openai_error(s.post("/v1/images/generations", {"prompt": "x"}, headers={"Authorization": "Basic " + KEY}), 401, None)
        check(s.get("/v1/models").json()["data"][0]["id"] == "tiny-fp32", "/v1/models")
        # 413.
        r = s.post("/v1/images/generations", {"prompt": "x" * 100000})
        check(r.status_code == 413, "a 100 kB body with --max-body 0.05: %d" % r.status_code)
        # 400 naming the field, every route.
        for body, field in [({"prompt": "x", "n": 0}, "n"), ({"prompt": "x", "n": 4}, "n"), ({"prompt": "x", "size": "32"}, "size"),
                            ({"prompt": "x", "size": "256x256"}, "size"), ({"prompt": "x", "steps": 21}, "steps"),
                            ({"prompt": "x", "guidance": "a"}, "guidance"), ({"prompt": "x", "seed": -3}, "seed"),
                            ({"prompt": "x", "response_format": "jpeg"}, "response_format"), ({"n": 1}, "prompt"),
                            ({"prompt": "a\u0000b"}, "prompt")]:
            openai_error(s.post("/v1/images/generations", body), 400, field)
        openai_error(s.post("/v1/images/generations", data="{", headers=dict(s.headers(), **{"Content-Type": "application/json"})), 400, None)
        openai_error(s.post("/v1/jobs", {"prompt": "x", "width": 40}), 400, "width")
        for body, field in [({"steps": 0}, "steps"), ({"cfg_scale": "x"}, "cfg_scale"), ({"width": 1000}, "width"),
                            ({"height": 20}, "height"), ({"batch_size": 2, "n_iter": 2}, "n_iter"), ({"seed": 0.5}, "seed")]:
            r = s.post("/sdapi/v1/txt2img", body)
            check(r.status_code == 400 and r.json()["field"] == field, "sdapi %r: %d %s" % (body, r.status_code, r.text[:200]))
        # A1111 txt2img: PNGs with their metadata, info/parameters.
        r = s.post("/sdapi/v1/txt2img", {"prompt": "a dog", "negative_prompt": "blur", "steps": 2, "cfg_scale": 1.5, "width": 32,
                                         "height": 48, "seed": 5, "batch_size": 2, "n_iter": 1, "sampler_name": "Euler"})
        check(r.status_code == 200, "txt2img: %d %s" % (r.status_code, r.text[:300]))
        j = r.json()
        info = json.loads(j["info"])
        check(len(j["images"]) == 2 and info["all_seeds"] == [5, 6], "txt2img images/seeds: %r" % info.get("all_seeds"))
        check(j["parameters"]["prompt"] == "a dog", "parameters echo")
        png = png_read(base64.b64decode(j["images"][1]))
        check((png["width"], png["height"]) == (32, 48), "txt2img size")
        check(png["text"]["parameters"] == info["infotexts"][1], "PNG parameters vs info.infotexts")
        check("Seed: 6" in info["infotexts"][1] and "Negative prompt: blur" in info["infotexts"][1], info["infotexts"][1])
        check(json.loads(png["text"]["zimage"])["seed"] == 6, "zimage chunk seed")
        cli = png_read(cli_png(args, tmp, "a dog", 6, 2, 32, 48, ["-g", "1.5", "-n", "blur"]))
        check(cli["pixels"] == png["pixels"], "A1111 image 2 (seed 6) differs from the CLI's --seed 6")
        # progress / interrupt / models / options.
        p = s.get("/sdapi/v1/progress").json()
        check(p["progress"] == 0 and p["state"]["job_count"] == 0, "idle progress %r" % p)
        check(s.post("/sdapi/v1/interrupt").status_code == 200, "interrupt")
        m = s.get("/sdapi/v1/sd-models").json()
        check(m[0]["model_name"] == "tiny-fp32", "sd-models %r" % m)
        check(s.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "tiny-fp32", "options")
        check(s.post("/sdapi/v1/options", {"sd_model_checkpoint": "tiny-fp32", "jpeg_quality": 80}).status_code == 200, "options POST")
        check(s.get("/sdapi/v1/options").json()["jpeg_quality"] == 80, "options POST kept")
        r = s.post("/sdapi/v1/options", {"big": "x" * 5000})
        check(r.status_code == 400 and r.json()["field"] == "big", "a 5000-byte option was kept: %s" % r.text[:200])
        r = s.post("/sdapi/v1/options", {"sd_model_checkpoint": "other.safetensors"})
        check(r.status_code == 400 and r.json()["field"] == "sd_model_checkpoint", "options: other checkpoint %s" % r.text)
        # img2img and edits: validated, then run through the queue; the images equal the CLI's
        # --init-image (img2img) and --mask (inpainting) for the same parameters and seed.
        pngb64 = j["images"][0]
        png_bytes = base64.b64decode(pngb64)
        init_path = os.path.join(tmp, "init.png")
        with open(init_path, "wb") as f:
            f.write(png_bytes)
        r = s.post("/sdapi/v1/img2img", {"init_images": ["nope!"], "prompt": "x"})
        check(r.status_code == 400 and r.json()["field"] == "init_images[0]", "img2img bad image: %s" % r.text[:200])
        r = s.post("/sdapi/v1/img2img", {"init_images": [pngb64], "denoising_strength": 2})
        check(r.status_code == 400 and r.json()["field"] == "denoising_strength", "img2img strength: %s" % r.text[:200])
        r = s.post("/sdapi/v1/img2img", {"init_images": [pngb64], "prompt": "x", "denoising_strength": 0.5, "steps": 4, "seed": 11})
        check(r.status_code == 200, "img2img: %d %s" % (r.status_code, r.text[:300]))
        got = png_read(base64.b64decode(r.json()["images"][0]))
        check("Denoising strength: 0.5" in got["text"]["parameters"], "img2img infotext: %r" % got["text"]["parameters"])
        cli = png_read(cli_png(args, tmp, "x", 11, 4, 32, 48, ["--init-image", init_path, "--strength", "0.5"]))
        check((got["width"], got["height"]) == (32, 48), "img2img size %r" % ((got["width"], got["height"]),))
        check(got["pixels"] == cli["pixels"], "A1111 img2img differs from the CLI's --init-image --strength 0.5")
        r = requests.post(s.base + "/v1/images/edits", headers=s.headers(), files={"image": ("a.png", png_bytes, "image/png")},
                          data={"prompt": "x", "n": "zwei"}, timeout=60)
        openai_error(r, 400, "n")
        # OpenAI's mask: fully transparent = edit (left half); the CLI's: white = repaint.
        rgba = bytes(v for y in range(48) for x in range(32) for v in (0, 0, 0, 0 if x < 16 else 255))
        gray = bytes(255 if x < 16 else 0 for y in range(48) for x in range(32))
        mask_path = os.path.join(tmp, "mask.png")
        with open(mask_path, "wb") as f:
            f.write(png_write(32, 48, 1, gray))
        r = requests.post(s.base + "/v1/images/edits", headers=s.headers(),
                          files={"image": ("a.png", png_bytes, "image/png"), "mask": ("m.png", png_write(32, 48, 4, rgba), "image/png")},
                          data={"prompt": "x", "seed": "12", "steps": "3"}, timeout=120)
        check(r.status_code == 200, "edits: %d %s" % (r.status_code, r.text[:300]))
        got = png_read(base64.b64decode(r.json()["data"][0]["b64_json"]))
        cli = png_read(cli_png(args, tmp, "x", 12, 3, 32, 48, ["--init-image", init_path, "--mask", mask_path]))
        check(got["pixels"] == cli["pixels"], "OpenAI edits (inpainting) differs from the CLI's --init-image --mask")
        # CORS allow-list.
        r = requests.options(s.base + "/v1/jobs", headers={"Origin": "http://allowed.example", "Access-Control-Request-Method": "POST"}, timeout=30)
        check(r.status_code == 204 and r.headers.get("Access-Control-Allow-Origin") == "http://allowed.example", "CORS preflight")
        r = s.get("/v1/models", headers=dict(s.headers(), Origin="http://evil.example"))
        check("Access-Control-Allow-Origin" not in r.headers, "CORS header for an origin not in the list")
        # Unknown route, metrics.
        openai_error(s.get("/v1/nothing"), 404, None)
        metrics = s.get("/metrics").text
        for name in ["zimage_requests_total{route=\"/sdapi/v1/txt2img\",status=\"200\"}", "zimage_queue_depth 0",
                     "zimage_jobs_total{state=\"succeeded\"} 3", "zimage_step_seconds_bucket{le=\"+Inf\"} 7", "zimage_peak_resident_memory_bytes"]:
            check(name in metrics, "metrics lack %s:\n%s" % (name, metrics))
        # curl, as a shell script would call it.
        out = subprocess.run(["curl", "-sS", "-o", os.path.join(tmp, "c.json"), "-w", "%{http_code}", "-H", "Authorization: Bearer " + KEY,
                              "-H", "Content-Type: application/json", "-d", '{"prompt":"curl","size":"32x32","seed":3}',
                              s.base + "/v1/images/generations"], capture_output=True, text=True, check=True).stdout
        check(out == "200", "curl generation: %s" % out)
        with open(os.path.join(tmp, "c.json")) as f:
            png_read(base64.b64decode(json.load(f)["data"][0]["b64_json"]))
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", s.base + "/sdapi/v1/sd-models"], capture_output=True, text=True).stdout
        check(out == "401", "curl without a key: %s" % out)
        check(any('"POST /sdapi/v1/txt2img" 200' in l for l in s.lines), "no request log line")
    # No key: loopback only, with a warning; the key may come from the environment instead.
    with Server(args, key=None) as s:
        check(s.get("/v1/models").status_code == 200, "no key: open")
        check(any("warning: no API key" in l for l in s.lines), "no warning without a key")
    with Server(args, key=None, env={"ZIMAGE_API_KEY": "envkey"}) as s:
        check(s.get("/v1/models", headers={"Authorization": "Bearer envkey"}).status_code == 200, "ZIMAGE_API_KEY")
        check(s.get("/v1/models", headers={}).status_code == 401, "ZIMAGE_API_KEY not enforced")
    print("routes: auth 401, 413, 400 with the field on every route, txt2img == CLI, progress/interrupt/sd-models/options, "
          "img2img and edits == CLI --init-image/--mask, CORS, 404, metrics, curl")


def wait_state(s, job_id, states, timeout=120):
    t = time.time()
    while time.time() - t < timeout:
        j = s.get("/v1/jobs/" + job_id).json()
        if j["status"] in states:
            return j
        time.sleep(0.05)
    raise Failure("job %s never reached %s" % (job_id, states))


def test_jobs(args):
    with Server(args, ["--queue-size", "1", "--max-steps", "1000", "--max-size", "512", "--keep-results-count", "5"]) as s:
        r = s.post("/v1/jobs", {"prompt": "a job", "width": 32, "height": 32, "steps": 2, "seed": 11})
        check(r.status_code == 202, "submit: %d %s" % (r.status_code, r.text[:200]))
        jid = r.json()["id"]
        j = wait_state(s, jid, {"succeeded", "failed"})
        check(j["status"] == "succeeded" and j["progress"]["step"] == 2 and j["progress"]["num_steps"] == 2, "job: %r" % j)
        img = s.get(j["images"][0]["path"])
        check(img.status_code == 200 and img.headers["Content-Type"] == "image/png", "job file")
        check(png_read(img.content)["text"]["parameters"] == j["images"][0]["parameters"], "job parameters")
        # Server-sent events.
        jid2 = s.post("/v1/jobs", {"prompt": "sse", "steps": 3}).json()["id"]
        events = []
        with requests.get(s.base + "/v1/jobs/%s/events" % jid2, headers=s.headers(), stream=True, timeout=120) as ev:
            for line in ev.iter_lines(decode_unicode=True):
                if line.startswith("event: "):
                    events.append(line[7:])
                if events and events[-1] == "done" and line.startswith("data: "):
                    check(json.loads(line[6:])["status"] == "succeeded", "SSE done event")
                    break
        check(events and events[-1] == "done", "SSE events %r" % events)
        # A long job (cancel while running), one waiting (cancel before start), one too many (429).
        long_body = {"prompt": "long", "width": 512, "height": 512, "steps": 1000}
        a = s.post("/v1/jobs", long_body).json()["id"]
        wait_state(s, a, {"running"})
        b = s.post("/v1/jobs", long_body)
        check(b.status_code == 202, "second job: %d" % b.status_code)
        b = b.json()["id"]
        c = s.post("/v1/jobs", long_body)
        openai_error(c, 429, None)
        check(int(c.headers["Retry-After"]) >= 1, "Retry-After")
        r = s.delete("/v1/jobs/" + b)
        check(r.status_code == 200 and r.json()["status"] == "cancelled", "cancel queued: %s" % r.text[:200])
        while s.get("/v1/jobs/" + a).json()["progress"]["step"] < 1:
            time.sleep(0.05)
        r = s.delete("/v1/jobs/" + a)
        check(r.status_code == 200 and r.json()["cancelled"], "cancel running: %s" % r.text[:200])
        j = wait_state(s, a, {"cancelled", "succeeded", "failed"})
        check(j["status"] == "cancelled" and j["progress"]["step"] < 1000, "running job after DELETE: %r" % j["progress"])
        jb = s.get("/v1/jobs/" + b).json()
        check(jb["status"] == "cancelled" and jb["progress"]["step"] == 0, "the queued job ran: %r" % jb)
        # After a cancel the shared pipeline gives the same image as before.
        again = s.post("/v1/jobs", {"prompt": "a job", "width": 32, "height": 32, "steps": 2, "seed": 11}).json()["id"]
        ja = wait_state(s, again, {"succeeded", "failed"})
        check(ja["status"] == "succeeded", "job after cancels: %r" % ja)
        check(png_read(s.get(ja["images"][0]["path"]).content)["pixels"] == png_read(img.content)["pixels"],
              "the image after a cancelled job differs from the same request's image before it")
        # A finished job's DELETE drops it; unknown ids are 404; results beyond --keep-results-count are dropped.
        check(s.delete("/v1/jobs/" + jid).json()["deleted"], "delete finished")
        openai_error(s.get("/v1/jobs/" + jid), 404, None)
        openai_error(s.get("/v1/files/%s-0.png" % jid), 404, None)
        ids = [s.post("/v1/jobs", {"prompt": "k%d" % i, "steps": 1}).json()["id"] for i in range(1)]
        for i in range(6):
            wait_state(s, ids[-1], {"succeeded"})
            ids.append(s.post("/v1/jobs", {"prompt": "k", "steps": 1}).json()["id"])
        wait_state(s, ids[-1], {"succeeded"})
        check(s.get("/v1/jobs/" + ids[0]).status_code == 404, "the oldest result was kept beyond --keep-results-count 5")
        m = s.get("/metrics").text
        check('zimage_jobs_total{state="cancelled"} 2' in m, "cancelled count:\n" + m)
        # SIGTERM with a job running: the job is cancelled within the grace period and the server exits 0.
    with Server(args, ["--max-steps", "1000", "--max-size", "512", "--grace", "1"]) as s:
        a = s.post("/v1/jobs", {"prompt": "long", "width": 512, "height": 512, "steps": 1000}).json()["id"]
        wait_state(s, a, {"running"})
        t = time.time()
    check(time.time() - t < 30, "SIGTERM took %.1f s" % (time.time() - t))
    print("jobs: submit/poll/files/SSE, cancel running and queued, 429 + Retry-After, retention, SIGTERM exit 0")


def raw(port, data, read=True, timeout=10):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(data)
        if not read:
            return b""
        out = b""
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                out += d
        except (socket.timeout, ConnectionResetError):
            pass
        return out


def test_faults(args):
    with Server(args, ["--read-timeout", "2", "--header-timeout", "4", "--max-body", "1", "--max-steps", "1000", "--max-size", "512"]) as s:
        port = s.port
        # A client killed in the middle of a synchronous request: its job is cancelled.
        code = ("import requests,sys; requests.post(sys.argv[1] + '/v1/images/generations', headers={'Authorization': 'Bearer %s'}, "
                "json={'prompt': 'killed', 'size': '512x512', 'steps': 1000})" % KEY)
        child = subprocess.Popen([sys.executable, "-c", code, s.base])
        t = time.time()
        while s.get("/sdapi/v1/progress").json()["state"]["sampling_step"] < 1 and time.time() - t < 60:
            time.sleep(0.05)
        child.kill()
        child.wait()
        t = time.time()
        while s.get("/sdapi/v1/progress").json()["state"]["job_count"] and time.time() - t < 60:
            time.sleep(0.05)
        print("faults: the killed client's job ended %.1f s after the kill" % (time.time() - t))
        check(s.get("/sdapi/v1/progress").json()["state"]["job_count"] == 0, "the killed client's job still runs")
        check(any("went away" in l for l in s.lines), "no log line for the client that went away")
        check('zimage_jobs_total{state="cancelled"} 1' in s.get("/metrics").text, "the killed client's job was not cancelled")
        # Slowloris: clients that trickle their headers; the server keeps serving and drops the silent ones.
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
        for c in slow:
            c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):
            time.sleep(0.5)
            for c in slow[:4]:
                c.sendall(b"X-a: b\r\n")
            check(s.alive(), "the server stopped answering during slowloris")
        time.sleep(3)  # --read-timeout 2: the silent ones are closed
        closed = 0
        for c in slow[4:]:  # answered 400 (request timed out) or closed
            c.settimeout(5)
            try:
                reply = c.recv(100)
                closed += reply == b"" or reply.startswith(b"HTTP/1.1 400")
            except ConnectionResetError:
                closed += 1
            except socket.timeout:
                pass
        check(closed == 4, "%d of 4 silent slowloris connections were dropped after --read-timeout" % closed)
        # The trickling ones never pause for --read-timeout, but --header-timeout 4 bounds their headers.
        t, dropped = time.time(), set()
        while len(dropped) < 4 and time.time() - t < 20:
            for i, c in enumerate(slow[:4]):
                if i in dropped:
                    continue
                try:
                    c.sendall(b"X-a: b\r\n")
                except OSError:
                    dropped.add(i)
            time.sleep(0.5)
        check(len(dropped) == 4, "%d of 4 trickling slowloris connections were dropped within 20 s (--header-timeout 4)" % len(dropped))
        check(s.alive(), "the server stopped answering during slowloris")
        for c in slow:
            c.close()
        # A flood of header lines (cpp-httplib 0.11 does not count them): cut after --max-body + 1 MiB.
        rss0 = s.rss_kb()
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        sent, line = 0, b"X-" + b"a" * 90 + b": b\r\n"
        try:
            c.settimeout(10)
            while sent < 200 << 20:
                c.sendall(line * 10000)
                sent += len(line) * 10000
        except OSError:
            pass
        c.close()
        check(sent < 100 << 20, "the server took %d MB of header lines" % (sent >> 20))
        check(s.rss_kb() < rss0 + 64 * 1024, "RSS grew from %d to %d kB during the header flood" % (rss0, s.rss_kb()))
        check(any("request headers larger than the limit" in l for l in s.lines), "no log line for the header flood")
        check(any("request headers not complete within --header-timeout" in l for l in s.lines), "no log line for slowloris")
        # Garbage, huge headers, huge URIs, many headers, binary, half requests.
        rnd = random.Random(5)
        garbage = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 3000))) for _ in range(20)]
        with concurrent.futures.ThreadPoolExecutor(10) as ex:  # each waits up to --read-timeout for the rest of its request
            list(ex.map(lambda g: raw(port, g), garbage))
        t = time.time()
        reply = raw(port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n")
        check(reply == b"" or re.match(rb"HTTP/1.1 4\d\d", reply), "huge header: %r" % reply[:80])
        reply = raw(port, b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        check(reply == b"" or re.match(rb"HTTP/1.1 4\d\d", reply), "huge URI: %r" % reply[:80])
        raw(port, b"GET /health HTTP/1.1\r\n" + b"X: y\r\n" * 5000 + b"\r\n")
        raw(port, b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro", read=False)
        raw(port, b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n")
        raw(port, b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n")
        print("faults: garbage and huge requests answered in %.1f s" % (time.time() - t))
        check(s.alive(), "the server died after garbage")
        r = s.post("/v1/images/generations", {"prompt": "after", "size": "32x32"})
        check(r.status_code == 200, "generation after the faults: %d" % r.status_code)
    print("faults: killed client's job cancelled, slowloris (4 silent dropped after --read-timeout, 4 trickling after "
          "--header-timeout), header flood cut (%d MB sent), garbage, huge headers/URI, 5000 headers, truncated and bogus bodies: "
          "the server kept serving" % (sent >> 20))


def test_load(args):
    total, clients = 200, 50
    with Server(args, ["--queue-size", "8", "-q"]) as s:
        body = {"prompt": "load", "size": "32x32", "steps": 1, "seed": 1}
        for _ in range(3):  # warm up
            check(s.post("/v1/images/generations", body).status_code == 200, "warm-up")
        base_rss = s.rss_kb()
        codes, lat = [], []
        lock = threading.Lock()

        def one(i):
            t = time.time()
            try:
                r = requests.post(s.base + "/v1/images/generations", json=dict(body, seed=i), headers=s.headers(), timeout=300)
                code = r.status_code
                if code == 200:
                    png_read(base64.b64decode(r.json()["data"][0]["b64_json"]))
                elif code == 429:
                    check(int(r.headers.get("Retry-After", "0")) >= 1, "429 without Retry-After")
            except Exception as e:  # noqa: BLE001 - any other outcome fails below
                code = "error: %s" % e
            with lock:
                codes.append(code)
                lat.append(time.time() - t)

        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(clients) as ex:
            list(ex.map(one, range(total)))
        wall = time.time() - t0
        check(s.alive(), "the server died under load")
        others = [c for c in codes if c not in (200, 429)]
        check(not others, "answers other than 200/429: %r" % others[:5])
        ok, busy = codes.count(200), codes.count(429)
        lat.sort()
        time.sleep(1)
        rss = s.rss_kb()
        print("| requests | clients | 200 | 429 | req/s | p50 (s) | p95 (s) | RSS before (MB) | RSS after (MB) |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        print("| %d | %d | %d | %d | %.1f | %.3f | %.3f | %.1f | %.1f |" % (total, clients, ok, busy, total / wall, lat[len(lat) // 2],
                                                                          lat[int(len(lat) * 0.95)], base_rss / 1024, rss / 1024))
        check(ok + busy == total, "lost requests")
        check(ok >= 8, "only %d requests succeeded" % ok)
        check(rss < base_rss + 64 * 1024, "RSS grew from %d kB to %d kB" % (base_rss, rss))
    print("load: every request got 200 or 429; the server stayed up; RSS back near its baseline")


def test_web(args):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError as e:
        print("FAIL: selenium is not installed in the test venv: %s" % e)
        return 1
    opts = webdriver.ChromeOptions()
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,900"]:
        opts.add_argument(a)
    chromium = "/usr/bin/chromium"
    if os.path.exists(chromium):
        opts.binary_location = chromium
    driver_path = "/usr/bin/chromedriver"
    try:
        driver = webdriver.Chrome(service=Service(driver_path if os.path.exists(driver_path) else None), options=opts)
    except Exception as e:  # noqa: BLE001 - no Chromium here: skip with the reason
        print("SKIP: Chromium cannot start here (install chromium and chromium-driver: scripts/setup.sh): %s" % str(e).splitlines()[0])
        return SKIP
    try:
        with Server(args) as s:
            driver.get(s.base + "/")
            wait = WebDriverWait(driver, 120)
            driver.find_element(By.ID, "api_key").send_keys(KEY)
            driver.find_element(By.ID, "prompt").send_keys("a lighthouse at dusk")
            for fid, val in [("width", "48"), ("height", "32"), ("steps", "3"), ("seed", "1234")]:
                el = driver.find_element(By.ID, fid)
                el.clear()
                el.send_keys(val)
            driver.find_element(By.ID, "generate").click()
            wait.until(lambda d: d.execute_script(
                "const i = document.querySelector('.result img'); return i && i.complete && i.naturalWidth > 0;"))
            size = driver.execute_script("const i = document.querySelector('.result img'); return [i.naturalWidth, i.naturalHeight];")
            check(size == [48, 32], "image size in the page %r" % size)
            params = driver.find_element(By.CSS_SELECTOR, ".result .parameters").text
            check("a lighthouse at dusk" in params and "Seed: 1234" in params and "Steps: 3" in params, "parameters shown: %r" % params)
            check(driver.find_element(By.ID, "progress").get_attribute("value") == "1", "progress bar not full")
            os.makedirs(args.out, exist_ok=True)
            shot = os.path.join(args.out, "web_page.png")
            driver.save_screenshot(shot)
            # Reuse: the fields take the result's parameters.
            driver.find_element(By.ID, "prompt").clear()
            driver.find_element(By.ID, "seed").clear()
            driver.find_element(By.CSS_SELECTOR, ".result .reuse").click()
            check(driver.find_element(By.ID, "prompt").get_attribute("value") == "a lighthouse at dusk", "reuse: prompt")
            check(driver.find_element(By.ID, "seed").get_attribute("value") == "1234", "reuse: seed")
            check(driver.find_element(By.ID, "width").get_attribute("value") == "48", "reuse: width")
            # A bad value shows the server's message naming the field.
            el = driver.find_element(By.ID, "width")
            el.clear()
            el.send_keys("4096")  # beyond --max-size 2048
            driver.find_element(By.ID, "generate").click()
            wait.until(lambda d: d.find_element(By.ID, "error").text)
            check("'width'" in driver.find_element(By.ID, "error").text, "error shown: %r" % driver.find_element(By.ID, "error").text)
    finally:
        driver.quit()
    print("web: typed a prompt, generated, saw the 48x32 image and its parameters, reuse filled the fields; screenshot %s" % shot)
    return 0


def test_lora(args):
    """--lora FILE:SCALE and --lora-dir; a prompt's <lora:NAME:SCALE> sets the scales of one request."""
    import shutil
    fx = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.model))), "lora")
    peft, kohya = os.path.join(fx, "tiny-fp32_peft.safetensors"), os.path.join(fx, "tiny-fp32_kohya.safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, "loras")
        os.makedirs(d)
        shutil.copy(kohya, os.path.join(d, "tiny-fp32_kohya.safetensors"))
        shutil.copy(kohya, os.path.join(tmp, "secret.safetensors"))
        os.symlink(os.path.join(tmp, "secret.safetensors"), os.path.join(d, "escape.safetensors"))
        with Server(args, ["--lora", peft + ":0.8", "--lora-dir", d]) as s:
            def served(prompt):
                r = s.post("/v1/images/generations", {"prompt": prompt, "size": "32x32", "seed": 5, "steps": 2})
                check(r.status_code == 200, "%r: HTTP %d %s" % (prompt, r.status_code, r.text[:300]))
                return png_read(base64.b64decode(r.json()["data"][0]["b64_json"]))

            def cli(loras):
                extra = ["--lora-mode", "runtime"]
                for l in loras:
                    extra += ["--lora", l]
                return png_read(cli_png(args, tmp, "a cat", 5, 2, 32, 32, extra))

            for prompt, loras in [("a cat", [peft + ":0.8"]),
                                  ("a cat <lora:tiny-fp32_peft:0>", []),
                                  ("<lora:tiny-fp32_kohya:0.5> a cat", [peft + ":0.8", os.path.join(d, "tiny-fp32_kohya.safetensors") + ":0.5"]),
                                  ("a cat <lora:tiny-fp32_peft:0.3>", [peft + ":0.3"]),  # the dir's LoRA stays loaded, off
                                  ("a cat", [peft + ":0.8"])]:
                got, want = served(prompt), cli(loras)
                check(got["pixels"] == want["pixels"], "%r: the image differs from the CLI's with %r" % (prompt, loras))
                check(got["text"]["parameters"] == want["text"]["parameters"],
                      "%r: infotext %r, CLI %r" % (prompt, got["text"]["parameters"], want["text"]["parameters"]))
            for prompt, what in [("<lora:escape>", "no LoRA of that name"), ("<lora:../secret>", "'..'"),
                                 ("<lora:nope:0.5>", "no LoRA of that name"), ("<lora:" + os.path.join(tmp, "secret") + ">", "absolute"),
                                 ("<lora:tiny-fp32_peft:x>", "not a number")]:
                e = openai_error(s.post("/v1/images/generations", {"prompt": prompt, "size": "32x32"}), 400, "prompt")
                check(what in e["message"], "%r: %s" % (prompt, e["message"]))
        # Without --lora / --lora-dir a tag is refused.
        with Server(args) as s:
            e = openai_error(s.post("/v1/images/generations", {"prompt": "<lora:tiny-fp32_peft>", "size": "32x32"}), 400, "prompt")
            check("this server has no LoRAs" in e["message"], e["message"])
    print("lora: --lora/--lora-dir with <lora:NAME:SCALE> per request == CLI --lora-mode runtime (pixels and infotext); "
          "names outside the server's files refused")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=["openai", "routes", "jobs", "faults", "load", "web", "lora"])
    ap.add_argument("--cli", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", default=".")
    args = ap.parse_args()
    try:
        rc = globals()["test_" + args.part](args)
    except Failure as e:
        print("FAIL (%s): %s" % (args.part, e))
        return 1
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())

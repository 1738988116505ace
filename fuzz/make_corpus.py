#!/usr/bin/env python3
"""Regenerates the committed seed corpora (fuzz/corpus/<target>/) and the small tokenizer files of
fuzz/data/ from the tiny fixtures in tests/fixtures. Standard library only; deterministic.

    python3 fuzz/make_corpus.py

Crash inputs a fuzzer found are added to the corpus by hand (as fuzz/corpus/<target>/crash-*),
and this script leaves files it did not write alone."""
import json
import os
import struct
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(ROOT, "fuzz", "corpus")
DATA = os.path.join(ROOT, "fuzz", "data")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def st_file(tensors, metadata=None):
    """A valid safetensors file: tensors = [(name, dtype, shape, nbytes)], zero data."""
    header, pos = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, nbytes in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [pos, pos + nbytes]}
        pos += nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + bytes(pos)


def fixture_header(rel):
    with open(os.path.join(FIX, "models", rel), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


SIZES = {"BF16": 2, "F16": 2, "F32": 4, "I64": 8, "U8": 1, "BOOL": 1}


def safetensors_header():
    t = "safetensors_header_fuzz"
    for comp in ["transformer/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "text_encoder/model"]:
        for variant in ["tiny-bf16", "tiny-fp32"]:
            h = fixture_header(f"{variant}/{comp}.safetensors")
            small = [(k, v) for k, v in sorted(h.items()) if k != "__metadata__"
                     and v["data_offsets"][1] - v["data_offsets"][0] <= 256][:6]
            tensors = [(k, v["dtype"], v["shape"], v["data_offsets"][1] - v["data_offsets"][0]) for k, v in small]
            put(t, f"{variant}-{comp.split('/')[0]}.safetensors", st_file(tensors, h.get("__metadata__")))
    put(t, "empty.safetensors", st_file([]))
    put(t, "metadata-only.safetensors", st_file([], {"format": "pt", "note": "x"}))
    put(t, "dtypes.safetensors", st_file([("a", "F16", [2, 1], 4), ("b", "I64", [1], 8), ("c", "U8", [3], 3),
                                          ("d", "BOOL", [], 1), ("e", "F32", [0, 5], 0)]))
    put(t, "f4.safetensors", st_file([("q", "F4", [2, 3], 3), ("r", "F8_E4M3", [2], 2)]))


def safetensors_index():
    t = "safetensors_index_fuzz"
    # The harness's component folder: a.safetensors {x F32, y BF16}, sub/b.safetensors {z F16, w I64},
    # dir.safetensors/ (a folder), link.safetensors -> ../outside.safetensors {o}.
    put(t, "two-shards.json", json.dumps({"metadata": {"total_size": 26}, "weight_map": {
        "x": "a.safetensors", "y": "a.safetensors", "z": "sub/b.safetensors", "w": "sub/b.safetensors"}}, indent=2))
    put(t, "one-shard.json", json.dumps({"weight_map": {"x": "a.safetensors"}}))
    put(t, "symlink-out.json", json.dumps({"weight_map": {"o": "link.safetensors"}}))
    put(t, "dotdot.json", json.dumps({"weight_map": {"o": "../outside.safetensors"}}))
    put(t, "folder.json", json.dumps({"weight_map": {"x": "dir.safetensors"}}))
    put(t, "wrong-shard.json", json.dumps({"weight_map": {"z": "a.safetensors", "x": "./a.safetensors"}}))


def json_config():
    t = "json_config_fuzz"
    files = [(0, "transformer/config.json"), (1, "vae/config.json"), (2, "text_encoder/config.json"),
             (3, "scheduler/scheduler_config.json"), (4, "model_index.json")]
    for variant in ["tiny-bf16", "tiny-fp32"]:
        for sel, rel in files:
            with open(os.path.join(FIX, "models", variant, rel), "rb") as f:
                put(t, f"{sel}-{variant}-{rel.split('/')[0]}", bytes([sel]) + f.read())
    put(t, "3-linear-shift", bytes([3]) + json.dumps({"shift": 3.0, "use_dynamic_shifting": True,
                                                       "time_shift_type": "linear", "shift_terminal": 0.1,
                                                       "invert_sigmas": False, "base_shift": None}).encode())


def tokenizer():
    with open(os.path.join(FIX, "qwen3_tokenizer", "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    with open(os.path.join(FIX, "qwen3_tokenizer", "tokenizer_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    model = tj["model"]
    vocab = {k: v for k, v in model["vocab"].items() if v < 400}
    merges = [m for m in model["merges"] if m[0] in vocab and m[1] in vocab and m[0] + m[1] in vocab]
    # Added tokens get the ids right after the mini vocabulary (the loader wants them contiguous).
    remap = {a["id"]: 400 + i for i, a in enumerate(tj["added_tokens"])}
    mini = dict(tj)
    mini["model"] = dict(model, vocab=vocab, merges=merges)
    mini["added_tokens"] = [dict(a, id=remap[a["id"]]) for a in tj["added_tokens"]]
    os.makedirs(DATA, exist_ok=True)
    mini_text = json.dumps(mini, ensure_ascii=False, indent=1)
    # Only the added tokens the mini tokenizer declares.
    mini_cfg = dict(cfg, added_tokens_decoder={str(remap[int(k)]): v for k, v in cfg["added_tokens_decoder"].items()
                                               if int(k) in remap})
    cfg_text = json.dumps(mini_cfg, ensure_ascii=False, indent=1)
    with open(os.path.join(DATA, "mini_tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(mini_text)
    with open(os.path.join(DATA, "mini_tokenizer_config.json"), "w", encoding="utf-8") as f:
        f.write(cfg_text)

    t = "tokenizer_json_fuzz"
    put(t, "0-mini-tokenizer.json", b"\0" + mini_text.encode())
    put(t, "1-tokenizer-config.json", b"\1" + cfg_text.encode())
    put(t, "2-chat-template.jinja", b"\2" + cfg["chat_template"].encode())
    put(t, "1-template-list.json", b"\1" + json.dumps(dict(mini_cfg, chat_template=[
        {"name": "default", "template": cfg["chat_template"]}])).encode())

    t = "tokenizer_encode_fuzz"
    prompts = {
        "ascii": "a photo of a cat sitting on a red sofa, 4k, highly detailed",
        "chinese": "一只猫坐在红色沙发上，高清，细节丰富",
        "mixed": "Café — naïve résumé, ﬁ ligature, Ångström, emoji 🐱🎨 and ZWJ 👩‍🔬",
        "special": "<|im_start|>user\nhi<|im_end|>\n<|endoftext|><think>\n\n</think>",
        "whitespace": "  leading\t\ttabs\r\n\r\nand   trailing   \n\n ",
        "numbers": "1234567890 3.14159 1e-5 0x1F 12:30",
        "contractions": "I'm it's we'll they'd you've she's DON'T",
        "combining": "e\u0301 a\u0308 \u1100\u1161 \uac00",
        "invalid-utf8": b"abc\xff\xfe\xc3( \xe2\x82 \xf0\x9f\x90 end",
        "nul": b"a\x00b\x00<|im_end|>\x00",
    }
    for name, p in prompts.items():
        put(t, name, p)


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)


def png(width, height, color, depth, rows, pre=(), post=(), interlace=0, palette=None, trns=None):
    out = b"\x89PNG\r\n\x1a\n"
    out += png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace))
    if palette is not None:
        out += png_chunk(b"PLTE", palette)
    if trns is not None:
        out += png_chunk(b"tRNS", trns)
    for kind, data in pre:
        out += png_chunk(kind, data)
    out += png_chunk(b"IDAT", zlib.compress(rows))
    for kind, data in post:
        out += png_chunk(kind, data)
    return out + png_chunk(b"IEND", b"")


def png_metadata():
    t = "png_metadata_fuzz"
    params = ("a cat, \"quoted\"\nNegative prompt: blurry\n"
              "Steps: 8, Sampler: Euler, CFG scale: 0, Seed: 42, Size: 64x64, Model: Z-Image-Turbo, Shift: 3")
    zjson = json.dumps({"prompt": "一只猫", "seed": 42, "width": 64, "height": 64, "num_inference_steps": 8},
                       ensure_ascii=False)
    text = [(b"tEXt", b"parameters\0" + params.encode("latin-1")),
            (b"iTXt", b"zimage\0\0\0\0\0" + zjson.encode())]
    rgb = b"".join(b"\0" + bytes([x * 40, y * 40, 128] * 1)[:3] * 1 for y in range(2) for x in range(1))
    put(t, "rgb-text.png", png(1, 2, 2, 8, rgb, pre=text))
    put(t, "gray1.png", png(1, 1, 0, 8, b"\0\x7f"))
    put(t, "rgba-ztxt-after.png", png(2, 1, 6, 8, b"\0" + bytes(range(8)),
                                       post=[(b"zTXt", b"Comment\0\0" + zlib.compress("café".encode("latin-1"))),
                                             (b"iTXt", b"Title\0\1\0en\0Titel\0" + zlib.compress("猫".encode()))]))
    put(t, "palette-trns.png", png(2, 2, 3, 2, b"\0\x40\0\x90", palette=b"\0\0\0\xff\0\0\0\xff\0", trns=b"\x00\x80"))
    put(t, "gray16-interlaced.png", png(1, 1, 0, 16, b"\0\x12\x34", interlace=1))
    put(t, "infotext.txt", params)
    put(t, "infotext-quoted.txt", 'p\nSteps: 1, Sampler: "Euler, a", Seed: "1:2", Extra: "a\\"b"')


def gguf_file(kvs, tensors, data_len, version=3, align=32):
    """GGUF bytes: kvs = [(key, type, encoded value)], tensors = [(name, ne, type, offset)]."""
    b = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        b += struct.pack("<Q", len(k)) + k.encode() + struct.pack("<I", t) + v
    for name, ne, t, off in tensors:
        b += struct.pack("<Q", len(name)) + name.encode() + struct.pack("<I", len(ne))
        b += b"".join(struct.pack("<q", d) for d in ne) + struct.pack("<IQ", t, off)
    b += b"\0" * (-len(b) % align)
    return b + bytes((i * 37) & 0xFF for i in range(data_len))


def gguf():
    t = "gguf_fuzz"
    s = lambda x: struct.pack("<Q", len(x)) + x.encode()
    kvs = [("general.architecture", 8, s("x")), ("a.u32", 4, struct.pack("<I", 7)),
           ("a.strs", 9, struct.pack("<IQ", 8, 2) + s("ab") + s("")), ("a.f64", 12, struct.pack("<d", 0.5))]
    put(t, "empty.gguf", gguf_file([], [], 0))
    put(t, "v2-metadata.gguf", gguf_file(kvs, [], 0, version=2))
    put(t, "f32-q8.gguf", gguf_file(kvs[:1], [("a", [4], 0, 0), ("b", [32, 2], 8, 32)], 100))
    put(t, "align64-k.gguf", gguf_file([("general.alignment", 4, struct.pack("<I", 64))],
                                        [("k", [256], 12, 0), ("h", [256], 14, 192), ("f", [8], 1, 448)], 464, align=64))
    put(t, "quants-0.gguf", gguf_file([], [("q4", [32], 2, 0), ("q5", [32], 6, 32), ("q2", [256], 10, 64),
                                          ("q3", [256], 11, 160), ("q5k", [256], 13, 288), ("bf", [2, 2], 30, 480)],
                                      488))
    with open(os.path.join(FIX, "gguf", "quants.gguf"), "rb") as f:
        put(t, "fixture-quants.gguf", f.read())


if __name__ == "__main__":
    gguf()
    safetensors_header()
    safetensors_index()
    json_config()
    tokenizer()
    png_metadata()

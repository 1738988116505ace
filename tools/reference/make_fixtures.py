#!/usr/bin/env python3
"""Generates the reference fixtures of zimage.cpp (tests/fixtures) with the real diffusers/transformers.

Everything is deterministic: fixed seeds, 2 threads, deterministic algorithms.  Outputs:

  tests/fixtures/
    MANIFEST.json                      versions, seeds, configs, file list (+sha256)
    qwen3_tokenizer/                   the real Qwen3 tokenizer (copied byte-for-byte)
    models/tiny-bf16/, models/tiny-fp32/   complete diffusers folders (ZImagePipeline.save_pretrained)
    ref/tokenizer_prompts.json         chat-templated prompts -> ids/mask exactly as ZImagePipeline._encode_prompt
    ref/tokenizer_corpus.json          >= 2000 raw strings -> ids (no template, no special tokens added) and
                                       decoded text where it differs from the input
    ref/scheduler.json                 FlowMatchEulerDiscreteScheduler timesteps/sigmas + step checks
    ref/randn.safetensors, ref/randn_meta.json   torch.randn(CPU generator) streams
    ref/<model>/text_encoder.safetensors, transformer.safetensors, transformer_cases.json,
               vae.safetensors, vae_tiled.safetensors (fp32 models), pipeline_<case>.safetensors,
               pipeline_cases.json

    edit/, ref/<model>/edit_*          img2img / inpaint inputs and runs (edit_fixtures.py; --only edit)
    controlnet/, ref/<model>/controlnet_*   tiny ControlNets, control images and ControlNet / ControlNet-inpaint
                                       runs (controlnet_fixtures.py; --only controlnet)

Usage: python make_fixtures.py [--out tests/fixtures] [--tokenizer-src DIR] [--only PART,...]
"""

import argparse
import hashlib
import json
import math
import os
import platform
import random
import shutil
import sys
import time

import numpy as np
import torch

torch.set_num_threads(2)
torch.use_deterministic_algorithms(True, warn_only=True)

import diffusers  # noqa: E402
import safetensors  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    ZImagePipeline,
    ZImageTransformer2DModel,
)
from diffusers.image_processor import VaeImageProcessor  # noqa: E402
from diffusers.pipelines.z_image.pipeline_z_image import calculate_shift  # noqa: E402
from diffusers.utils import logging as dlogging  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoTokenizer, Qwen3Config, Qwen3Model  # noqa: E402

dlogging.set_verbosity_error()
dlogging.disable_progress_bar()
transformers.logging.set_verbosity_error()

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_TOKENIZER_SRC = "/work/shared/tokenizers/qwen3"

# --------------------------------------------------------------------------------------------
# Model configurations
# --------------------------------------------------------------------------------------------

SCHEDULER_CONFIG = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False)

MODELS = {
    "tiny-bf16": dict(
        seed=1000,
        weight_dtype="bfloat16",
        text_encoder_weight_dtype="bfloat16",
        run_dtype="bfloat16",
        text_encoder=dict(
            vocab_size=151936,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            intermediate_size=64,
            rope_theta=1e6,
            rms_norm_eps=1e-6,
            max_position_embeddings=40960,
            tie_word_embeddings=True,
        ),
        transformer=dict(
            all_patch_size=(2,),
            all_f_patch_size=(1,),
            in_channels=16,
            dim=64,
            n_layers=2,
            n_refiner_layers=1,
            n_heads=2,
            n_kv_heads=2,
            norm_eps=1e-5,
            qk_norm=True,
            cap_feat_dim=32,
            rope_theta=256.0,
            t_scale=1000.0,
            axes_dims=[8, 12, 12],
            axes_lens=[1024, 512, 512],
        ),
        vae=dict(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            block_out_channels=(16, 32),
            layers_per_block=1,
            act_fn="silu",
            latent_channels=16,
            norm_num_groups=8,
            sample_size=64,
            scaling_factor=0.3611,
            shift_factor=0.1159,
            force_upcast=True,
            use_quant_conv=False,
            use_post_quant_conv=False,
            mid_block_add_attention=True,
        ),
    ),
    "tiny-fp32": dict(
        seed=2000,
        weight_dtype="float32",
        text_encoder_weight_dtype="bfloat16",  # 151936x32 embedding would be too big in fp32
        run_dtype="float32",
        text_encoder=dict(
            vocab_size=151936,
            hidden_size=32,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=8,
            intermediate_size=48,
            rope_theta=10000.0,
            rms_norm_eps=1e-6,
            max_position_embeddings=40960,
            tie_word_embeddings=True,
        ),
        transformer=dict(
            all_patch_size=(2,),
            all_f_patch_size=(1,),
            in_channels=16,
            # dim 72 / head_dim 24 instead of 96 / 32: the fp32 weights of dim 96 push tests/fixtures over
            # the 40 MB budget.  head_dim 24 (not a power of two) and three different axes dims also
            # widen what the parity tests cover.
            dim=72,
            n_layers=3,
            n_refiner_layers=2,
            n_heads=3,
            n_kv_heads=3,
            norm_eps=1e-5,
            qk_norm=True,
            cap_feat_dim=32,
            rope_theta=256.0,
            t_scale=1000.0,
            axes_dims=[12, 4, 8],
            axes_lens=[1024, 512, 512],
        ),
        vae=dict(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            # (8, 16, 16) / 8 groups rather than (16, 32, 32) / 16: a quarter of the fp32 weights (size
            # budget); still 3 blocks (vae_scale_factor 4), 2 layers per block, 1 channel per group in
            # the first block.
            block_out_channels=(8, 16, 16),
            layers_per_block=2,
            act_fn="silu",
            latent_channels=16,
            norm_num_groups=8,
            sample_size=64,
            scaling_factor=0.3611,
            shift_factor=0.1159,
            force_upcast=True,
            use_quant_conv=False,
            use_post_quant_conv=False,
            mid_block_add_attention=True,
        ),
    ),
}

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def log(*args):
    print(f"[{time.strftime('%H:%M:%S')}]", *args, flush=True)


def _is_scalar(v):
    return v is None or isinstance(v, (bool, int, float, str))


def _is_leaf(v):
    if _is_scalar(v):
        return True
    if isinstance(v, (list, tuple)):
        return all(_is_scalar(x) for x in v)
    if isinstance(v, dict):
        return all(_is_scalar(x) or (isinstance(x, (list, tuple)) and all(_is_scalar(y) for y in x)) for x in v.values())
    return False


def _to_json(obj, level=0):
    """Pretty JSON that keeps number lists and flat records on one line (small, diff-friendly files)."""
    if _is_leaf(obj):
        return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))
    pad, pad1 = " " * level, " " * (level + 1)
    if isinstance(obj, dict):
        items = [f"{pad1}{json.dumps(str(k), ensure_ascii=False)}: {_to_json(v, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    items = [pad1 + _to_json(v, level + 1) for v in obj]
    return "[\n" + ",\n".join(items) + "\n" + pad + "]"


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    json.loads(json.dumps(obj))  # fails early on non-serialisable values / NaN-free check below
    text = _to_json(json.loads(json.dumps(obj)))
    assert json.loads(text) == json.loads(json.dumps(obj))
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")


def save_tensors(path, tensors):
    """Saves a dict of tensors as float32 (contiguous) safetensors.

    No __metadata__: safetensors serialises it from a hash map, so its byte order would change per run."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    out = {k: v.detach().to(torch.float32).cpu().contiguous().clone() for k, v in tensors.items()}
    save_file(out, path)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cpu_info():
    """bf16 references go through oneDNN kernels whose path depends on the CPU (AVX512-BF16 / AMX)."""
    info = dict(machine=platform.machine(), torch_cpu_capability=torch.backends.cpu.get_cpu_capability())
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["model_name"] = line.split(":", 1)[1].strip()
                break
        flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
        info["flags"] = sorted(f for f in flags if f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"))
    except OSError:
        pass
    return info


def bf16_round(t):
    return t.to(torch.bfloat16).to(torch.float32)


def reinit_(module, seed, lin_gain=1.0):
    """Re-initialises EVERY parameter deterministically with non-trivial values.

    - Linear / Conv weights: normal(0, lin_gain / sqrt(fan_in)) (fan_in = in_features * kernel size)
    - Norm weights (RMSNorm / LayerNorm / GroupNorm): normal(1, 0.1); norm biases: normal(0, 0.05)
    - Embeddings: normal(0, 0.5); other parameters (pad tokens, ...): normal(0, 0.5)
    - All other biases: normal(0, 0.05)
    Zero-initialised layers (adaLN, final layer, pad tokens) become random as well.
    """
    gen = torch.Generator().manual_seed(seed)
    for mod_name, mod in module.named_modules():
        cls = type(mod).__name__
        is_norm = "Norm" in cls  # RMSNorm, Qwen3RMSNorm, LayerNorm, GroupNorm
        for p_name, p in mod.named_parameters(recurse=False):
            shape = tuple(p.shape)
            if is_norm:
                if p_name == "weight":
                    val = 1.0 + 0.1 * torch.randn(shape, generator=gen)
                else:
                    val = 0.05 * torch.randn(shape, generator=gen)
            elif isinstance(mod, torch.nn.Embedding):
                val = 0.5 * torch.randn(shape, generator=gen)
            elif p_name == "weight" and p.ndim >= 2:
                fan_in = int(np.prod(shape[1:]))
                val = (lin_gain / math.sqrt(fan_in)) * torch.randn(shape, generator=gen)
            elif p_name == "bias":
                val = 0.05 * torch.randn(shape, generator=gen)
            else:
                val = 0.5 * torch.randn(shape, generator=gen)
            with torch.no_grad():
                p.copy_(val.to(p.dtype))


def tensor_stats(t):
    t = t.float()
    return f"shape={list(t.shape)} mean={t.mean():.4f} std={t.std():.4f} min={t.min():.4f} max={t.max():.4f}"


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

LONG_PARAGRAPH = (
    "In the quiet valley beneath the mountains, an old stone bridge crosses a narrow river. "
    "Every morning the fog rolls down from the pine forests, covering the fields in a soft grey "
    "blanket, while farmers lead their cattle along the muddy path toward the village market. "
)

TOKENIZER_PROMPTS = [
    ("english", "A photograph of an astronaut riding a horse on the moon, highly detailed, 4k.", 512),
    ("chinese", "一幅为名为“造相「Z-IMAGE-TURBO」”的项目设计的创意海报，画面中有一辆复古蒸汽小火车。", 512),
    ("japanese", "桜の木の下で猫が昼寝をしている、水彩画風のイラスト。カタカナとひらがなを混ぜる。", 512),
    ("emoji", "Family 👨‍👩‍👧‍👦, flags 🇯🇵🇫🇷🏳️‍🌈, skin tones 👍🏽👋🏿, keycap 1️⃣ and ❤️‍🔥!", 512),
    ("digits", "1234567890 3.14159 2026-11-28", 512),
    ("whitespace", "a\t\tb   c\n\nd \r\n e", 512),
    ("lead_trail_spaces", "   leading and trailing spaces   ", 512),
    ("newlines", "line one\nline two\n\n\nline five\n", 512),
    ("empty", "", 512),
    ("special_literal", "text with <|im_start|> and <|im_end|> and <|endoftext|> inside", 512),
    ("combining", "Cafe\u0301 vs Caf\u00e9, A\u030a ring, n\u0303, Ǆ ﬁ ligature, Å", 512),
    ("arabic_hindi_korean", "مرحبا بالعالم — नमस्ते दुनिया — 안녕하세요 세계", 512),
    ("long", (LONG_PARAGRAPH * 14).strip(), 512),
    ("code_mixed", "def f(x):\n    return x**2  # 平方 it's DON'T they'll", 512),
    ("english_ml64", "A photograph of an astronaut riding a horse on the moon, highly detailed, 4k.", 64),
    ("long_ml64", (LONG_PARAGRAPH * 3).strip(), 64),
    ("chinese_ml64", "星空下的城市，霓虹灯倒映在雨后的街道上，远处有一座高塔。" * 3, 64),
]


def template(tok, prompt):
    return tok.apply_chat_template(
        [{"role": "user", "content": prompt}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=True,
    )


def make_tokenizer_prompts(tok):
    entries = []
    for name, prompt, max_len in TOKENIZER_PROMPTS:
        templated = template(tok, prompt)
        enc = tok([templated], padding="max_length", max_length=max_len, truncation=True)
        full = tok([templated])["input_ids"][0]
        entries.append(
            dict(
                name=name,
                prompt=prompt,
                templated=templated,
                max_length=max_len,
                input_ids=enc["input_ids"][0],
                attention_mask=enc["attention_mask"][0],
                num_tokens_untruncated=len(full),
            )
        )
        assert len(enc["input_ids"][0]) == max_len
    return entries


def make_tokenizer_corpus(tok, n_target=2400, seed=20261128):
    rng = random.Random(seed)
    texts = []

    words_en = (
        "the quick brown fox jumps over lazy dog hello world photograph astronaut riding horse moon "
        "beautiful landscape mountain river sunset portrait cinematic lighting detailed texture "
        "internationalization tokenization antidisestablishmentarianism pneumonoultramicroscopic "
        "Hello HELLO hElLo Zürich naïve café résumé coöperate façade jalapeño São Paulo Ærøskøbing"
    ).split()
    sentences = [
        "The cat sat on the mat.",
        "It's a beautiful day, isn't it?",
        "I'm sure they'll say we'd've done it.",
        "DON'T SHOUT! WE'RE LISTENING; YOU'VE BEEN HEARD.",
        "She said: \"don't\" — and he replied 'won't'.",
        "Ich habe heute keine Zeit, weil ich arbeiten muss.",
        "Le renard brun rapide saute par-dessus le chien paresseux.",
        "El niño comió una manzana en la mañana.",
        "Быстрая коричневая лиса прыгает через ленивую собаку.",
        "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο.",
        "我爱北京天安门，天安门上太阳升。",
        "今日はいい天気ですね。東京タワーに行きましょう！",
        "다람쥐 헌 쳇바퀴에 타고파.",
        "ภาษาไทยเป็นภาษาที่ไม่มีการเว้นวรรคระหว่างคำ",
        "Tiếng Việt có nhiều dấu thanh điệu khác nhau.",
        "עברית נכתבת מימין לשמאל.",
        "اللغة العربية جميلة جدا.",
        "हिन्दी भारत की राजभाषा है।",
        "বাংলা ভাষা অনেক সুন্দর।",
        "தமிழ் ஒரு பழமையான மொழி.",
        "ქართული ენა ძალიან ლამაზია.",
        "Հայերեն լեզուն հին է։",
        "አማርኛ የኢትዮጵያ ቋንቋ ነው።",
        "Türkçe öğrenmek çok eğlenceli.",
        "Polski język ma wiele znaków: ąćęłńóśźż.",
        "Ελληνικά, русский, 中文, 日本語, 한국어, mixed together.",
    ]
    code = [
        "def main():\n    print('hello, world')\n    return 0\n",
        "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
        "#include <stdio.h>\nint main(void) {\n\treturn 0;\n}\n",
        "const x = {a: 1, \"b\": [2, 3], c: null};",
        "SELECT * FROM users WHERE id = 42 AND name LIKE '%bob%';",
        "if x != None and y >= 3:\n        raise ValueError(f\"bad {x!r}\")",
        "<div class=\"container\"><p>Hello&nbsp;world</p></div>",
        "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
        "$ ls -la | grep '\\.py$' && echo \"done\" > /dev/null 2>&1",
        "matrix[i][j] += alpha * (x[i] - mu) ** 2 / (sigma + 1e-6)",
    ]
    urls = [
        "https://huggingface.co/Tongyi-MAI/Z-Image-Turbo/blob/main/model_index.json",
        "http://example.com:8080/path/to/file.html?query=1&b=two#frag",
        "mailto:someone@example.org",
        "ftp://ftp.example.net/pub/file-v1.2.3.tar.gz",
        "www.测试.中国/路径?参数=值",
    ]
    specials = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<think>",
        "</think>",
        "<tool_call>",
        "<|vision_start|>",
        "<|endoftext|><|endoftext|>",
        "a<|endoftext|>b",
        "<think>reasoning</think>answer",
        "< |endoftext| >",
        "<|endoftext",
        "<|im_start|>user\nhello<|im_end|>\n",
        " <think> ",
    ]
    contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D"]
    ws_atoms = [" ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2003", "\x0b", "\x0c"]
    punct = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["…", "—", "–", "«", "»", "“", "”", "‘", "’", "¿", "¡", "。", "、", "！", "？"]
    emoji = [
        "😀", "😂", "🥲", "👍", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸", "🇯🇵", "🇩🇪", "❤️", "❤️‍🔥", "1️⃣", "#️⃣",
        "🧑🏿‍💻", "🐈‍⬛", "🫠", "🪐", "☕", "✈️", "©", "®", "™",
    ]
    fullwidth = "ＡＢＣａｂｃ０１２３！？（）［］"
    combining = ["e\u0301", "a\u0308", "o\u0302\u0323", "n\u0303", "u\u031b\u0300", "A\u030a", "\u0301", "i\u0307"]
    blocks = [
        (0x0020, 0x007E), (0x00A0, 0x024F), (0x0250, 0x02FF), (0x0300, 0x036F), (0x0370, 0x03FF),
        (0x0400, 0x04FF), (0x0530, 0x058F), (0x0590, 0x05FF), (0x0600, 0x06FF), (0x0900, 0x097F),
        (0x0980, 0x09FF), (0x0E00, 0x0E7F), (0x10A0, 0x10FF), (0x1100, 0x11FF), (0x1E00, 0x1EFF),
        (0x2000, 0x206F), (0x2070, 0x209F), (0x20A0, 0x20CF), (0x2100, 0x214F), (0x2190, 0x21FF),
        (0x2200, 0x22FF), (0x2500, 0x257F), (0x2600, 0x26FF), (0x2700, 0x27BF), (0x3000, 0x303F),
        (0x3040, 0x309F), (0x30A0, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3),
        (0xE000, 0xF8FF), (0xF900, 0xFAFF), (0xFB00, 0xFB4F), (0xFE00, 0xFE0F), (0xFE30, 0xFE4F),
        (0xFF00, 0xFFEF), (0xFFF0, 0xFFFF), (0x10000, 0x1007F), (0x1D400, 0x1D7FF), (0x1F300, 0x1F5FF),
        (0x1F600, 0x1F64F), (0x1F900, 0x1F9FF), (0x20000, 0x2A6DF), (0xE0000, 0xE007F), (0x10FFF0, 0x10FFFF),
        (0x0000, 0x001F), (0x007F, 0x009F),
    ]

    def rand_cp():
        lo, hi = rng.choice(blocks)
        while True:
            c = rng.randint(lo, hi)
            if not (0xD800 <= c <= 0xDFFF):
                return chr(c)

    def rand_number():
        k = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 20, 33])
        s = "".join(rng.choice("0123456789") for _ in range(k))
        form = rng.randint(0, 5)
        if form == 1:
            s = s + "." + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 6)))
        elif form == 2:
            s = "-" + s
        elif form == 3:
            s = f"{int(s):,}"
        elif form == 4:
            s = s + rng.choice(["px", "%", "kg", "th", "x", "e-5", "k"])
        return s

    # Fixed hand-written material first.
    texts += sentences + code + urls + specials + emoji + combining + punct + words_en
    texts += [fullwidth, "", " ", "  ", "\n", "\t", "\r\n", " \n ", "\n\n\n", "    \n", "a" * 300,
              "ab" * 150 + "!", "Supercalifragilisticexpialidocious" * 4, "x" * 1000, "1" * 100, "ℕ𝕠𝕟𝔹𝕄𝕇",
              "\x00", "a\x00b", "\x07\x1b[31mred\x1b[0m", "\x7f", "\ufeffBOM", "zero\u200bwidth\u200djoiner\u200c",
              "LTR\u202eRTL", "ǅǈǋ", "ß ẞ ﬀ ﬃ", "İstanbul ı i̇"]
    for c in contractions:
        texts += [f"it{c}", f"IT{c}", f"word{c} next", f" {c}", f"{c}", f"x {c}s", f"\"{c}\""]
    for a in ws_atoms:
        for b in ws_atoms:
            texts.append(f"a{a}{b}b")
            texts.append(f"{a}{b}x{b}{a}")
    for n in range(1, 9):
        for combo in [" " * n, "\t" * n, "\n" * n, " \n" * n, "\n " * n, " \t" * n, "\r\n" * n]:
            texts += [combo, f"word{combo}", f"{combo}word", f"a{combo}b"]

    generators = [
        lambda: " ".join(rng.choice(words_en) for _ in range(rng.randint(1, 12))),
        lambda: rng.choice(sentences),
        lambda: " ".join(rng.sample(sentences, 2)),
        lambda: rng.choice(code),
        lambda: rng.choice(urls) + rng.choice(["", "/", "?x=" + rand_number()]),
        lambda: rand_number(),
        lambda: " ".join(rand_number() for _ in range(rng.randint(2, 6))),
        lambda: rng.choice(words_en) + rng.choice(contractions) + " " + rng.choice(words_en),
        lambda: "".join(rng.choice(ws_atoms) for _ in range(rng.randint(1, 8))),
        lambda: rng.choice(words_en) + "".join(rng.choice(ws_atoms) for _ in range(rng.randint(1, 5))) + rng.choice(words_en),
        lambda: "".join(rng.choice(punct) for _ in range(rng.randint(1, 10))),
        lambda: rng.choice(words_en) + "".join(rng.choice(punct) for _ in range(rng.randint(1, 4))),
        lambda: "".join(rng.choice(emoji) for _ in range(rng.randint(1, 5))),
        lambda: rng.choice(words_en) + " " + rng.choice(emoji) + rng.choice(words_en),
        lambda: "".join(rand_cp() for _ in range(rng.randint(1, 12))),
        lambda: rng.choice(words_en) + rand_cp() + rand_cp() + rng.choice(words_en),
        lambda: rng.choice(specials) + rng.choice(words_en) + rng.choice(specials),
        lambda: rng.choice(words_en) + rng.choice(combining) + rng.choice(["", " ", "x"]),
        lambda: "".join(rng.choice(fullwidth) for _ in range(rng.randint(1, 8))),
        lambda: "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(20, 120))),
        lambda: rng.choice(sentences).upper(),
        lambda: rng.choice(sentences).lower() + "\n" + rng.choice(sentences),
        lambda: "".join(rng.choice(["a", "1", " ", "'", "s", "\n", "é", "中", "😀", "\t", "-", "_"]) for _ in range(rng.randint(1, 20))),
    ]
    while len(texts) < n_target:
        texts.append(rng.choice(generators)())

    corpus = []
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        entry = dict(text=text, ids=ids)
        decoded = tok.decode(ids)
        if decoded != text:  # size budget: "decoded" is only written where it differs from "text"
            entry["decoded"] = decoded
        corpus.append(entry)
    return corpus


# --------------------------------------------------------------------------------------------
# Scheduler
# --------------------------------------------------------------------------------------------


def jsonable_config(cfg):
    out = {}
    for k, v in dict(cfg).items():
        if k.startswith("_"):  # _use_default_values etc. (set order is not deterministic)
            continue
        if isinstance(v, (bool, int, float, str)) or v is None:
            out[k] = v
        elif isinstance(v, (list, tuple)):
            out[k] = list(v)
    return out


def make_scheduler_ref():
    configs = {
        "zimage_turbo_static_shift3": dict(SCHEDULER_CONFIG),
        "dynamic_exponential": dict(
            num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, time_shift_type="exponential",
            base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096,
        ),
        "dynamic_linear": dict(
            num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, time_shift_type="linear",
            base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096,
        ),
    }
    cases = []
    for cname, ckw in configs.items():
        for seq_len in [256, 4096]:
            for n in [1, 2, 8, 9, 50]:
                sched = FlowMatchEulerDiscreteScheduler(**ckw)
                mu = calculate_shift(
                    seq_len,
                    sched.config.get("base_image_seq_len", 256),
                    sched.config.get("max_image_seq_len", 4096),
                    sched.config.get("base_shift", 0.5),
                    sched.config.get("max_shift", 1.15),
                )
                sigmas_in = torch.linspace(1.0, 1 / n, n).tolist()
                sched.set_timesteps(sigmas=sigmas_in, mu=mu)
                cases.append(
                    dict(
                        name=f"{cname}_seq{seq_len}_n{n}",
                        config_name=cname,
                        mode="custom_sigmas",
                        image_seq_len=seq_len,
                        num_inference_steps=n,
                        mu=mu,
                        sigmas_in=sigmas_in,
                        timesteps=sched.timesteps.tolist(),
                        sigmas=sched.sigmas.tolist(),
                    )
                )
        # Plain set_timesteps(num_inference_steps=N) without custom sigmas.
        for n in [1, 8, 50]:
            sched = FlowMatchEulerDiscreteScheduler(**ckw)
            mu = calculate_shift(1024, 256, 4096, 0.5, 1.15)
            sched.set_timesteps(num_inference_steps=n, mu=mu)
            cases.append(
                dict(
                    name=f"{cname}_plain_n{n}",
                    config_name=cname,
                    mode="num_inference_steps",
                    image_seq_len=1024,
                    num_inference_steps=n,
                    mu=mu,
                    sigmas_in=None,
                    timesteps=sched.timesteps.tolist(),
                    sigmas=sched.sigmas.tolist(),
                )
            )

    # Step check: the pipeline's loop (set_begin_index(0), step with fp32 noise_pred).
    steps = []
    sched = FlowMatchEulerDiscreteScheduler(**configs["zimage_turbo_static_shift3"])
    n = 8
    mu = calculate_shift(256, 256, 4096, 0.5, 1.15)
    sched.set_timesteps(sigmas=torch.linspace(1.0, 1 / n, n).tolist(), mu=mu)
    sched.set_begin_index(0)
    gen = torch.Generator().manual_seed(77)
    sample = torch.randn((1, 4, 2, 2), generator=gen)
    for i, t in enumerate(sched.timesteps):
        model_output = torch.randn((1, 4, 2, 2), generator=gen)
        prev = sched.step(model_output, t, sample, return_dict=False)[0]
        steps.append(
            dict(
                index=i,
                timestep=float(t),
                sigma=float(sched.sigmas[i]),
                sigma_next=float(sched.sigmas[i + 1]),
                shape=list(sample.shape),
                sample=sample.flatten().tolist(),
                model_output=model_output.flatten().tolist(),
                prev_sample=prev.flatten().tolist(),
            )
        )
        sample = prev

    return dict(
        configs={k: jsonable_config(FlowMatchEulerDiscreteScheduler(**v).config) for k, v in configs.items()},
        calculate_shift="mu = image_seq_len * m + b, m = (max_shift - base_shift) / (max_seq_len - base_seq_len), "
        "b = base_shift - m * base_seq_len; pipeline passes scheduler.config.get(key, default) with defaults "
        "256/4096/0.5/1.15",
        cases=cases,
        step=dict(config_name="zimage_turbo_static_shift3", image_seq_len=256, num_inference_steps=n, seed=77, steps=steps),
    )


# --------------------------------------------------------------------------------------------
# randn
# --------------------------------------------------------------------------------------------

RANDN_SEEDS = [0, 1, 42, 1234, 2**31 - 1, 2**32 + 5, 2**63 - 1]
RANDN_SHAPES = [[1], [5], [15], [16], [17], [31], [33], [100], [1, 16, 8, 8], [2, 16, 32, 32], [3, 5, 7]]
RANDN_BIG_SHAPE_SEEDS = [0]  # [2,16,32,32] (128 KiB each) only for these seeds: size budget


def make_randn(ref_dir):
    tensors, meta = {}, []
    for s in RANDN_SEEDS:
        for shape in RANDN_SHAPES:
            if shape == [2, 16, 32, 32] and s not in RANDN_BIG_SHAPE_SEEDS:
                continue
            name = f"seed{s}_shape" + "x".join(str(d) for d in shape)
            t = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s), dtype=torch.float32)
            tensors[name] = t
            meta.append(dict(name=name, seed=s, shape=shape))
    save_tensors(os.path.join(ref_dir, "randn.safetensors"), tensors)
    write_json(os.path.join(ref_dir, "randn_meta.json"), meta)


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def build_pipeline(name, spec, tok):
    seed = spec["seed"]
    torch.manual_seed(seed)
    te_cfg = Qwen3Config(**spec["text_encoder"])
    text_encoder = Qwen3Model(te_cfg).eval()
    reinit_(text_encoder, seed + 1)

    torch.manual_seed(seed + 10)
    transformer = ZImageTransformer2DModel(**spec["transformer"]).eval()
    reinit_(transformer, seed + 11)

    torch.manual_seed(seed + 20)
    vae = AutoencoderKL(**spec["vae"]).eval()
    reinit_(vae, seed + 21)
    with torch.no_grad():  # keep most decoded pixels inside [-1, 1] (fewer clamped values)
        vae.decoder.conv_out.weight.mul_(0.5)

    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)

    text_encoder = text_encoder.to(DTYPES[spec["text_encoder_weight_dtype"]])
    transformer = transformer.to(DTYPES[spec["weight_dtype"]])
    vae = vae.to(DTYPES[spec["weight_dtype"]])
    return ZImagePipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tok, transformer=transformer)


def save_model_folder(pipe, model_dir):
    if os.path.exists(model_dir):
        shutil.rmtree(model_dir)
    pipe.save_pretrained(model_dir, safe_serialization=True)
    tok_dir = os.path.join(model_dir, "tokenizer")
    saved = sorted(os.listdir(tok_dir))
    shutil.rmtree(tok_dir)
    os.makedirs(tok_dir)
    for fname in ["tokenizer.json", "tokenizer_config.json"]:
        os.symlink(os.path.join("..", "..", "..", "qwen3_tokenizer", fname), os.path.join(tok_dir, fname))
    return saved


def text_encoder_refs(pipe, prompts, run_dtype, fp32_te=None):
    """hidden_states[-2][0][mask] for every max_length-512 prompt, batch 1, plus one batched run."""
    out = {}
    te = pipe.text_encoder

    def run(model, ids, mask):
        with torch.no_grad():
            hs = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-2]
        return [hs[b][mask[b]] for b in range(hs.shape[0])]

    idx512 = [i for i, p in enumerate(prompts) if p["max_length"] == 512]
    for i in idx512:
        ids = torch.tensor([prompts[i]["input_ids"]])
        mask = torch.tensor([prompts[i]["attention_mask"]]).bool()
        out[f"prompt{i}"] = run(te, ids, mask)[0]
        if fp32_te is not None:
            out[f"prompt{i}_fp32"] = run(fp32_te, ids, mask)[0]

    # One batched run with three prompts of different lengths.
    batch = [0, 4, 12]  # english, digits, long (512 real tokens)
    ids = torch.tensor([prompts[i]["input_ids"] for i in batch])
    mask = torch.tensor([prompts[i]["attention_mask"] for i in batch]).bool()
    for i, emb in zip(batch, run(te, ids, mask)):
        out[f"batch_prompt{i}"] = emb
    return out, batch


def rand_inputs(gen, shape, bf16):
    t = torch.randn(shape, generator=gen)
    return bf16_round(t) if bf16 else t


TRANSFORMER_CASES = [
    dict(name="single", hw=[(8, 8)], cap_lens=[7], t=[0.3]),
    dict(name="batch2", hw=[(8, 8), (8, 8)], cap_lens=[7, 40], t=[0.9, 0.25]),
    dict(name="nonsquare", hw=[(6, 10)], cap_lens=[33], t=[0.6]),
    dict(name="exact32", hw=[(16, 16)], cap_lens=[32], t=[0.5]),
]


def transformer_refs(transformer, run_dtype, spec, fp32_transformer=None, seed=0):
    bf16 = run_dtype == torch.bfloat16
    gen = torch.Generator().manual_seed(seed)
    tensors, cases = {}, []
    cin = spec["transformer"]["in_channels"]
    cap_dim = spec["transformer"]["cap_feat_dim"]
    for case in TRANSFORMER_CASES:
        name = case["name"]
        xs = [rand_inputs(gen, (cin, 1, h, w), bf16) for (h, w) in case["hw"]]
        caps = [rand_inputs(gen, (L, cap_dim), bf16) for L in case["cap_lens"]]
        t = torch.tensor(case["t"], dtype=torch.float32)
        with torch.no_grad():
            outs = transformer([x.to(run_dtype) for x in xs], t, [c.to(run_dtype) for c in caps], return_dict=False)[0]
            outs32 = None
            if fp32_transformer is not None:
                outs32 = fp32_transformer(xs, t, caps, return_dict=False)[0]
        tensors[f"{name}.t"] = t
        for j in range(len(xs)):
            tensors[f"{name}.x{j}"] = xs[j]
            tensors[f"{name}.cap{j}"] = caps[j]
            tensors[f"{name}.out{j}"] = outs[j].float()
            assert outs[j].dtype == run_dtype, outs[j].dtype
            if outs32 is not None:
                tensors[f"{name}.out{j}_fp32"] = outs32[j].float()
        log(f"  transformer {name}: out0 {tensor_stats(outs[0])}")
        cases.append(
            dict(
                name=name,
                batch=len(xs),
                x_shapes=[list(x.shape) for x in xs],
                cap_shapes=[list(c.shape) for c in caps],
                t=case["t"],
                run_dtype=str(run_dtype).replace("torch.", ""),
                inputs_bf16_representable=bf16,
                has_fp32_reference=outs32 is not None,
            )
        )
    return tensors, cases


def vae_refs(pipe, run_dtype, fp32_vae=None, seed=0):
    bf16 = run_dtype == torch.bfloat16
    vae = pipe.vae
    gen = torch.Generator().manual_seed(seed)
    out = {}
    with torch.no_grad():
        z = rand_inputs(gen, (1, 16, 8, 12), bf16)
        out["decode.z"] = z
        out["decode.out"] = vae.decode(z.to(run_dtype)).sample.float()
        if fp32_vae is not None:
            out["decode.out_fp32"] = fp32_vae.decode(z).sample.float()
        log(f"  vae decode.out {tensor_stats(out['decode.out'])}")

        # Pipeline post-processing: pipeline-space latents (fp32) -> VAE space -> decode -> uint8.
        lat = torch.randn((1, 16, 8, 8), generator=gen)
        out["post.latents"] = lat
        l2 = lat.to(vae.dtype)
        l2 = (l2 / vae.config.scaling_factor) + vae.config.shift_factor
        img = vae.decode(l2, return_dict=False)[0]
        proc = VaeImageProcessor(vae_scale_factor=pipe.vae_scale_factor * 2)
        np_img = proc.postprocess(img, output_type="np")
        u8 = (np_img * 255).round().astype("uint8")  # == VaeImageProcessor.numpy_to_pil
        pil = proc.postprocess(img, output_type="pil")
        assert np.array_equal(np.stack([np.asarray(p) for p in pil]), u8)
        out["post.image_u8"] = torch.from_numpy(u8.astype(np.float32))
        log(f"  vae post.image_u8 {tensor_stats(out['post.image_u8'])}")

        x = torch.rand((1, 3, 16, 24), generator=gen) * 2 - 1
        if bf16:
            x = bf16_round(x)
        out["encode.x"] = x
        dist = vae.encode(x.to(run_dtype)).latent_dist
        out["encode.mean"] = dist.mean.float()
        out["encode.logvar"] = dist.logvar.float()
        out["encode.mode"] = dist.mode().float()
    return out


# AutoencoderKL.tiled_decode (the real code, small tiles so that tiling happens); latent tile T, sample tile
# T * vae_scale_factor, overlap factor 0.25.  a: edge tiles smaller than T; b: batch 2, several rows and columns.
VAE_TILED_SEED = 123
VAE_TILED_CASES = [("a", (1, 16, 12, 20), 8), ("b", (2, 16, 10, 7), 4)]


def vae_tiled_refs(model_dir):
    """`{case}.z`, `{case}.out` (tiled decode), `{case}.tile` (latent tile size) for the fp32 VAE.

    Uses its own AutoencoderKL (enable_tiling changes the module, the pipeline's VAE stays untiled)."""
    vae = AutoencoderKL.from_pretrained(os.path.join(model_dir, "vae"), torch_dtype=torch.float32).eval()
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    gen = torch.Generator().manual_seed(VAE_TILED_SEED)
    out = {}
    with torch.no_grad():
        for name, shape, tile in VAE_TILED_CASES:
            z = torch.randn(shape, generator=gen)
            vae.enable_tiling()
            vae.tile_latent_min_size = tile
            vae.tile_sample_min_size = tile * scale
            vae.tile_overlap_factor = 0.25
            out[f"{name}.z"] = z
            out[f"{name}.out"] = vae.decode(z).sample
            out[f"{name}.tile"] = torch.tensor([float(tile)])
            log(f"  vae tiled {name}: z {list(z.shape)} tile {tile} -> {tensor_stats(out[f'{name}.out'])}")
    return out


PIPELINE_PROMPT = "a photo of a cat"


def pipeline_cases_for(name):
    cases = [
        dict(name="basic", prompt=PIPELINE_PROMPT, height=64, width=64, num_inference_steps=8, guidance_scale=0.0, seed=42),
        dict(name="cfg", prompt=PIPELINE_PROMPT, negative_prompt="blurry, low quality", height=64, width=64,
             num_inference_steps=4, guidance_scale=3.0, seed=7),
    ]
    if name == "tiny-bf16":
        return cases
    cases += [
        dict(name="cfg_trunc", prompt=PIPELINE_PROMPT, height=64, width=64, num_inference_steps=6, guidance_scale=4.0,
             cfg_truncation=0.5, seed=3),
        dict(name="cfg_norm", prompt=PIPELINE_PROMPT, height=64, width=64, num_inference_steps=4, guidance_scale=5.0,
             cfg_normalization=True, seed=11),
        dict(name="multi", prompt=PIPELINE_PROMPT, height=64, width=64, num_inference_steps=4, guidance_scale=2.0,
             num_images_per_prompt=2, seed=5),
        dict(name="plist", prompt=["a red fox", "星空下的城市"], height=64, width=64, num_inference_steps=4,
             guidance_scale=0.0, seed=9),
        dict(name="nonsquare", prompt=PIPELINE_PROMPT, height=32, width=64, num_inference_steps=4, guidance_scale=0.0,
             seed=13),
        dict(name="seedlist", prompt=["a small wooden house", "a mountain lake at dawn"], height=64, width=64,
             num_inference_steps=3, guidance_scale=0.0, seeds=[21, 22]),
    ]
    return cases


def run_pipeline_case(pipe, case):
    params = dict(
        prompt=case["prompt"],
        negative_prompt=case.get("negative_prompt"),
        height=case["height"],
        width=case["width"],
        num_inference_steps=case["num_inference_steps"],
        guidance_scale=case["guidance_scale"],
        cfg_normalization=case.get("cfg_normalization", False),
        cfg_truncation=case.get("cfg_truncation", 1.0),
        num_images_per_prompt=case.get("num_images_per_prompt", 1),
        max_sequence_length=case.get("max_sequence_length", 512),
    )
    if "seeds" in case:
        generator = [torch.Generator("cpu").manual_seed(s) for s in case["seeds"]]
    else:
        generator = torch.Generator("cpu").manual_seed(case["seed"])
    captured = {}
    n_steps = params["num_inference_steps"]

    def cb(p, i, t, kw):
        if i == n_steps - 1:
            captured["latents"] = kw["latents"].detach().clone()
        return {}

    call_params = dict(params)
    # ZImagePipeline._encode_prompt overwrites the entries of a prompt LIST in place with the chat-templated
    # text, so give it copies and record the original prompts.
    for key in ("prompt", "negative_prompt"):
        if isinstance(call_params[key], list):
            call_params[key] = list(call_params[key])
    with torch.no_grad():
        res = pipe(**call_params, generator=generator, output_type="pil", callback_on_step_end=cb,
                   callback_on_step_end_tensor_inputs=["latents"])
    imgs = np.stack([np.asarray(im) for im in res.images]).astype(np.float32)
    record = dict(params)
    record["name"] = case["name"]
    if "seeds" in case:
        record["seeds"] = case["seeds"]
        record["generator"] = "list of torch.Generator('cpu').manual_seed(s) for s in seeds"
    else:
        record["seed"] = case["seed"]
        record["generator"] = "torch.Generator('cpu').manual_seed(seed)"
    record["latents_shape"] = list(captured["latents"].shape)
    record["image_shape"] = list(imgs.shape)
    return dict(latents=captured["latents"].float(), image_u8=torch.from_numpy(imgs)), record


def make_model(name, spec, tok, out_dir, only):
    model_dir = os.path.join(out_dir, "models", name)
    ref_dir = os.path.join(out_dir, "ref", name)
    os.makedirs(ref_dir, exist_ok=True)
    run_dtype = DTYPES[spec["run_dtype"]]
    info = {}

    if "models" in only:
        pipe = build_pipeline(name, spec, tok)
        info["tokenizer_files_written_by_save_pretrained"] = save_model_folder(pipe, model_dir)
        del pipe

    # Everything below uses the SAVED folder, loaded like a user would.
    pipe = ZImagePipeline.from_pretrained(model_dir, torch_dtype=run_dtype)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.transformer.dtype == run_dtype and pipe.vae.dtype == run_dtype
    assert pipe.text_encoder.dtype == run_dtype
    assert type(pipe.tokenizer).__name__ == "Qwen2Tokenizer", type(pipe.tokenizer)
    # The model folder's tokenizer (two symlinks) must behave exactly like the fixture tokenizer.
    for probe in ["a photo of a cat", "星空下的城市 <think> x"]:
        a, b = template(pipe.tokenizer, probe), template(tok, probe)
        assert a == b and pipe.tokenizer(a)["input_ids"] == tok(b)["input_ids"], probe
    info["tokenizer_folder"] = "tokenizer.json, tokenizer_config.json: relative symlinks to ../../../qwen3_tokenizer/"
    info["loaded_classes"] = {k: type(getattr(pipe, k)).__name__ for k in
                              ["scheduler", "vae", "text_encoder", "tokenizer", "transformer"]}
    info["vae_scale_factor"] = pipe.vae_scale_factor
    info["attention"] = dict(text_encoder=pipe.text_encoder.config._attn_implementation)

    fp32_pipe = None
    if run_dtype == torch.bfloat16:
        fp32_pipe = ZImagePipeline.from_pretrained(model_dir, torch_dtype=torch.float32)

    prompts = json.load(open(os.path.join(out_dir, "ref", "tokenizer_prompts.json"), encoding="utf-8"))
    if "text_encoder" in only:
        log(f"{name}: text encoder")
        te, batch = text_encoder_refs(pipe, prompts, run_dtype, fp32_pipe.text_encoder if fp32_pipe else None)
        save_tensors(os.path.join(ref_dir, "text_encoder.safetensors"), te)
        write_json(os.path.join(ref_dir, "text_encoder_cases.json"), dict(
            prompt_indices=[i for i, p in enumerate(prompts) if p["max_length"] == 512],
            batch_prompt_indices=batch,
            run_dtype=spec["run_dtype"],
            has_fp32_reference=fp32_pipe is not None,
            output="hidden_states[-2][b][attention_mask[b]] -> [n_real_tokens, hidden_size]",
        ))
        info["text_encoder_batch_prompt_indices"] = batch

    if "transformer" in only:
        log(f"{name}: transformer")
        tens, cases = transformer_refs(pipe.transformer, run_dtype, spec,
                                       fp32_pipe.transformer if fp32_pipe else None, seed=spec["seed"] + 100)
        save_tensors(os.path.join(ref_dir, "transformer.safetensors"), tens)
        write_json(os.path.join(ref_dir, "transformer_cases.json"), cases)

    if "vae" in only:
        log(f"{name}: vae")
        tens = vae_refs(pipe, run_dtype, fp32_pipe.vae if fp32_pipe else None, seed=spec["seed"] + 200)
        save_tensors(os.path.join(ref_dir, "vae.safetensors"), tens)
        if run_dtype == torch.float32:
            save_tensors(os.path.join(ref_dir, "vae_tiled.safetensors"), vae_tiled_refs(model_dir))

    if "pipeline" in only:
        records = []
        for case in pipeline_cases_for(name):
            log(f"{name}: pipeline {case['name']}")
            tens, rec = run_pipeline_case(pipe, case)
            rec["dtype"] = spec["run_dtype"]
            rec["file"] = f"pipeline_{case['name']}.safetensors"
            save_tensors(os.path.join(ref_dir, rec["file"]), tens)
            records.append(rec)
        write_json(os.path.join(ref_dir, "pipeline_cases.json"), records)
    return info


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

ALL_PARTS = ["tokenizer", "scheduler", "randn", "models", "text_encoder", "transformer", "vae", "pipeline", "edit", "controlnet"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "fixtures"))
    ap.add_argument("--tokenizer-src", default=os.environ.get("ZIMAGE_QWEN3_TOKENIZER", DEFAULT_TOKENIZER_SRC),
                    help="folder with the real Qwen3 tokenizer.json + tokenizer_config.json "
                         "(default: keep tests/fixtures/qwen3_tokenizer if present)")
    ap.add_argument("--only", default=",".join(ALL_PARTS), help="comma list of: " + ",".join(ALL_PARTS))
    ap.add_argument("--models", default=",".join(MODELS), help="comma list of models")
    args = ap.parse_args()
    only = set(args.only.split(","))
    out_dir = os.path.abspath(args.out)
    ref_dir = os.path.join(out_dir, "ref")
    os.makedirs(ref_dir, exist_ok=True)
    t0 = time.time()

    tok_dir = os.path.join(out_dir, "qwen3_tokenizer")
    os.makedirs(tok_dir, exist_ok=True)
    for fname in ["tokenizer.json", "tokenizer_config.json"]:
        src = os.path.join(args.tokenizer_src, fname)
        dst = os.path.join(tok_dir, fname)
        if os.path.exists(src):
            if not os.path.exists(dst) or sha256_file(src) != sha256_file(dst):
                shutil.copyfile(src, dst)
        elif not os.path.exists(dst):
            sys.exit(f"missing {src} and {dst}")
    tok = AutoTokenizer.from_pretrained(tok_dir)

    manifest_path = os.path.join(out_dir, "MANIFEST.json")
    manifest = json.load(open(manifest_path)) if os.path.exists(manifest_path) else {}

    if "tokenizer" in only:
        log("tokenizer prompts / corpus")
        write_json(os.path.join(ref_dir, "tokenizer_prompts.json"), make_tokenizer_prompts(tok))
        corpus = make_tokenizer_corpus(tok)
        write_json(os.path.join(ref_dir, "tokenizer_corpus.json"), corpus)
        log(f"  corpus: {len(corpus)} strings")
    if "scheduler" in only:
        log("scheduler")
        write_json(os.path.join(ref_dir, "scheduler.json"), make_scheduler_ref())
    if "randn" in only:
        log("randn")
        make_randn(ref_dir)

    if "edit" in only:  # img2img / inpaint (tools/reference/edit_fixtures.py)
        from edit_fixtures import make_edit
        for name in args.models.split(","):
            make_edit(name, os.path.join(out_dir, "models", name), os.path.join(ref_dir, name), out_dir,
                      DTYPES[MODELS[name]["run_dtype"]], log, save_tensors, write_json)
        if only == {"edit"}:  # `--only edit` adds its files and leaves every other file (MANIFEST.json too) alone
            log(f"done in {time.time() - t0:.1f}s")
            return

    if "controlnet" in only:  # ControlNet / ControlNet inpaint (tools/reference/controlnet_fixtures.py)
        from controlnet_fixtures import make_controlnet
        for name in args.models.split(","):
            make_controlnet(name, os.path.join(out_dir, "models", name), os.path.join(ref_dir, name), out_dir,
                            DTYPES[MODELS[name]["run_dtype"]], log, save_tensors, write_json, reinit_)
        if only == {"controlnet"}:  # `--only controlnet` adds its files and leaves every other file alone
            log(f"done in {time.time() - t0:.1f}s")
            return

    model_info = manifest.get("models", {})
    for name in args.models.split(","):
        spec = MODELS[name]
        if only & {"models", "text_encoder", "transformer", "vae", "pipeline"}:
            info = make_model(name, spec, tok, out_dir, only)
            prev = model_info.get(name, {})
            prev_info = prev.get("info", {})
            prev_info.update(info)
            model_info[name] = dict(
                spec={k: v for k, v in spec.items()},
                info=prev_info,
                transformer_cases=[c["name"] for c in TRANSFORMER_CASES],
                pipeline_cases=[c["name"] for c in pipeline_cases_for(name)],
            )

    # File list.
    files = []
    for root, dirs, fnames in os.walk(out_dir):
        dirs.sort()
        for fname in sorted(fnames):
            p = os.path.join(root, fname)
            rel = os.path.relpath(p, out_dir)
            if rel == "MANIFEST.json":
                continue
            if os.path.islink(p):
                files.append(dict(path=rel, symlink=os.readlink(p)))
            else:
                files.append(dict(path=rel, bytes=os.path.getsize(p), sha256=sha256_file(p)))

    manifest.update(
        generator="tools/reference/make_fixtures.py",
        versions=dict(
            python=platform.python_version(),
            torch=torch.__version__,
            diffusers=diffusers.__version__,
            transformers=transformers.__version__,
            safetensors=safetensors.__version__,
            tokenizers=tokenizers.__version__,
            numpy=np.__version__,
        ),
        torch_threads=torch.get_num_threads(),
        cpu=cpu_info(),
        tokenizer=dict(
            path="qwen3_tokenizer/tokenizer.json",
            sha256=sha256_file(os.path.join(tok_dir, "tokenizer.json")),
            tokenizer_config_sha256=sha256_file(os.path.join(tok_dir, "tokenizer_config.json")),
            class_name=type(tok).__name__,
        ),
        seeds=dict(
            models={k: v["seed"] for k, v in MODELS.items()},
            reinit="per component: text_encoder seed+1, transformer seed+11, vae seed+21",
            transformer_inputs="model seed + 100",
            vae_inputs="model seed + 200",
            vae_tiled=VAE_TILED_SEED,
            randn=RANDN_SEEDS,
            tokenizer_corpus=20261128,
            scheduler_step=77,
        ),
        scheduler_config=SCHEDULER_CONFIG,
        models=model_info,
        dtype_notes=dict(
            tiny_bf16="all weights stored bf16; references computed with from_pretrained(torch_dtype=bfloat16); "
            "*_fp32 tensors come from from_pretrained(torch_dtype=float32) of the same bf16 weights",
            tiny_fp32="transformer+vae stored float32, text_encoder stored bfloat16; every reference computed with "
            "from_pretrained(torch_dtype=float32) (bf16 text-encoder weights upcast, fp32 compute)",
            all_ref_tensors="saved as float32",
        ),
        files=files,
    )
    write_json(manifest_path, manifest)
    log(f"done in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()

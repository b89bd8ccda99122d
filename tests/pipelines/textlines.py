"""Renders text lines upright and turned by 180 degrees, and labels each as
rapidocr-onnxruntime's TextClassifier does (its own cv2 pre-processing on
the same encoded bytes hone receives).

usage: textlines.py RAPIDOCR_WHEEL OUT_DIR
Writes OUT_DIR/NN.png|jpg and OUT_DIR/expected.json: [{file, label, score}].
"""
import json
import sys
import types
import zipfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

wheel, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
root = out / "rapidocr"
with zipfile.ZipFile(wheel) as z:
    z.extractall(root)

# The package's __init__ pulls in detection and recognition (pyclipper,
# shapely); the classifier needs none of it, so its modules load under a
# bare parent package.
pkg = types.ModuleType("rapidocr_onnxruntime")
pkg.__path__ = [str(root / "rapidocr_onnxruntime")]
sys.modules["rapidocr_onnxruntime"] = pkg
from rapidocr_onnxruntime.ch_ppocr_cls.text_cls import TextClassifier  # noqa: E402
from rapidocr_onnxruntime.utils import read_yaml  # noqa: E402

config = read_yaml(str(root / "rapidocr_onnxruntime/config.yaml"))["Cls"]
config["model_path"] = str(root / "rapidocr_onnxruntime" / config["model_path"])
config.setdefault("intra_op_num_threads", -1)
config.setdefault("inter_op_num_threads", -1)
classify = TextClassifier(config)

lines = [
    "The quick brown fox jumps over the lazy dog",
    "Invoice 2026-12-08  Total: 1,284.50 EUR",
    "hone serves models from one binary",
    "Meeting moved to Thursday at 10:30",
    "Keep out of reach of children",
    "PLATFORM 9  DEPARTURES",
    "Sentence embeddings and text lines",
    "Fragile - this side up",
]
font = ImageFont.load_default(size=30)
expected = []
n = 0
for i, text in enumerate(lines):
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("RGB", (right - left + 24, bottom - top + 16), "white")
    ImageDraw.Draw(img).text((12 - left, 8 - top), text, fill="black", font=font)
    for turned in (False, True):
        pic = img.rotate(180) if turned else img
        ext = "png" if n % 2 == 0 else "jpg"
        name = f"{n:02d}.{ext}"
        pic.save(out / name, quality=92)
        data = np.frombuffer((out / name).read_bytes(), np.uint8)
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
        _, result, _ = classify([bgr])
        label, score = result[0]
        expected.append({"file": name, "turned": turned, "label": label, "score": float(score)})
        n += 1
(out / "expected.json").write_text(json.dumps(expected, indent=1))
print(json.dumps(expected))

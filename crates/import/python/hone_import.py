"""hone import's converter: loads a model in its own framework, converts it
to ONNX with the field's converter, runs both on the same rows and writes a
JSON report. hone (Rust) judges the report, writes the card and moves the
ONNX file into place; nothing here decides what is accepted.

Exit codes: 0 report written; 2 the model or its sample was refused (the
reason is the last stderr line, prefixed "refused: "); anything else is a
crash whose traceback hone shows.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from hone_common import Refused, batch_outputs, log, sha256
from hone_formats import LOADERS


# ---------------------------------------------------------------- parity


def compare(name, want, got, rtol, atol):
    want = np.asarray(want)
    got = np.asarray(got)
    entry = {"name": name, "dtype": str(got.dtype), "shape": list(got.shape)}
    if want.dtype.kind in "OUSb" or got.dtype.kind in "OUSb" or (want.dtype.kind in "iu" and got.dtype.kind in "iu"):
        a = want.reshape(-1).astype(str)
        b = got.reshape(-1).astype(str)
        if a.shape != b.shape:
            entry.update(kind="labels", agreement=0.0, within=False, note=f"{a.shape[0]} source values, {b.shape[0]} ONNX")
            return entry
        # Integer labels against class names ("1" vs 1) compare as text.
        agree = float(np.mean(a == b)) if len(a) else 1.0
        entry.update(kind="labels", agreement=agree, within=agree == 1.0, mismatched=int(np.sum(a != b)))
        return entry
    a = want.astype(np.float64).reshape(len(want), -1) if want.ndim else want.reshape(1, 1)
    b = got.astype(np.float64).reshape(len(got), -1) if got.ndim else got.reshape(1, 1)
    if a.size != b.size:
        entry.update(kind="values", within=False, note=f"source shape {list(want.shape)}, ONNX shape {list(got.shape)}")
        return entry
    b = b.reshape(a.shape)
    diff = np.abs(a - b)
    worst = int(np.argmax(diff)) if diff.size else 0
    both_nan = np.isnan(a) & np.isnan(b)
    ok = bool(np.all((diff <= atol + rtol * np.abs(a)) | both_nan))
    rel = diff / np.maximum(np.abs(a), 1e-12)
    entry.update(
        kind="values",
        max_abs=float(np.nanmax(diff)) if diff.size else 0.0,
        max_rel=float(np.nanmax(np.where(both_nan, 0, rel))) if diff.size else 0.0,
        rows_outside=int(np.sum(~np.all((diff <= atol + rtol * np.abs(a)) | both_nan, axis=1))),
        worst_row=int(worst // max(a.shape[1], 1)),
        within=ok,
    )
    return entry


def reference(imp):
    """Per-feature histograms of the sample (decile edges), the shape drift
    monitoring reads; only for one 2-D numeric input."""
    if len(imp.feeds) != 1:
        return None
    x = next(iter(imp.feeds.values()))
    if x.ndim != 2 or x.dtype.kind != "f" or len(x) < 20:
        return None
    out = []
    for j in range(x.shape[1]):
        col = x[:, j].astype(np.float64)
        col = col[np.isfinite(col)]
        if not len(col):
            return None
        edges = np.unique(np.quantile(col, np.linspace(0, 1, 11)))
        if len(edges) < 2:
            edges = np.array([col[0], col[0]])
        counts, _ = np.histogram(col, bins=edges)
        name = imp.features[j] if j < len(imp.features) else f"x{j}"
        out.append({"name": name, "histogram": {"edges": edges.tolist(), "counts": counts.tolist()}})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--format", required=True, choices=sorted(LOADERS))
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--sample")
    ap.add_argument("--target", action="append", default=[])
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--atol", type=float, default=1e-5)
    ap.add_argument("--trust-pickle", action="store_true")
    ap.add_argument("--keep-converter-thresholds", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    try:
        imp = LOADERS[args.format](args, rng)
    except Refused as e:
        log(f"refused: {e}")
        return 2
    t_convert = time.time() - t0
    import onnx
    import onnxruntime as ort

    batch_outputs(imp.onnx)
    onnx.save(imp.onnx, args.out)
    sess = ort.InferenceSession(args.out, providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, imp.feeds)))
    parity = []
    for name, source in imp.expected.items():
        if name not in got:
            parity.append({"name": name, "kind": "missing", "within": False, "note": "the ONNX model has no such output"})
            continue
        parity.append(compare(name, source(), got[name], args.rtol, args.atol))
    report = {
        "source": {
            "file": os.path.abspath(args.model),
            "sha256": sha256(args.model),
            "format": args.format,
            "framework": imp.framework[0],
            "framework_version": imp.framework[1],
        },
        "converter": {"name": imp.converter[0], "version": imp.converter[1], "onnx": onnx.__version__, "onnxruntime": ort.__version__},
        "task": imp.task,
        "labels": imp.labels,
        "features": imp.features,
        "inputs": [
            {"name": i.name, "dtype": i.type, "shape": [d if isinstance(d, int) else None for d in i.shape]}
            for i in sess.get_inputs()
        ],
        "outputs": [
            {"name": o.name, "dtype": o.type, "shape": [d if isinstance(d, int) else None for d in o.shape]}
            for o in sess.get_outputs()
        ],
        "parity": {"rows": imp.rows, "from": "sample" if args.sample else "synthesized", "rtol": args.rtol, "atol": args.atol, "outputs": parity},
        "reference": reference(imp) if args.sample else None,
        "notes": imp.notes,
        "seconds": {"convert": round(t_convert, 3), "total": round(time.time() - t0, 3)},
    }
    with open(args.report, "w") as fh:
        json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

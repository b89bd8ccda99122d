#!/usr/bin/env python3
"""Side by side on every zoo model, in one harness: fp32, hone optimize's
choice, and onnxruntime.quantization (quant_pre_process, then quantize_static
QDQ per-channel U8S8 MinMax and quantize_dynamic QInt8), each judged by
cosine to the fp32 outputs on the same eval rows and timed at batch 1 in
alternating rounds in this one process.

    compare.py ZOO WORK [THREADS]
"""
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

ZOO, WORK = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
THREADS = int(sys.argv[3]) if len(sys.argv) > 3 else 0
ROUNDS, PER_ROUND = 5, 0.6


def session(path):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if THREADS:
        so.intra_op_num_threads = THREADS
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def load_inputs(d, sess):
    return {i.name: np.load(os.path.join(d, f"{i.name}.npy")) for i in sess.get_inputs()}


def rows_of(inputs, sess):
    """Feeds of one row each; inputs held whole (fixed state) go to every row."""
    first = sess.get_inputs()[0].name
    n = inputs[first].shape[0]
    fixed = {i.name for i in sess.get_inputs()
             if all(isinstance(d, int) and d > 0 for d in i.shape) and list(inputs[i.name].shape) == list(i.shape)
             and inputs[i.name].shape[0] != n}
    return [{k: (v if k in fixed else v[r:r + 1]) for k, v in inputs.items()} for r in range(n)]


def outputs(sess, feeds, out):
    return [sess.run([out], f)[0].astype(np.float64).ravel() for f in feeds]


def cosine(ref, got):
    cs = []
    for a, b in zip(ref, got):
        if a.shape != b.shape:
            return float("nan")
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        cs.append(1.0 if na == 0 and nb == 0 else float(a @ b / max(na * nb, 1e-30)))
    return float(np.mean(cs))


def timed(sessions, feed):
    """Batch-1 p50 per session, alternating rounds."""
    times = {k: [] for k in sessions}
    for s in sessions.values():
        for _ in range(3):
            s.run(None, feed)
    for _ in range(ROUNDS):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < PER_ROUND:
                t = time.perf_counter()
                s.run(None, feed)
                times[k].append((time.perf_counter() - t) * 1e3)
    return {k: float(np.median(v)) for k, v in times.items()}


class Reader(CalibrationDataReader):
    def __init__(self, feeds):
        self.it = iter(feeds)

    def get_next(self):
        return next(self.it, None)


def why(e):
    first = (str(e).splitlines() or [""])[0]
    return f"failed: {type(e).__name__}: {first[:120]}"


def ort_quantize(model, cal_feeds, work, name):
    """onnxruntime.quantization as its docs advise: pre-process, then static
    QDQ and dynamic. Returns {label: path or 'failed: why'}."""
    out = {}
    pre = os.path.join(work, f"{name}.ort-pre.onnx")
    src = model
    try:
        quant_pre_process(model, pre, skip_symbolic_shape=False)
        src = pre
        out["pre_process"] = "ok"
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        out["pre_process"] = why(e)
    for label, fn in (
        ("ort static", lambda p: quantize_static(src, p, Reader(cal_feeds), quant_format=QuantFormat.QDQ,
                                                  per_channel=True, activation_type=QuantType.QUInt8,
                                                  weight_type=QuantType.QInt8)),
        ("ort dynamic", lambda p: quantize_dynamic(src, p, weight_type=QuantType.QInt8)),
    ):
        p = os.path.join(work, f"{name}.{label.replace(' ', '-')}.onnx")
        try:
            fn(p)
            session(p)
            out[label] = p
        except Exception as e:  # noqa: BLE001
            out[label] = why(e)
    return out


def main():
    # onnxruntime's pre-processing leaves temporary files (external data,
    # sym_shape_infer_temp.onnx) in the working directory.
    os.chdir(WORK)
    rows = []
    print(f"onnxruntime {ort.__version__}, threads={THREADS or 'ORT default'}")
    for name in sorted(os.listdir(ZOO)):
        meta_p = os.path.join(ZOO, name, "meta.json")
        rep_p = os.path.join(WORK, f"{name}.report.json")
        if not (os.path.exists(meta_p) and os.path.exists(rep_p)):
            continue
        meta = json.load(open(meta_p))
        rep = json.load(open(rep_p))
        model = os.path.join(ZOO, name, "model.onnx")
        base = session(model)
        out = rep["output_judged"]
        ev = rows_of(load_inputs(meta["eval"], base), base)
        cal = rows_of(load_inputs(meta["calib"], base), base)
        ref = outputs(base, ev, out)
        models = {"fp32": model}
        chosen = rep["chosen"]
        if chosen:
            models["hone"] = os.path.join(WORK, f"{name}.onnx")
        q = ort_quantize(model, cal, WORK, name)
        models.update({k: v for k, v in q.items() if k.startswith("ort") and not v.startswith("failed")})
        sess = {k: session(p) for k, p in models.items()}
        p50 = timed(sess, ev[0])
        res = {"model": name, "family": meta["family"], "chosen": chosen or "none (fp32)",
               "pre_process": q["pre_process"]}
        for k, p in models.items():
            c = cosine(ref, outputs(sess[k], ev, out)) if k != "fp32" else 1.0
            res[k] = {"p50_ms": p50[k], "speedup": p50["fp32"] / p50[k], "cosine": c,
                      "size_kb": os.path.getsize(os.path.realpath(p)) / 1024}
        for k in ("ort static", "ort dynamic"):
            if k not in res:
                res[k] = q[k]
        rows.append(res)
        print(json.dumps(res))
    json.dump(rows, open(os.path.join(WORK, "compare.json"), "w"), indent=1)

    def cell(r, k):
        v = r.get(k)
        if v is None:
            return "-"
        if isinstance(v, str):
            return v.replace("|", "/")
        return f"{v['speedup']:.2f}× · cos {v['cosine']:.4f} · {v['size_kb']:.0f} KB"
    print("\n| model | family | fp32 p50 ms | hone choice | hone | ort static (QDQ) | ort dynamic |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['family']} | {r['fp32']['p50_ms']:.3f} | {r['chosen']} | {cell(r, 'hone')} "
              f"| {cell(r, 'ort static')} | {cell(r, 'ort dynamic')} |")


if __name__ == "__main__":
    main()

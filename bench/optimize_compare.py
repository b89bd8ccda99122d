"""Side by side: hone optimize's chosen model vs onnxruntime.quantization.

For each case, builds onnxruntime's own quantized model (quantize_dynamic or
quantize_static QDQ with the same calibration rows hone used), then judges
fp32, hone's choice and onnxruntime's in this one Python harness: the same
metric code, the same session options and the same batch-1 timing loop, run
interleaved, so the rows are comparable. Prints one table per case.
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat,
                                      QuantType, quantize_dynamic,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

THREADS = int(sys.argv[2]) if len(sys.argv) > 2 else 0


def session(path):
    so = ort.SessionOptions()
    if THREADS:
        so.intra_op_num_threads = THREADS
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def latencies(paths, feed, seconds=3.0):
    """Batch-1 p50/p99 of several models, measured in interleaved turns of
    ~0.5 s each, so machine drift during the run lands on all rows alike
    instead of on whichever ran last. Turns are that long because ORT's
    spinning workers of the session just left keep a core busy for a while:
    with 20 ms turns, resnet18 fp32 measured 41 ms instead of 21 ms."""
    sessions = [session(p) for p in paths]
    times = [[] for _ in paths]
    start = time.perf_counter()
    while len(times[-1]) < 20 or time.perf_counter() - start < seconds * len(paths):
        for s, t in zip(sessions, times):
            turn = time.perf_counter()
            for _ in range(3):
                s.run(None, feed)
            while len(t) < 2000 and time.perf_counter() - turn < 0.5:
                a = time.perf_counter()
                s.run(None, feed)
                t.append(time.perf_counter() - a)
    out = []
    for t in times:
        t.sort()
        out.append((t[len(t) // 2] * 1e3, t[min(len(t) - 1, int(len(t) * 0.99))] * 1e3))
    return out


def cosine(a, b):
    return float(np.mean((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


class Reader(CalibrationDataReader):
    def __init__(self, name, rows, batch=1):
        self.it = iter([{name: rows[i:i + batch]} for i in range(0, len(rows), batch)])

    def get_next(self):
        return next(self.it, None)


def csv(path):
    a = np.genfromtxt(path, delimiter=",", skip_header=1, dtype=np.float64)
    return a[:, :-1].astype(np.float32), a[:, -1].astype(np.int64)


def table(title, rows, metric):
    print(f"\n## {title}\n")
    print(f"| model | {metric} | p50 ms | p99 ms | size KB | p50 vs fp32 |")
    print("|---|---|---|---|---|---|")
    base = rows[0][2]
    for name, m, p50, p99, size in rows:
        print(f"| {name} | {m:.4f} | {p50:.3f} | {p99:.3f} | {size / 1024:.1f} | {base / p50:.2f}x |")


def main():
    work, models = sys.argv[1], sys.argv[3]
    cases = json.load(open(f"{work}/cases.json"))
    import os

    for c in cases:
        name, fp32, hone = c["name"], c["model"], c["hone"]
        out = f"{work}/{name}.ort.onnx"
        if c["kind"] == "minilm":
            d = f"{models}/minilm/"
            feed_all = {k: np.load(d + k + ".npy") for k in ["input_ids", "attention_mask", "token_type_ids"]}
            feed1 = {k: np.load(f"{d}ref/minilm/input_{k}.npy")[:1] for k in feed_all}
            quantize_dynamic(fp32, out, weight_type=QuantType.QInt8, per_channel=c.get("per_channel", False))
            ref = session(fp32).run(["sentence_embedding"], feed_all)[0]
            judge = lambda p: cosine(session(p).run(["sentence_embedding"], feed_all)[0], ref)
            metric = "mean cosine to fp32"
        elif c["kind"] == "resnet":
            x = np.load(c["data"] + "/input.npy")
            pre = f"{work}/{name}.pre.onnx"
            quant_pre_process(fp32, pre, skip_symbolic_shape=True)
            quantize_static(pre, out, Reader("input", x), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            feed1 = {"input": x[:1]}
            ref = session(fp32).run(None, {"input": x})[0]
            judge = lambda p: cosine(session(p).run(None, {"input": x})[0], ref)
            metric = "mean cosine to fp32"
        else:
            x, y = csv(c["data"])
            in_name = session(fp32).get_inputs()[0].name
            shape = session(fp32).get_inputs()[0].shape
            if len(shape) == 4:
                x = x.reshape(-1, 1, 8, 8)
            if c["kind"] == "digits":
                cal, _ = csv(c["calibration"])
                cal = cal[:128].reshape(-1, 1, 8, 8)
                pre = f"{work}/{name}.pre.onnx"
                quant_pre_process(fp32, pre, skip_symbolic_shape=True)
                quantize_static(pre, out, Reader(in_name, cal, 32), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            else:
                quantize_dynamic(fp32, out, weight_type=QuantType.QInt8)

            def judge(p):
                o = session(p).run(None, {in_name: x})[0]
                pred = (o[:, 0] >= 0.5).astype(np.int64) if o.shape[1] == 1 else o.argmax(1)
                return float((pred == y).mean())

            feed1 = {in_name: x[:1]}
            metric = "test accuracy"
        trio = [("fp32", fp32), (f"hone: {c['chosen']}", hone), (c["ort_label"], out)]
        timed = latencies([p for _, p in trio], feed1)
        rows = [(label, judge(p), p50, p99, os.path.getsize(p)) for (label, p), (p50, p99) in zip(trio, timed)]
        table(c["title"], rows, metric)


main()

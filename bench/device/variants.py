# bench/device: resnet18 int8 (hone's QDQ) on this CPU, 1 thread: per-op-type profile, and
# variants with the first conv and/or the final Gemm left in fp32.
import sys, time, json, collections, numpy as np, onnx, onnxruntime as ort
from onnx import numpy_helper, helper
fp32_path, q_path, work = sys.argv[1], sys.argv[2], sys.argv[3]
q = onnx.load(q_path)
inits = {t.name: t for t in q.graph.initializer}
prod = {o: n for n in q.graph.node for o in n.output}

def unquant(model, op_index):
    """Feeds node number op_index (among Conv/Gemm) float inputs again."""
    m = onnx.ModelProto(); m.CopyFrom(model)
    g = m.graph; init = {t.name: t for t in g.initializer}; prod = {o: n for n in g.node for o in n.output}
    targets = [n for n in g.node if n.op_type in ("Conv", "Gemm")]
    node = targets[op_index]
    for i, name in enumerate(list(node.input)):
        dq = prod.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        src = dq.input[0]
        if src in init:  # quantized weight or bias: dequantize it here
            w = numpy_helper.to_array(init[src]).astype(np.float32)
            s = numpy_helper.to_array(init[dq.input[1]]).astype(np.float32)
            z = numpy_helper.to_array(init[dq.input[2]]).astype(np.float32) if len(dq.input) > 2 and dq.input[2] else np.zeros_like(s)
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
            if s.ndim == 1 and s.size > 1:
                shape = [1] * w.ndim; shape[axis] = -1
                s = s.reshape(shape); z = z.reshape(shape)
            f = (w - z) * s
            new = node.name + f"_float_in{i}"
            g.initializer.append(numpy_helper.from_array(f.astype(np.float32), new))
            node.input[i] = new
        else:  # activation: DQ(Q(x)) -> x
            qn = prod.get(src)
            if qn is not None and qn.op_type == "QuantizeLinear":
                node.input[i] = qn.input[0]
    return m

def p50(path, feed, secs=3.0):
    so = ort.SessionOptions(); so.intra_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    for _ in range(5): s.run(None, feed)
    t = []; start = time.perf_counter()
    while time.perf_counter() - start < secs or len(t) < 20:
        a = time.perf_counter(); s.run(None, feed); t.append(time.perf_counter() - a)
    t.sort(); return t[len(t) // 2] * 1e3

def profile(path, feed, label):
    so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.enable_profiling = True
    so.profile_file_prefix = f"{work}/prof_{label}"
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    for _ in range(20): s.run(None, feed)
    f = s.end_profiling()
    ev = json.load(open(f))
    by = collections.Counter(); names = collections.Counter()
    for e in ev:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            by[op] += e["dur"]; names[e["name"][:-12]] += e["dur"]
    tot = sum(by.values())
    print(f"-- {label}: per op type, share of kernel time ({tot/20/1e3:.2f} ms per run)")
    for op, d in by.most_common(8): print(f"   {op:<22} {100*d/tot:5.1f} %  {d/20/1e3:.3f} ms")
    print("   top nodes:", ", ".join(f"{n} {d/20/1e3:.2f}ms" for n, d in names.most_common(5)))

x = np.load(sys.argv[4])[:1]
feed = {"input": x}
ref = None
variants = {"fp32": fp32_path, "hone int8": q_path}
m1 = unquant(q, 0); onnx.save(m1, f"{work}/v_first.onnx"); variants["int8, first conv fp32"] = f"{work}/v_first.onnx"
m2 = unquant(q, -1); onnx.save(m2, f"{work}/v_fc.onnx"); variants["int8, final Gemm fp32"] = f"{work}/v_fc.onnx"
m3 = unquant(m1, -1); onnx.save(m3, f"{work}/v_both.onnx"); variants["int8, both fp32"] = f"{work}/v_both.onnx"
base = None
xs = np.load(sys.argv[4])
r0 = ort.InferenceSession(fp32_path, providers=["CPUExecutionProvider"]).run(None, {"input": xs})[0]
for label, p in variants.items():
    o = ort.InferenceSession(p, providers=["CPUExecutionProvider"]).run(None, {"input": xs})[0]
    cos = float(np.mean((o * r0).sum(1) / np.linalg.norm(o, axis=1) / np.linalg.norm(r0, axis=1)))
    ms = min(p50(p, feed), p50(p, feed))
    base = base or ms
    print(f"{label:<24} p50 {ms:7.3f} ms  {base/ms:5.2f}x  cosine {cos:.4f}")
profile(fp32_path, feed, "fp32")
profile(q_path, feed, "int8")

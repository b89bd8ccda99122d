"""Conformance of `hone serve` against real clients and Python onnxruntime.

Builds its own models with the `onnx` package, adds the real models from
shared/models, starts the hone binary on free loopback ports, then drives it
with tritonclient over HTTP JSON, HTTP binary and gRPC and checks every output
against onnxruntime run in this process on the same inputs.

usage: conformance.py HONE_BIN SHARED_MODELS_DIR WORK_DIR
"""
import json
import os
import shutil
import sys
import urllib.request

import numpy as np
import onnx
import onnxruntime as ort
import tritonclient.grpc as tg
import tritonclient.http as th

from hone_process import HoneServer, summary
from hone_process import check as run_check
from onnx import TensorProto, helper

HONE, SHARED, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
RESULTS = []

DTYPES = {
    "BOOL": (TensorProto.BOOL, np.bool_),
    "UINT8": (TensorProto.UINT8, np.uint8),
    "UINT16": (TensorProto.UINT16, np.uint16),
    "UINT32": (TensorProto.UINT32, np.uint32),
    "UINT64": (TensorProto.UINT64, np.uint64),
    "INT8": (TensorProto.INT8, np.int8),
    "INT16": (TensorProto.INT16, np.int16),
    "INT32": (TensorProto.INT32, np.int32),
    "INT64": (TensorProto.INT64, np.int64),
    "FP16": (TensorProto.FLOAT16, np.float16),
    "FP32": (TensorProto.FLOAT, np.float32),
    "FP64": (TensorProto.DOUBLE, np.float64),
    "BYTES": (TensorProto.STRING, np.object_),
}


def check(name, fn):
    run_check(RESULTS, name, fn)


def save(model, repo, name, config=None):
    d = os.path.join(repo, name, "1")
    os.makedirs(d, exist_ok=True)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, os.path.join(d, "model.onnx"))
    if config:
        with open(os.path.join(repo, name, "config.pbtxt"), "w") as f:
            f.write(config)


def build_models(repo):
    # Every V2 datatype through Identity, batch dim dynamic.
    inputs, outputs, nodes = [], [], []
    for t, (pt, _) in DTYPES.items():
        inputs.append(helper.make_tensor_value_info(f"in_{t}", pt, ["batch", 3]))
        outputs.append(helper.make_tensor_value_info(f"out_{t}", pt, ["batch", 3]))
        nodes.append(helper.make_node("Identity", [f"in_{t}"], [f"out_{t}"]))
    g = helper.make_graph(nodes, "all_types", inputs, outputs)
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), repo, "all_types")
    # A dynamic non-batch dim, with a batching delay so mixed shapes meet in the queue.
    g = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "n"])],
        [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])],
    )
    save(
        helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
        repo,
        "double",
        "max_batch_size: 16\ndynamic_batching { max_queue_delay_microseconds: 20000 }\n",
    )


def link_shared(repo):
    manifest = json.load(open(os.path.join(SHARED, "manifest.json")))
    names = ["mlp", "mlp100", "mlp_wine", "digits_cnn", "rf", "gb", "minilm", "resnet18"]
    for n in names:
        d = os.path.join(repo, n, "1")
        os.makedirs(d, exist_ok=True)
        os.symlink(os.path.abspath(os.path.join(SHARED, manifest["models"][n]["path"])), os.path.join(d, "model.onnx"))
    # The digits CNN again, its logits named by a labels file: Triton's
    # classification extension.
    d = os.path.join(repo, "digits_labelled")
    os.makedirs(os.path.join(d, "1"))
    os.symlink(os.path.abspath(os.path.join(SHARED, manifest["models"]["digits_cnn"]["path"])), os.path.join(d, "1", "model.onnx"))
    with open(os.path.join(d, "labels.txt"), "w") as f:
        f.write("\n".join(DIGITS) + "\n")
    with open(os.path.join(d, "config.pbtxt"), "w") as f:
        f.write('max_batch_size: 8\noutput [ { name: "logits" data_type: TYPE_FP32 dims: [ 10 ] label_filename: "labels.txt" } ]\n')
    return manifest


DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def close(a, b, what):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} != {b.dtype}"
    if a.dtype.kind == "f":
        tol = 1e-5 * max(1.0, float(np.max(np.abs(b))) if b.size else 1.0)
        err = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
        assert err <= tol, f"{what}: max |diff| {err} > {tol}"
    else:
        assert np.array_equal(a, b), f"{what}: values differ"


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    repo = os.path.join(WORK, "repo")
    os.makedirs(repo)
    build_models(repo)
    manifest = link_shared(repo)
    # Ready, not just live: the ports answer while the repository loads.
    server = HoneServer(HONE, repo, WORK, wait_path="/v2/health/ready")
    try:
        run_checks(server.base, server.http_port, server.grpc_port, server.metrics_port, repo, manifest)
    finally:
        code = server.stop()
        RESULTS.append(("SIGTERM exits 0", None if code == 0 else AssertionError(f"exit {code}")))
    return summary(RESULTS, server)


def run_checks(base, http_port, grpc_port, metrics_port, repo, manifest):
    hc = th.InferenceServerClient(f"127.0.0.1:{http_port}")
    gc = tg.InferenceServerClient(f"127.0.0.1:{grpc_port}")

    def health():
        for c in (hc, gc):
            assert c.is_server_live() and c.is_server_ready()
        # The kserve SDK parses these bodies.
        for path, key in (("/v2/health/live", "live"), ("/v2/health/ready", "ready")):
            body = json.load(urllib.request.urlopen(base + path))
            assert body == {key: True}, body
    check("server live/ready over HTTP and gRPC, JSON health bodies", health)

    models = sorted(os.listdir(repo))
    for m in models:
        def meta(m=m):
            for c in (hc, gc):
                assert c.is_model_ready(m), m
            hm = hc.get_model_metadata(m)
            gm = gc.get_model_metadata(m, as_json=True)
            assert hm["name"] == m and gm["name"] == m
            sess = ort.InferenceSession(os.path.join(repo, m, "1", "model.onnx"))
            assert [i["name"] for i in hm["inputs"]] == [i.name for i in sess.get_inputs()]
            assert [o["name"] for o in hm["outputs"]] == [o.name for o in sess.get_outputs()]
            assert [i["name"] for i in gm["inputs"]] == [i.name for i in sess.get_inputs()]
            hcfg = hc.get_model_config(m)
            gcfg = gc.get_model_config(m, as_json=True)["config"]
            assert hcfg["name"] == m and gcfg["name"] == m
            assert hcfg["max_batch_size"] == int(gcfg.get("max_batch_size", 0))
            assert [i["name"] for i in hcfg["input"]] == [i["name"] for i in gcfg["input"]]
        check(f"{m}: ready, metadata, config (HTTP and gRPC agree with the ONNX file)", meta)

    def ref_inputs(name):
        spec = manifest["models"][name]["reference"]
        d = os.path.join(SHARED, os.path.dirname(manifest["models"][name]["path"]), "ref", name)
        ins = {f[len("input_"):-4]: np.load(os.path.join(d, f)) for f in sorted(os.listdir(d)) if f.startswith("input_")}
        outs = {f[len("output_"):-4]: np.load(os.path.join(d, f)) for f in sorted(os.listdir(d)) if f.startswith("output_")}
        assert ins and outs, spec
        return ins, outs

    def infer_all(model, inputs, mode):
        """Runs one request over `mode` and returns {output: array}."""
        if mode == "grpc":
            mod, c = tg, gc
        else:
            mod, c = th, hc
        binary = mode == "http-binary"
        tins = []
        for name, arr in inputs.items():
            dt = next(k for k, (_, npdt) in DTYPES.items() if np.dtype(npdt) == arr.dtype)
            t = mod.InferInput(name, list(arr.shape), dt)
            if mod is th:
                t.set_data_from_numpy(arr, binary_data=binary)
            else:
                t.set_data_from_numpy(arr)
            tins.append(t)
        sess = ort.InferenceSession(os.path.join(repo, model, "1", "model.onnx"))
        outs = [o.name for o in sess.get_outputs()]
        if mod is th:
            req = [th.InferRequestedOutput(o, binary_data=binary) for o in outs]
        else:
            req = [tg.InferRequestedOutput(o) for o in outs]
        r = c.infer(model, tins, outputs=req)
        return {o: r.as_numpy(o) for o in outs}

    modes = ["http-json", "http-binary", "grpc"]
    for m in ["mlp", "mlp100", "mlp_wine", "digits_cnn", "rf", "gb", "minilm", "resnet18"]:
        for mode in modes:
            if m == "resnet18" and mode == "http-json":
                continue  # 1.2 MB of JSON numbers says nothing the binary path does not
            def run(m=m, mode=mode):
                ins, ref = ref_inputs(m)
                sess = ort.InferenceSession(os.path.join(repo, m, "1", "model.onnx"))
                expect = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, ins)))
                got = infer_all(m, ins, mode)
                for o, arr in expect.items():
                    close(got[o], arr, f"{m}/{o} vs onnxruntime")
                    if o in ref:
                        close(got[o], ref[o], f"{m}/{o} vs shared reference")
            check(f"{m}: {mode} outputs equal onnxruntime's and the shared reference", run)

    def classification():
        # tritonclient's class_count asks for the top k as "value:index:label".
        ins, _ = ref_inputs("digits_cnn")
        x = ins["input"]
        sess = ort.InferenceSession(os.path.join(repo, "digits_cnn", "1", "model.onnx"))
        (logits,) = sess.run(None, {"input": x})
        for mode in modes:
            mod, c = (tg, gc) if mode == "grpc" else (th, hc)
            t = mod.InferInput("input", list(x.shape), "FP32")
            if mod is th:
                t.set_data_from_numpy(x, binary_data=mode == "http-binary")
                out = th.InferRequestedOutput("logits", binary_data=mode == "http-binary", class_count=3)
            else:
                t.set_data_from_numpy(x)
                out = tg.InferRequestedOutput("logits", class_count=3)
            got = c.infer("digits_labelled", [t], outputs=[out]).as_numpy("logits")
            assert got.shape == (x.shape[0], 3), (mode, got.shape)
            for row, want in zip(got, logits):
                parts = [(e.decode() if isinstance(e, bytes) else e).split(":") for e in row]
                top = list(np.argsort(-want, kind="stable")[:3])
                assert [int(p[1]) for p in parts] == top, (mode, parts, top)
                assert [p[2] for p in parts] == [DIGITS[i] for i in top], (mode, parts)
                for p, i in zip(parts, top):
                    assert abs(float(p[0]) - want[i]) < 1e-5, (mode, p, want[i])

    check("digits: class_count=3 answers the top 3 as value:index:label over every protocol", classification)

    rng = np.random.default_rng(1)

    def typed_inputs(rows):
        ins = {}
        for t, (_, npdt) in DTYPES.items():
            if t == "BYTES":
                ins[f"in_{t}"] = np.array([[f"r{r}c{c}-é".encode() for c in range(3)] for r in range(rows)], dtype=np.object_)
            elif t == "BOOL":
                ins[f"in_{t}"] = rng.integers(0, 2, (rows, 3)).astype(np.bool_)
            elif np.dtype(npdt).kind == "f":
                ins[f"in_{t}"] = rng.standard_normal((rows, 3)).astype(npdt)
            else:
                info = np.iinfo(npdt)
                ins[f"in_{t}"] = np.array([[info.min, info.max, 7]] * rows, dtype=npdt)
        return ins

    for mode in modes:
        def types(mode=mode):
            ins = typed_inputs(2)
            got = infer_all("all_types", ins, mode)
            for t in DTYPES:
                a, b = got[f"out_{t}"], ins[f"in_{t}"]
                assert a.shape == b.shape, (t, a.shape)
                if t == "BYTES":
                    # JSON carries BYTES as strings, which tritonclient hands back as str.
                    norm = [x.encode() if isinstance(x, str) else x for x in a.ravel()]
                    assert norm == list(b.ravel()), (t, a, b)
                else:
                    assert a.dtype == b.dtype and np.array_equal(a, b), (t, a, b)
        check(f"all_types: every V2 datatype round-trips exactly over {mode}", types)

    def mixed_shapes():
        # Concurrent requests with different non-batch dims must never share a batch.
        import concurrent.futures as cf
        def one(i):
            n = 2 + i % 3
            x = np.full((1 + i % 2, n), float(i), dtype=np.float32)
            t = th.InferInput("x", list(x.shape), "FP32")
            t.set_data_from_numpy(x, binary_data=True)
            c = th.InferenceServerClient(f"127.0.0.1:{http_port}")
            return x, c.infer("double", [t]).as_numpy("y")
        with cf.ThreadPoolExecutor(12) as ex:
            for x, y in ex.map(one, range(36)):
                assert np.array_equal(y, 2 * x), (x, y)
        st = hc.get_inference_statistics("double")["model_stats"][0]
        assert int(st["execution_count"]) < int(st["inference_count"]), st
    check("double: concurrent mixed-shape requests batch without mixing shapes", mixed_shapes)

    def errors():
        x = np.zeros((1, 29), dtype=np.float32)
        t = th.InferInput("input", [1, 29], "FP32")
        t.set_data_from_numpy(x)
        try:
            hc.infer("mlp", [t])
            raise AssertionError("wrong shape accepted")
        except th.InferenceServerException as e:
            assert "expected FP32 [-1, 30], received FP32 [1, 29]" in str(e), str(e)
        g = tg.InferInput("input", [1, 29], "FP32")
        g.set_data_from_numpy(x)
        try:
            gc.infer("mlp", [g])
            raise AssertionError("wrong shape accepted over gRPC")
        except tg.InferenceServerException as e:
            assert "received FP32 [1, 29]" in str(e), str(e)
    check("shape errors reach tritonclient with the expected and received shapes", errors)

    def compression():
        # tritonclient's own compression options, both ways, JSON and binary.
        x = np.full((3, 2), 1.5, dtype=np.float32)
        for algo in ("gzip", "deflate"):
            for binary in (False, True):
                t = th.InferInput("x", [3, 2], "FP32")
                t.set_data_from_numpy(x, binary_data=binary)
                out = th.InferRequestedOutput("y", binary_data=binary)
                r = hc.infer("double", [t], outputs=[out],
                             request_compression_algorithm=algo,
                             response_compression_algorithm=algo)
                assert np.array_equal(r.as_numpy("y"), 2 * x), (algo, binary)
        g = tg.InferInput("x", [3, 2], "FP32")
        g.set_data_from_numpy(x)
        r = gc.infer("double", [g], compression_algorithm="gzip")
        assert np.array_equal(r.as_numpy("y"), 2 * x)
        # Triton answers ModelReady for an unknown model with false.
        assert not gc.is_model_ready("no_such_model")
    check("request and response compression (gzip, deflate) and gRPC gzip with tritonclient", compression)

    def stats_and_metrics():
        s = hc.get_inference_statistics("mlp100")["model_stats"][0]
        assert int(s["inference_stats"]["success"]["count"]) >= 3, s
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
        for name in ["hone_request_success_total", "hone_request_failure_total", "hone_inference_count_total",
                     "hone_execution_count_total", "hone_request_duration_seconds_bucket",
                     "hone_queue_duration_seconds_bucket", "hone_compute_duration_seconds_bucket",
                     "hone_pending_requests", "hone_model_ready"]:
            assert f'{name}{{model="mlp100",version="1"' in text, name
    check("statistics and Prometheus metrics per model", stats_and_metrics)

    def repository_control():
        # A model directory added while serving, loaded and unloaded through
        # tritonclient's repository API, over both protocols.
        dst = os.path.join(repo, "mlp_hot")
        shutil.copytree(os.path.join(repo, "mlp"), dst)
        try:
            hc.load_model("mlp_hot")
            assert hc.is_model_ready("mlp_hot") and gc.is_model_ready("mlp_hot")
            x = np.linspace(-1, 1, 60, dtype=np.float32).reshape(2, 30)
            outs = []
            for m in ("mlp", "mlp_hot"):
                t = th.InferInput("input", [2, 30], "FP32")
                t.set_data_from_numpy(x)
                outs.append(hc.infer(m, [t]).as_numpy("output"))
            assert np.array_equal(outs[0], outs[1])
            gc.unload_model("mlp_hot")
            assert not hc.is_model_ready("mlp_hot")
            index = {e["name"]: e for e in hc.get_model_repository_index()}
            assert index["mlp_hot"]["state"] == "UNAVAILABLE", index["mlp_hot"]
            gc.load_model("mlp_hot")
            assert gc.is_model_ready("mlp_hot")
            hc.unload_model("mlp_hot")
            assert hc.is_server_ready()
        finally:
            shutil.rmtree(dst, ignore_errors=True)
    check("tritonclient load_model/unload_model over HTTP and gRPC", repository_control)


if __name__ == "__main__":
    sys.exit(main())

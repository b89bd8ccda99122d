"""The KServe Python SDK (kserve.InferenceRESTClient / InferenceGRPCClient,
V2 protocol) against a running `hone serve`.

usage: kserve_sdk.py HONE_BINARY SHARED_MODELS_DIR WORK_DIR

Serves shared models, then through the SDK: server live/ready (the SDK parses
the JSON health bodies), model ready, inference as JSON, with binary tensor
data, and over gRPC; outputs are compared with the reference outputs shipped
with each model. Wrong shapes must come back as errors the SDK raises.
"""

import asyncio
import json
import os
import shutil
import sys
import urllib.request

import grpc
import httpx
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

from hone_process import HoneServer, summary, record

HONE, SHARED, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
MODELS = ["mlp", "mlp_wine", "digits_cnn"]
RESULTS = []


async def check(name, fn):
    try:
        await fn()
    except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
        record(RESULTS, name, e)
        return
    record(RESULTS, name, None)


def reference(manifest, name):
    ref = manifest["models"][name]["reference"]
    ins = {k: np.load(os.path.join(SHARED, v["file"])) for k, v in ref["inputs"].items()}
    outs = {k: np.load(os.path.join(SHARED, v["file"])) for k, v in ref["outputs"].items()}
    return ins, outs


def request(name, inputs, binary):
    tensors = []
    for k, arr in inputs.items():
        t = InferInput(k, list(arr.shape), "FP32")
        t.set_data_from_numpy(arr, binary_data=binary)
        tensors.append(t)
    return InferRequest(model_name=name, infer_inputs=tensors, request_id=f"kserve-{name}")


def compare(resp, expected, what):
    got = {o.name: o.as_numpy() for o in resp.outputs}
    for k, want in expected.items():
        assert k in got, f"{what}: output {k} missing (got {list(got)})"
        assert got[k].shape == want.shape, f"{what}/{k}: shape {got[k].shape} vs {want.shape}"
        diff = float(np.max(np.abs(got[k].astype(np.float64) - want.astype(np.float64))))
        assert diff <= 1e-5, f"{what}/{k}: max |diff| {diff} vs the reference"


async def run_checks(base, grpc_port, manifest):
    rest = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))
    gc = InferenceGRPCClient(f"127.0.0.1:{grpc_port}", retries=0, timeout=30)

    async def health():
        assert await rest.is_server_live(base) is True
        assert await rest.is_server_ready(base) is True
        assert await gc.is_server_live() and await gc.is_server_ready()
        for m in MODELS:
            assert await rest.is_model_ready(base, m) is True, m
            assert await gc.is_model_ready(m), m
    await check("SDK: server live/ready and model ready over REST and gRPC", health)

    for m in MODELS:
        ins, outs = reference(manifest, m)
        for mode in ("json", "binary"):
            async def rest_infer(m=m, mode=mode, ins=ins, outs=outs):
                r = await rest.infer(base, request(m, ins, mode == "binary"), model_name=m)
                assert r.id == f"kserve-{m}", r.id
                compare(r, outs, f"{m} REST {mode}")
            await check(f"SDK: {m} REST {mode} infer equals the reference outputs", rest_infer)

        async def grpc_infer(m=m, ins=ins, outs=outs):
            r = await gc.infer(request(m, ins, True))
            compare(r, outs, f"{m} gRPC")
        await check(f"SDK: {m} gRPC infer equals the reference outputs", grpc_infer)

    async def errors():
        bad = {"input": np.zeros((1, 29), dtype=np.float32)}
        try:
            await rest.infer(base, request("mlp", bad, False), model_name="mlp")
            raise AssertionError("wrong shape accepted over REST")
        except httpx.HTTPStatusError as e:
            assert e.response.status_code == 400, e
            assert "received FP32 [1, 29]" in str(e), str(e)
        try:
            await gc.infer(request("mlp", bad, True))
            raise AssertionError("wrong shape accepted over gRPC")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
            assert "received FP32 [1, 29]" in e.details(), e.details()
        try:
            await rest.infer(base, request("nope", bad, False), model_name="nope")
            raise AssertionError("unknown model accepted")
        except httpx.HTTPStatusError as e:
            assert e.response.status_code == 404, e
        assert await rest.is_server_live(base) is True
    await check("SDK: errors raise with the server's message; the server keeps serving", errors)

    await rest.close()
    await gc.close()


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    repo = os.path.join(WORK, "repo")
    manifest = json.load(open(os.path.join(SHARED, "manifest.json")))
    for n in MODELS:
        d = os.path.join(repo, n, "1")
        os.makedirs(d)
        os.symlink(os.path.abspath(os.path.join(SHARED, manifest["models"][n]["path"])), os.path.join(d, "model.onnx"))
    server = HoneServer(HONE, repo, WORK, metrics=False, wait_path="/v2/health/ready")
    try:
        asyncio.run(run_checks(server.base, server.grpc_port, manifest))
    finally:
        server.stop()
    return summary(RESULTS, server)


if __name__ == "__main__":
    sys.exit(main())

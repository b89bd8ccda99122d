"""tritonclient's `ssl=True` clients against `hone serve --tls-cert/--tls-key`
(and `--tls-client-ca` for mutual TLS): HTTP JSON, HTTP binary and gRPC
inference, checked against Python onnxruntime on the same model.

Usage: python tls.py HONE SHARED WORK, with ca.pem, server.pem, server.key,
client.pem and client.key already in WORK (the Rust test makes them)."""

import os
import shutil
import sys

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as tg
import tritonclient.http as th

from hone_process import HoneServer, summary
from hone_process import check as run_check

HONE, SHARED, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
RESULTS = []
CA, CERT, KEY = (os.path.join(WORK, f) for f in ("ca.pem", "server.pem", "server.key"))
CLIENT_CERT, CLIENT_KEY = os.path.join(WORK, "client.pem"), os.path.join(WORK, "client.key")


def check(name, fn):
    run_check(RESULTS, name, fn)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def http_client(port, client_cert=False):
    opts = {"ca_certs": CA}
    if client_cert:
        opts.update(certfile=CLIENT_CERT, keyfile=CLIENT_KEY)
    return th.InferenceServerClient(f"127.0.0.1:{port}", ssl=True, ssl_options=opts)


def grpc_client(port, client_cert=False):
    extra = {"private_key": CLIENT_KEY, "certificate_chain": CLIENT_CERT} if client_cert else {}
    return tg.InferenceServerClient(f"127.0.0.1:{port}", ssl=True, root_certificates=CA, **extra)


def expect_mlp(out, x, what):
    want = ort.InferenceSession(os.path.join(SHARED, "mlp/mlp.onnx")).run(None, {"input": x})[0]
    err = float(np.max(np.abs(out - want)))
    assert out.shape == want.shape and err <= 1e-5, f"{what}: max |diff| {err}"


def infer_every_way(server, client_cert=False):
    x = np.random.default_rng(0).normal(size=(4, 30)).astype(np.float32)
    hc = http_client(server.http_port, client_cert)
    assert hc.is_server_ready()
    for binary in (False, True):
        i = th.InferInput("input", list(x.shape), "FP32")
        i.set_data_from_numpy(x, binary_data=binary)
        o = th.InferRequestedOutput("output", binary_data=binary)
        r = hc.infer("mlp", [i], outputs=[o])
        expect_mlp(r.as_numpy("output"), x, f"https {'binary' if binary else 'JSON'}")
    gc = grpc_client(server.grpc_port, client_cert)
    assert gc.is_server_ready()
    g = tg.InferInput("input", list(x.shape), "FP32")
    g.set_data_from_numpy(x)
    expect_mlp(gc.infer("mlp", [g]).as_numpy("output"), x, "gRPC over TLS")


def refused(fn, what):
    try:
        fn()
    except Exception:  # noqa: BLE001 - any failure to connect is the expected outcome
        return
    raise AssertionError(f"{what} was served")


def main():
    repo = os.path.join(WORK, "repo")
    shutil.rmtree(repo, ignore_errors=True)
    os.makedirs(os.path.join(repo, "mlp", "1"))
    shutil.copy(os.path.join(SHARED, "mlp/mlp.onnx"), os.path.join(repo, "mlp", "1", "model.onnx"))

    tls = ["--tls-cert", CERT, "--tls-key", KEY]
    server = HoneServer(HONE, repo, WORK, metrics=False, wait_path="/v2/health/ready", extra=tls, ca=CA)
    try:
        check("tritonclient ssl=True: HTTP JSON, HTTP binary and gRPC inference",
              lambda: infer_every_way(server))
        check("a client that does not trust the CA is refused",
              lambda: refused(lambda: th.InferenceServerClient(
                  f"127.0.0.1:{server.http_port}", ssl=True).is_server_live(), "an untrusted https client"))
        check("plain HTTP on the TLS port is refused",
              lambda: refused(lambda: th.InferenceServerClient(
                  f"127.0.0.1:{server.http_port}").is_server_live(), "plain HTTP"))
    finally:
        code = server.stop()
        RESULTS.append(("SIGTERM exits 0 (TLS)", None if code == 0 else AssertionError(f"exit {code}")))

    mutual = HoneServer(HONE, repo, WORK, metrics=False, wait_path="/v2/health/ready",
                        extra=tls + ["--tls-client-ca", CA], ca=CA, client_cert=(CLIENT_CERT, CLIENT_KEY))
    try:
        check("mutual TLS: tritonclient with a client certificate, HTTP and gRPC",
              lambda: infer_every_way(mutual, client_cert=True))
        check("mutual TLS: without a client certificate, HTTP and gRPC are refused",
              lambda: (refused(lambda: http_client(mutual.http_port).is_server_live(), "https without a cert"),
                       refused(lambda: grpc_client(mutual.grpc_port).is_server_live(), "gRPC without a cert")))
    finally:
        code = mutual.stop()
        RESULTS.append(("SIGTERM exits 0 (mutual TLS)", None if code == 0 else AssertionError(f"exit {code}")))
    return summary(RESULTS, mutual)


if __name__ == "__main__":
    sys.exit(main())

"""Proof that an image `hone package` wrote runs.

skopeo re-hashes every blob while copying the archive (as an OCI archive and
as a docker archive), umoci unpacks it, and the image's own entrypoint is
started from the unpacked root filesystem as the image's user (chroot, the
config's environment, the config's user). tritonclient then drives it over
HTTP and gRPC, every output checked against onnxruntime on the model files
inside the image. A copy with one flipped byte in a layer must be refused.

usage: image.py IMAGE.tar TAG WORK_DIR
Prints `startup_s` and `idle_rss_kib` for the benchmark.
"""
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as tg
import tritonclient.http as th

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "conformance"))
from hone_process import check as run_check  # noqa: E402
from hone_process import free_port, record  # noqa: E402

IMAGE, TAG, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
RESULTS = []


def check(name, fn):
    run_check(RESULTS, name, fn)


def sh(*args, ok=True):
    p = subprocess.run(args, capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
oci = os.path.join(WORK, "oci")
bundle = os.path.join(WORK, "bundle")

check("skopeo copies the OCI archive (every blob re-hashed)",
      lambda: sh("skopeo", "copy", f"oci-archive:{IMAGE}:{TAG}", f"oci:{oci}:{TAG}"))
check("skopeo copies the same tar as a docker archive",
      lambda: sh("skopeo", "copy", f"docker-archive:{IMAGE}", f"oci:{oci}-docker:{TAG}"))


def inspect():
    info = json.loads(sh("skopeo", "inspect", "--config", f"oci-archive:{IMAGE}:{TAG}").stdout)
    cfg = info["config"]
    assert cfg["User"] == "65532:65532", cfg["User"]
    assert cfg["Entrypoint"][:2] == ["/usr/local/bin/hone", "serve"], cfg["Entrypoint"]
    assert set(cfg["ExposedPorts"]) == {"8000/tcp", "8001/tcp", "8002/tcp"}, cfg["ExposedPorts"]
    assert any(e.startswith("ORT_DYLIB_PATH=") for e in cfg["Env"]), cfg["Env"]
    labels = cfg["Labels"]
    assert labels["ai.hone.models"] == "digits,mlp", labels
    assert len(labels["ai.hone.model.mlp.1.sha256"]) == 64, labels
    assert "created" not in info, "a timestamp makes the digest unreproducible"


check("the config: numeric user, entrypoint, ports, library path, model labels", inspect)
check("umoci unpacks it", lambda: sh("umoci", "unpack", "--image", f"{oci}:{TAG}", bundle))

rootfs = os.path.join(bundle, "rootfs")
with open(os.path.join(bundle, "config.json")) as f:
    runtime = json.load(f)["process"]
user = f"{runtime['user']['uid']}:{runtime['user']['gid']}"
http, grpc, metrics = free_port(), free_port(), free_port()
# The entrypoint as the image gives it; only the ports move off the defaults
# (what `docker run IMAGE --http-port ...` appends).
args = runtime["args"] + ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
env = {k: v for k, v in (e.split("=", 1) for e in runtime["env"])}
log_path = os.path.join(WORK, "hone.log")
started = time.time()
chroot = shutil.which("chroot") or shutil.which("chroot", path="/usr/sbin:/sbin")
proc = subprocess.Popen([chroot, f"--userspec={user}", rootfs] + args, env=env,
                        stdout=open(log_path, "w"), stderr=subprocess.STDOUT)


def log():
    with open(log_path) as f:
        return f.read()[-4000:]


deadline = time.time() + 60
while True:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=1)
        break
    except Exception:
        if proc.poll() is not None or time.time() > deadline:
            print(log())
            raise SystemExit("the image's entrypoint did not come up")
        time.sleep(0.02)
startup = time.time() - started
time.sleep(1.0)
with open(f"/proc/{proc.pid}/status") as f:
    rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
print(f"startup_s {startup:.3f}")
print(f"idle_rss_kib {rss}")


def runs_as_the_image_user():
    with open(f"/proc/{proc.pid}/status") as f:
        uid = next(line.split()[1] for line in f if line.startswith("Uid"))
    assert uid == "65532", uid


check("the server runs as uid 65532", runs_as_the_image_user)

rng = np.random.default_rng(0)
MODELS = {"mlp": rng.standard_normal((4, 30)).astype(np.float32),
          "digits": rng.random((3, 1, 8, 8)).astype(np.float32)}


def expected(model, x):
    sess = ort.InferenceSession(os.path.join(rootfs, "models", model, "1", "model.onnx"))
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def over_http(model, binary):
    def run():
        c = th.InferenceServerClient(f"127.0.0.1:{http}")
        assert c.is_server_live() and c.is_server_ready() and c.is_model_ready(model)
        meta = c.get_model_metadata(model)
        x = MODELS[model]
        i = th.InferInput(meta["inputs"][0]["name"], list(x.shape), "FP32")
        i.set_data_from_numpy(x, binary_data=binary)
        o = th.InferRequestedOutput(meta["outputs"][0]["name"], binary_data=binary)
        got = c.infer(model, [i], outputs=[o]).as_numpy(meta["outputs"][0]["name"])
        np.testing.assert_allclose(got, expected(model, x), rtol=1e-5, atol=1e-6)
    return run


def over_grpc(model):
    def run():
        c = tg.InferenceServerClient(f"127.0.0.1:{grpc}")
        assert c.is_server_live() and c.is_server_ready() and c.is_model_ready(model)
        meta = c.get_model_metadata(model, as_json=True)
        x = MODELS[model]
        i = tg.InferInput(meta["inputs"][0]["name"], list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        got = c.infer(model, [i]).as_numpy(meta["outputs"][0]["name"])
        np.testing.assert_allclose(got, expected(model, x), rtol=1e-5, atol=1e-6)
    return run


for m in MODELS:
    check(f"{m}: HTTP JSON matches onnxruntime", over_http(m, False))
    check(f"{m}: HTTP binary matches onnxruntime", over_http(m, True))
    check(f"{m}: gRPC matches onnxruntime", over_grpc(m))


def metrics_served():
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
    assert 'hone_request_success_total{model="mlp"' in body, body[:500]


check("metrics are served", metrics_served)


def clean_exit():
    proc.terminate()
    code = proc.wait(timeout=40)
    assert code == 0, f"exit {code}\n{log()}"


check("SIGTERM: a clean exit", clean_exit)


def corrupt_blob_is_refused():
    bad = os.path.join(WORK, "corrupt.tar")
    shutil.copy(IMAGE, bad)
    with tarfile.open(bad) as t:
        # The largest blob is a layer.
        member = max((m for m in t.getmembers() if m.name.startswith("blobs/sha256/") and m.isfile()),
                     key=lambda m: m.size)
    with open(bad, "r+b") as f:
        f.seek(member.offset_data + member.size // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))
    p = sh("skopeo", "copy", f"oci-archive:{bad}:{TAG}", f"oci:{WORK}/corrupt-oci:{TAG}", ok=False)
    assert p.returncode != 0, "skopeo accepted a corrupted layer"
    assert "digest" in p.stderr.lower() or "checksum" in p.stderr.lower(), p.stderr


check("a corrupted layer is detected", corrupt_blob_is_refused)

failed = [n for n, e in RESULTS if e]
print(f"{len(RESULTS) - len(failed)} passed, {len(failed)} failed")
if failed:
    print("failed:", ", ".join(failed))
    print(log())
sys.exit(1 if failed or not RESULTS else 0)

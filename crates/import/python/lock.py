"""Writes the hash-pinned lock files of hone import's Python environment
(a maintainer's tool; hone only reads its output, locks/*.txt).

    python3 crates/import/python/lock.py

Each group is resolved by pip (dry run) against the pins below, so every
group agrees on shared packages, and then every file PyPI holds for each
pinned release is listed by its sha256: pip installs with
--require-hashes, so a replaced or tampered wheel is refused on any
platform.
"""

import json
import os
import subprocess
import sys
import tempfile
import urllib.request

# The top-level pins: the versions hone's tests run.
PINS = {
    "numpy": "2.4.6",
    "onnx": "1.23.2",
    "onnxruntime": "1.31.1",
    "pandas": "3.1.2",
    "pyarrow": "26.0.1",
    "scikit-learn": "1.9.1",
    "skl2onnx": "1.20.0",
    "skops": "0.16.0",
    "joblib": "1.6.0",
    "onnxmltools": "1.16.0",
    # The CPU build: the plain xgboost wheel pulls 200 MB of NCCL.
    "xgboost-cpu": "3.2.0",
    "lightgbm": "4.7.0",
    "catboost": "1.2.10",
    "tensorflow-cpu": "2.21.0",
    "tf2onnx": "1.17.0",
}

BASE = ["numpy", "onnx", "onnxruntime", "pandas", "pyarrow"]
GROUPS = {
    "sklearn": ["scikit-learn", "skl2onnx", "skops", "joblib"],
    "xgboost": ["xgboost-cpu", "onnxmltools", "scikit-learn"],
    "lightgbm": ["lightgbm", "onnxmltools", "scikit-learn"],
    "catboost": ["catboost"],
    "keras": ["tensorflow-cpu", "tf2onnx"],
}


def resolve(names):
    with tempfile.TemporaryDirectory() as d:
        report = os.path.join(d, "r.json")
        reqs = [f"{n}=={PINS[n]}" for n in BASE + names]
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
             "--only-binary", ":all:", "--report", report] + reqs,
            check=True,
        )
        with open(report) as fh:
            r = json.load(fh)
    return sorted((i["metadata"]["name"].lower(), i["metadata"]["version"]) for i in r["install"])


def hashes(name, ver, cache={}):
    if name not in cache:
        with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=60) as r:
            cache[name] = json.load(r)["releases"]
    files = cache[name].get(ver) or []
    return sorted(f["digests"]["sha256"] for f in files if f["packagetype"] == "bdist_wheel")


def main():
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "locks")
    os.makedirs(here, exist_ok=True)
    for group, names in GROUPS.items():
        lines = [f"# hone import, group {group}: written by lock.py; pip install --require-hashes --no-deps"]
        for name, ver in resolve(names):
            hs = hashes(name, ver)
            if not hs:
                sys.exit(f"{name}=={ver}: no wheel hashes on PyPI")
            lines.append(f"{name}=={ver} " + " ".join(f"--hash=sha256:{h}" for h in hs))
        with open(os.path.join(here, f"{group}.txt"), "w") as fh:
            fh.write("\n".join(lines) + "\n")
        print(group, len(lines) - 1, "packages")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""False alarms of live drift, before and after: two hone binaries side by
side on the same data.

Each binary ships the shared breast-cancer train + validation rows (its own
card: the old one's reference histograms, the new one's), serves the model
with a drift window of 100 rows, and is sent 50 windows of 100 rows drawn
at random from the 114 held-out test rows (same distribution as training;
the windows overlap, as they must with 114 rows). A feature counts as
flagged when the old binary puts it in the moderate or major PSI band, or
the new one gives it a moderate or major verdict. Then 20 windows with one
feature (mean_area) moved by two standard deviations: how often is it
flagged major, and how many other features are flagged with it.

usage: HONE_OLD=path/to/old/hone HONE_NEW=target/release/hone bench/drift_false_alarms.py
"""
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request

SHARED = os.environ.get("SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
BC = os.path.join(SHARED, "models", "tabular", "breast_cancer")
WINDOWS, ROWS, SHIFTED = 50, 100, 20


def read(path):
    with open(path) as f:
        head = f.readline().strip().split(",")
        rows = [line.strip().split(",") for line in f if line.strip()]
    label = head.index("label")
    names = [h for i, h in enumerate(head) if i != label]
    x = [[float(v) for i, v in enumerate(r) if i != label] for r in rows]
    return names, x


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def get(url):
    with urllib.request.urlopen(url) as r:
        return json.load(r)


def flagged(feature):
    word = feature.get("verdict") or feature.get("band")
    return word in ("moderate", "major")


def run(hone, port, test, names):
    work = tempfile.mkdtemp()
    csv = os.path.join(work, "bc.csv")
    with open(os.path.join(BC, "train.csv")) as a, open(os.path.join(BC, "val.csv")) as b, open(csv, "w") as out:
        out.write(a.read())
        b.readline()
        out.write(b.read())
    repo = os.path.join(work, "repo")
    subprocess.run([hone, "ship", csv, "--target", "label", "--model-repository", repo, "--name", "bc",
                    "--json"], check=True, capture_output=True)
    with open(os.path.join(repo, "bc", "config.pbtxt"), "a") as f:
        f.write('parameters { key: "drift_window_rows" value: { string_value: "100" } }\n')
        f.write('parameters { key: "drift_max_rows_per_second" value: { string_value: "1000000000" } }\n')
    server = subprocess.Popen([hone, "serve", "--model-repository", repo, "--http-port", str(port),
                               "--grpc-port", str(port + 1), "--metrics-port", str(port + 2)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/v2/health/ready")
                break
            except Exception:
                time.sleep(0.1)
        rng = random.Random(7)

        def window(rows):
            before = get(base + "/v2/models/bc/drift").get("rows_sampled", 0)
            for i in range(0, len(rows), 50):  # ship's config batches up to 64 rows
                chunk = rows[i:i + 50]
                body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [len(chunk), len(chunk[0])],
                                    "data": [v for r in chunk for v in r]}]}
                post(base + "/v2/models/bc/infer", body)
            for _ in range(100):
                d = get(base + "/v2/models/bc/drift")
                if d.get("rows_sampled", 0) >= before + len(rows) and d["rows"] == len(rows):
                    return d
                time.sleep(0.02)
            raise RuntimeError(f"window never held {len(rows)} rows: {d['rows']}")

        calm = []
        for _ in range(WINDOWS):
            d = window(rng.sample(test, ROWS))
            calm.append(sum(flagged(f) for f in d["features"]))
        j = names.index("mean_area")
        col = [r[j] for r in test]
        mean = sum(col) / len(col)
        sd = (sum((v - mean) ** 2 for v in col) / len(col)) ** 0.5
        caught, others = 0, []
        for _ in range(SHIFTED):
            rows = [list(r) for r in rng.sample(test, ROWS)]
            for r in rows:
                r[j] += 2 * sd
            d = window(rows)
            f = d["features"][j]
            caught += (f.get("verdict") or f.get("band")) == "major"
            others.append(sum(flagged(g) for i, g in enumerate(d["features"]) if i != j))
        return calm, caught, others
    finally:
        server.terminate()
        server.wait()


def main():
    old, new = os.environ.get("HONE_OLD"), os.environ.get("HONE_NEW", "target/release/hone")
    if not old:
        sys.exit("set HONE_OLD to the binary to compare against")
    names, test = read(os.path.join(BC, "test.csv"))
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"CPU: {cpu}, {os.cpu_count()} cores; {WINDOWS} windows of {ROWS} held-out rows, 30 features")
    print("| binary | windows with any false alarm | false alarms per window (mean) | features flagged, worst window | +2σ mean_area flagged major | other features flagged with it (mean) |")
    print("|---|---|---|---|---|---|")
    for tag, hone, port in (("before", old, 18700), ("after", new, 18710)):
        calm, caught, others = run(hone, port, test, names)
        print(f"| {tag} | {sum(c > 0 for c in calm)}/{WINDOWS} | {sum(calm) / WINDOWS:.2f} | {max(calm)} | "
              f"{caught}/{SHIFTED} | {sum(others) / SHIFTED:.2f} |")


if __name__ == "__main__":
    main()

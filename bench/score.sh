#!/usr/bin/env bash
# hone score against the loop a Python user writes: pandas (CSV) or pyarrow
# (Parquet) reading chunks of 8192 rows, onnxruntime on every core, the same
# label and per-class probability columns written back. The breast-cancer
# model from `hone train`, on ROWS rows (the test rows with seeded noise),
# alternating hone and Python for ROUNDS rounds. Prints rows/s and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${MODELS:-../shared/models}
ROWS=${ROWS:-500000}
ROUNDS=${ROUNDS:-2}
cargo build --release -q -p hone
HONE=$PWD/target/release/hone
WORK=$PWD/target/tmp/bench-score
mkdir -p "$WORK"
VENV=$PWD/target/tmp/bench-score-venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r bench/score_requirements.txt
fi
PY=$VENV/bin/python
export HONE_LOG=warn
BC=$MODELS/tabular/breast_cancer
"$HONE" train "$BC/train.csv" --target label --val "$BC/val.csv" -o "$WORK/bc.onnx" --quiet
"$PY" - "$BC/test.csv" "$WORK" "$ROWS" <<'PY'
import sys, numpy as np, pandas as pd
src, work, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = pd.read_csv(src).drop(columns=["label"])
rng = np.random.default_rng(0)
x = t.to_numpy()[rng.integers(0, len(t), rows)] * rng.uniform(0.95, 1.05, (rows, t.shape[1]))
big = pd.DataFrame(x, columns=t.columns)
big.insert(0, "id", [f"row-{i}" for i in range(rows)])
big.to_csv(f"{work}/big.csv", index=False)
big.to_parquet(f"{work}/big.parquet", row_group_size=65536)
PY
cat > "$WORK/loop.py" <<'PY'
# The Python user's loop: chunks in, onnxruntime, label and probabilities out.
import json, sys, time
import numpy as np, onnxruntime as ort, pandas as pd, pyarrow as pa, pyarrow.parquet as pq
model, data, out = sys.argv[1:4]
card = json.load(open(model.replace(".onnx", ".card.json")))
features = [f["name"] for f in card["input"]["features"]]
labels = np.array(card["labels"])
sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
name = sess.get_inputs()[0].name
def score(df):
    p1 = sess.run(None, {name: df[features].to_numpy(np.float32)})[0][:, 0]
    return pd.DataFrame({"id": df["id"], "label": labels[(p1 >= 0.5).astype(int)],
                         "p_" + labels[0]: 1.0 - p1.astype(np.float64), "p_" + labels[1]: p1.astype(np.float64)})
t0, n = time.perf_counter(), 0
if data.endswith(".parquet"):
    writer = None
    for batch in pq.ParquetFile(data).iter_batches(batch_size=8192):
        o = pa.Table.from_pandas(score(batch.to_pandas()), preserve_index=False)
        writer = writer or pq.ParquetWriter(out, o.schema)
        writer.write_table(o); n += o.num_rows
    writer.close()
else:
    for i, df in enumerate(pd.read_csv(data, chunksize=8192)):
        o = score(df); n += len(o)
        o.to_csv(out, mode="w" if i == 0 else "a", header=i == 0, index=False)
print(n / (time.perf_counter() - t0))
PY
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $ROWS rows"
for fmt in csv parquet; do
  for r in $(seq "$ROUNDS"); do
    h=$("$HONE" score "$WORK/bc.onnx" --data "$WORK/big.$fmt" -o "$WORK/hone-out.$fmt" --json \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["rows_per_second"])')
    p=$("$PY" "$WORK/loop.py" "$WORK/bc.onnx" "$WORK/big.$fmt" "$WORK/py-out.$fmt")
    python3 -c "print(f'$fmt round $r: hone {float($h):,.0f} rows/s, python+onnxruntime {float($p):,.0f} rows/s, ratio {float($h)/float($p):.2f}')"
  done
done

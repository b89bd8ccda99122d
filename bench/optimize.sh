#!/usr/bin/env bash
# hone optimize on the shared models, then the same models through
# onnxruntime.quantization, judged and timed side by side in one harness.
# Numbers go to stdout; nothing here is a timed test.
#   THREADS=N       intra-op threads for every session (default 0: hone times
#                   as hone serve runs each file; the harness runs at ORT's
#                   default and again at 1 thread)
#   COMPARE_ONLY=1  keep the last hone outputs, rerun only the comparison
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=$(cd "${MODELS:-../shared/models}" && pwd)
THREADS=${THREADS:-0}
cargo build --release -q -p hone
HONE=$PWD/target/release/hone
WORK=$PWD/target/tmp/bench-optimize
mkdir -p "$WORK"
VENV=$PWD/target/tmp/bench-venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r bench/optimize_requirements.txt
fi
PY=$VENV/bin/python
export HONE_LOG=warn
S=$MODELS/tabular/breast_cancer

# resnet18 has random weights and no data: 16 seeded random images, judged by fidelity.
mkdir -p "$WORK/resnet_data"
"$PY" -c "import numpy as np; np.save('$WORK/resnet_data/input.npy', np.random.default_rng(0).standard_normal((16,3,224,224)).astype(np.float32))"

run() { # name, model, args...
  local name=$1 model=$2; shift 2
  # COMPARE_ONLY=1 reuses the last run's hone outputs.
  if [ -n "${COMPARE_ONLY:-}" ] && [ -f "$WORK/$name.report.json" ]; then return; fi
  echo "== hone optimize $name"
  "$HONE" optimize "$model" --threads "$THREADS" -o "$WORK/$name.onnx" "$@" || true
}
run minilm "$MODELS/minilm/minilm.onnx" --data "$MODELS/minilm" --latency-data "$MODELS/minilm/ref/minilm" \
  --output-name sentence_embedding --techniques graph,dynamic,fallback --max-drop 0.01 --measure-seconds 3
run resnet18 "$MODELS/resnet18/resnet18.onnx" --data "$WORK/resnet_data" --techniques graph,static \
  --calibration-rows 16 --max-drop 0.01 --measure-seconds 4
run digits "$MODELS/digits_cnn/digits_cnn.onnx" --data "$MODELS/digits_cnn/test.csv" \
  --calibration "$MODELS/digits_cnn/train.csv" --techniques static --max-drop 0.005
run mlp_pruned "$MODELS/mlp/mlp.onnx" --data "$S/test.csv" --train-data "$S/train.csv" \
  --techniques prune --objective size --max-drop 0.005
# hone's own model: trained with a validation file, fine-tuned against it.
[ -n "${COMPARE_ONLY:-}" ] || "$HONE" train "$S/train.csv" --val "$S/val.csv" --target label -o "$WORK/bc_hone.onnx" --quiet
run bc_hone_pruned "$WORK/bc_hone.onnx" --data "$S/test.csv" --techniques prune --objective size --max-drop 0.005

chosen() { "$PY" -c "import json;print(json.load(open('$WORK/$1.report.json'))['chosen'] or 'none')"; }
cat > "$WORK/cases.json" <<JSON
[
 {"name": "minilm", "kind": "minilm", "model": "$MODELS/minilm/minilm.onnx", "hone": "$WORK/minilm.onnx",
  "chosen": "$(chosen minilm)", "ort_label": "onnxruntime quantize_dynamic (QInt8)", "title": "MiniLM, dynamic int8 (batch 1, sentence 0 at its own length)"},
 {"name": "minilm_pc", "kind": "minilm", "per_channel": true, "model": "$MODELS/minilm/minilm.onnx", "hone": "$WORK/minilm.onnx",
  "chosen": "$(chosen minilm)", "ort_label": "onnxruntime quantize_dynamic (QInt8, per_channel)", "title": "MiniLM, against onnxruntime per-channel"},
 {"name": "resnet18", "kind": "resnet", "model": "$MODELS/resnet18/resnet18.onnx", "hone": "$WORK/resnet18.onnx", "data": "$WORK/resnet_data",
  "chosen": "$(chosen resnet18)", "ort_label": "onnxruntime quant_pre_process + quantize_static (QDQ, per-channel, U8S8, MinMax)", "title": "resnet18, static int8 (batch 1)"},
 {"name": "digits", "kind": "digits", "model": "$MODELS/digits_cnn/digits_cnn.onnx", "hone": "$WORK/digits.onnx", "data": "$MODELS/digits_cnn/test.csv",
  "calibration": "$MODELS/digits_cnn/train.csv", "chosen": "$(chosen digits)", "ort_label": "onnxruntime quantize_static (QDQ, per-channel, U8S8, MinMax)", "title": "digits CNN, static int8"},
 {"name": "mlp", "kind": "mlp", "model": "$MODELS/mlp/mlp.onnx", "hone": "$WORK/mlp_pruned.onnx", "data": "$S/test.csv",
  "chosen": "$(chosen mlp_pruned)", "ort_label": "onnxruntime quantize_dynamic (QInt8)", "title": "breast-cancer MLP, 50% structured pruning + fine-tune"}
]
JSON
# With THREADS=0 the harness runs twice: ORT's default session (every core,
# spinning workers), then one intra-op thread, the session hone serve gives
# the 1 MiB-1 GiB files here by default (2 instances on 2 cores).
for t in $THREADS $([ "$THREADS" = 0 ] && echo 1); do
  echo "== side by side (one Python harness, onnxruntime $("$PY" -c 'import onnxruntime;print(onnxruntime.__version__)'), threads=$t)"
  "$PY" bench/optimize_compare.py "$WORK" "$t" "$MODELS" 2>&1 | grep -v "WARNING\|Please consider"
done

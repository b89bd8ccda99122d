#!/usr/bin/env bash
# hone optimize on every model of the zoo (bench/zoo/zoo.json: real models
# shipped inside registry packages), then onnxruntime.quantization on the
# same models, judged and timed side by side in one Python harness.
# Numbers go to stdout and target/tmp/bench-zoo/compare.json.
#   ONLY=a,b         just these zoo models
#   COMPARE_ONLY=1   keep the last hone outputs, rerun only the comparison
set -euo pipefail
cd "$(dirname "$0")/.."
export MODELS=$(cd "${MODELS:-../shared/models}" && pwd)
cargo build --release -q -p hone
HONE=$PWD/target/release/hone
WORK=$PWD/target/tmp/bench-zoo
ZOO=$PWD/target/zoo
mkdir -p "$WORK"
VENV=$PWD/target/tmp/zoo-venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r bench/zoo/requirements.txt
fi
PY=$VENV/bin/python
"$PY" bench/zoo/zoo.py "$ZOO" ${ONLY:+--only "$ONLY"}
export HONE_LOG=warn
grep -m1 "model name" /proc/cpuinfo
for d in "$ZOO"/*/; do
  name=$(basename "$d")
  [ -f "$d/meta.json" ] || continue
  if [ -n "${ONLY:-}" ] && [[ ",$ONLY," != *",$name,"* ]]; then continue; fi
  if [ -n "${COMPARE_ONLY:-}" ] && [ -f "$WORK/$name.report.json" ]; then continue; fi
  read -r ev cal out < <("$PY" -c "import json;m=json.load(open('$d/meta.json'));print(m['eval'],m['calib'],m.get('output',''))")
  echo "== hone optimize $name"
  "$HONE" optimize "$d/model.onnx" --data "$ev" --calibration "$cal" ${out:+--output-name "$out"} \
    --techniques graph,fp16,dynamic,static,fallback --max-drop 0.01 --measure-seconds 1 --time-budget 3m \
    -o "$WORK/$name.onnx" || true
done
"$PY" bench/zoo/compare.py "$ZOO" "$WORK" 2>&1 | grep -v "WARNING\|Please consider"

#!/usr/bin/env bash
# Device check (see bench/device/prepare.sh): mlp100 serving tail latency on 16 cores; hone optimize speed-ups
# (resnet18 static int8, MiniLM dynamic int8) on this CPU, beside onnxruntime's tool.
set -u
D=$PWD/.dev; O=${OUT:-/tmp/out}; W=/tmp/w; mkdir -p "$O" "$W/lib"
exec > >(tee "$O/log.txt") 2>&1
t0=$(date +%s); el() { echo "[+$(( $(date +%s) - t0 ))s] $*"; }
el setup
xz -dc "$D/hone.xz" > "$W/hone"; chmod +x "$W/hone"
xz -dc "$D/libonnxruntime.so.1.31.1.xz" > "$W/libonnxruntime.so.1.31.1"
cp "$D/libluajit-5.1.so.2" "$W/lib/"
export ORT_DYLIB_PATH=$W/libonnxruntime.so.1.31.1 HONE_LOG=warn
nproc; lscpu | grep -E "Model name|Thread|Socket"; grep -o -E "avx512_vnni|avx512vnni|avx_vnni|amx_int8|avx512f" /proc/cpuinfo | sort | uniq -c
python3 -c "import onnxruntime,onnx,torch;print('py ort',onnxruntime.__version__,'onnx',onnx.__version__,'torch',torch.__version__)"
wrk() { LD_LIBRARY_PATH=$W/lib "$D/wrk" "$@"; }
W1() { wrk "$@" | grep WRKJSON | python3 -c "import sys,json;d=json.loads(sys.stdin.read().split(' ',1)[1]);print('   req/s %.0f p50 %.2f p90 %.2f p99 %.2f max %.1f ms non2xx %d'%(d['requests']/d['duration_us']*1e6,d['p50_us']/1e3,d['p90_us']/1e3,d['p99_us']/1e3,d['max_us']/1e3,d['non2xx']))"; }
export BODY=$D/peers/body1.json
serve_bench() { # label, config text or ''
  rm -rf "$W/repo"; mkdir -p "$W/repo/mlp100/1"; cp "$D/models/mlp/mlp100.onnx" "$W/repo/mlp100/1/model.onnx"
  [ -n "$2" ] && printf "$2" > "$W/repo/mlp100/config.pbtxt"
  "$W/hone" serve --model-repository "$W/repo" --http-port 8000 --grpc-port 8001 --metrics-port 8002 & SP=$!
  for i in $(seq 200); do curl -sf localhost:8000/v2/models/mlp100/ready >/dev/null && break; sleep 0.05; done
  U=http://127.0.0.1:8000/v2/models/mlp100/infer
  wrk -t2 -c16 -d${WARM:-3}s -s "$D/peers/post.lua" $U >/dev/null
  el "mlp100 $1 c=1";  W1 -t1 -c1 -d${DUR:-8}s --latency -s "$D/peers/post.lua" $U
  el "mlp100 $1 c=16"; W1 -t2 -c16 -d${DUR:-8}s --latency -s "$D/peers/post.lua" $U
  el "mlp100 $1 c=16 again"; W1 -t2 -c16 -d${DUR:-8}s --latency -s "$D/peers/post.lua" $U
  el "health GET c=16 (HTTP floor)"; wrk -t2 -c16 -d${WARM:-4}s --latency http://127.0.0.1:8000/v2/health/live | grep -E "Requests/sec|  99%|  50%"
  kill $SP; wait $SP 2>/dev/null
}
[ -n "${SKIP_SERVE:-}" ] || serve_bench default ''
[ -n "${SKIP_SERVE:-}" ] || serve_bench "intra-op 1" 'parameters { key: "intra_op_thread_count" value: { string_value: "1" } }\n'
el "make resnet18, restore minilm"
mkdir -p "$W/models/minilm"
timeout 150 python3 "$D/make_resnet.py" "$W/models/resnet18/resnet18.onnx" "$W/resnet_data" 2>&1 | grep -v Warning | tail -3
if [ ! -s "$W/models/resnet18/resnet18.onnx" ] && [ -f ../shared/models/resnet18/resnet18.onnx ]; then # local dry run: no torch here
  mkdir -p "$W/models/resnet18" "$W/resnet_data"; cp ../shared/models/resnet18/resnet18.onnx "$W/models/resnet18/"
  python3 -c "import numpy as np; np.save('$W/resnet_data/input.npy', np.random.default_rng(0).standard_normal((16,3,224,224)).astype(np.float32))"
fi
xz -dc "$D/minilm16.onnx.xz" > "$W/minilm16.onnx"
timeout 120 python3 "$D/restore_minilm.py" "$W/minilm16.onnx" "$W/models/minilm/minilm.onnx"
cp -r "$D/models/minilm/." "$W/models/minilm/"
el "hone optimize resnet18"
timeout 170 "$W/hone" optimize --threads ${THREADS:-0} "$W/models/resnet18/resnet18.onnx" --data "$W/resnet_data" --techniques graph,static \
  --calibration-rows 16 --max-drop 0.01 --measure-seconds ${MS:-4} -o "$W/resnet18.onnx" 2>&1 | grep -v "^\s*$" | tail -22
cp "$W/resnet18.report.json" "$O/" 2>/dev/null
el "hone optimize minilm"
timeout 170 "$W/hone" optimize --threads ${THREADS:-0} "$W/models/minilm/minilm.onnx" --data "$W/models/minilm" --latency-data "$W/models/minilm/ref/minilm" \
  --output-name sentence_embedding --techniques graph,dynamic,fallback --max-drop 0.01 --measure-seconds ${MS:-3} -o "$W/minilm.onnx" 2>&1 | grep -v "^\s*$" | tail -22
cp "$W/minilm.report.json" "$O/" 2>/dev/null
el "onnxruntime.quantization side by side (python onnxruntime of the image)"
ch() { python3 -c "import json;print(json.load(open('$W/$1.report.json'))['chosen'] or 'none')" 2>/dev/null || echo none; }
cat > "$W/cases.json" <<JSON
[{"name": "resnet18", "kind": "resnet", "model": "$W/models/resnet18/resnet18.onnx", "hone": "$W/resnet18.onnx", "data": "$W/resnet_data",
  "chosen": "$(ch resnet18)", "ort_label": "onnxruntime quant_pre_process + quantize_static (QDQ, per-channel, U8S8, MinMax)", "title": "resnet18, static int8 (batch 1)"},
 {"name": "minilm", "kind": "minilm", "model": "$W/models/minilm/minilm.onnx", "hone": "$W/minilm.onnx",
  "chosen": "$(ch minilm)", "ort_label": "onnxruntime quantize_dynamic (QInt8)", "title": "MiniLM, dynamic int8 (batch 1)"},
 {"name": "minilm_pc", "kind": "minilm", "per_channel": true, "model": "$W/models/minilm/minilm.onnx", "hone": "$W/minilm.onnx",
  "chosen": "$(ch minilm)", "ort_label": "onnxruntime quantize_dynamic (QInt8, per_channel)", "title": "MiniLM, against per-channel"}]
JSON
timeout 200 python3 bench/optimize_compare.py "$W" ${THREADS:-0} "$W/models" 2>&1 | grep -v "WARNING\|Please consider"
el done

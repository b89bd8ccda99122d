#!/usr/bin/env bash
# Builds .dev/ (git-ignored through .git/info/exclude): what bench/device/run.sh
# needs on a lent 16-core machine that can reach no network, small enough to
# travel (64 MiB): the stripped hone binary and libonnxruntime (xz), wrk and
# its LuaJIT, mlp100, MiniLM with its weights stored as fp16 (restored to
# fp32 there; resnet18 is rebuilt there from torchvision with the same seed).
# Then, through the device tool: carry [".dev"], command `bash .dev/run.sh`
# (SKIP_SERVE=1 THREADS=1 for the single-thread optimize run; `bash .dev/run_variants.sh`
# for the resnet18 int8 profile).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODELS=${MODELS:-../shared/models}
PY=${PY:-target/tmp/bench-venv/bin/python}   # bench/optimize.sh makes it (onnx, numpy)
grep -qx '/.dev/' .git/info/exclude || echo '/.dev/' >> .git/info/exclude
rm -rf .dev && mkdir -p .dev/models/mlp .dev/models/minilm/ref/minilm .dev/peers
cargo build --release -q -p hone
strip -o .dev/hone target/release/hone && xz -T2 -6 .dev/hone
ORT=$(ls "${HONE_CACHE_DIR:-$HOME/.cache/hone}"/onnxruntime-*/libonnxruntime.so.* | head -1)
xz -T2 -6 -c "$ORT" > ".dev/$(basename "$ORT").xz"
cp /usr/bin/wrk .dev/ && cp -L /lib/x86_64-linux-gnu/libluajit-5.1.so.2 .dev/
cp "$MODELS/mlp/mlp100.onnx" .dev/models/mlp/
cp "$MODELS"/minilm/*.npy .dev/models/minilm/ && cp "$MODELS"/minilm/ref/minilm/* .dev/models/minilm/ref/minilm/
cp ../shared/peers/lib/post.lua ../shared/peers/example/body1.json .dev/peers/
"$PY" - "$MODELS/minilm/minilm.onnx" .dev/minilm16.onnx <<'PYEOF'
import sys, numpy as np, onnx
from onnx import numpy_helper, TensorProto
m = onnx.load(sys.argv[1])
for t in m.graph.initializer:
    if t.data_type == TensorProto.FLOAT:
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
onnx.save(m, sys.argv[2])
PYEOF
xz -T2 -6 .dev/minilm16.onnx
cp bench/device/run.sh bench/device/run_variants.sh bench/device/variants.py bench/device/make_resnet.py bench/device/restore_minilm.py .dev/
du -sh .dev

# The carried MiniLM has its weights stored as fp16 (to fit the transfer); back to fp32 for an fp32 model.
import sys, numpy as np, onnx
from onnx import numpy_helper, TensorProto
m = onnx.load(sys.argv[1])
for t in m.graph.initializer:
    if t.data_type == TensorProto.FLOAT16:
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))
onnx.save(m, sys.argv[2])
print("minilm restored")

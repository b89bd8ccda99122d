"""Writes OUT/lower/1/model.onnx, a model made of onnxruntime-extensions'
StringLower (domain ai.onnx.contrib), and prints two lines: the extensions'
library and the shared libpython it needs (empty when there is none).

usage: make_model.py OUT
"""
import os
import sys
import sysconfig

import onnx
import onnxruntime_extensions
from onnx import TensorProto, helper

out = os.path.join(sys.argv[1], "lower", "1")
os.makedirs(out, exist_ok=True)
node = helper.make_node("StringLower", ["text"], ["lower"], domain="ai.onnx.contrib")
graph = helper.make_graph(
    [node],
    "lower",
    [helper.make_tensor_value_info("text", TensorProto.STRING, ["n"])],
    [helper.make_tensor_value_info("lower", TensorProto.STRING, ["n"])],
)
model = helper.make_model(
    graph,
    opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.contrib", 1)],
    ir_version=8,
)
onnx.save(model, os.path.join(out, "model.onnx"))
print(onnxruntime_extensions.get_library_path())
lib = os.path.join(sysconfig.get_config_var("LIBDIR") or "", sysconfig.get_config_var("INSTSONAME") or "")
print(lib if os.path.isfile(lib) else "")

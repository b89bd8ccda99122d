# torchvision resnet18 with random weights (as shared/models/make/make_resnet18.py), and 16 seeded inputs.
import sys, os, numpy as np, torch, torchvision
out, data = sys.argv[1], sys.argv[2]
os.makedirs(os.path.dirname(out), exist_ok=True); os.makedirs(data, exist_ok=True)
torch.manual_seed(0)
m = torchvision.models.resnet18(weights=None).eval()
x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
torch.onnx.export(m, (x,), out, input_names=["input"], output_names=["logits"],
                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
np.save(os.path.join(data, "input.npy"), np.random.default_rng(0).standard_normal((16, 3, 224, 224)).astype(np.float32))
print("resnet18 written", os.path.getsize(out))

"""The text-embedding peer for bench/pipelines.sh: FastAPI + uvicorn with
tokenization (the `tokenizers` package, the same tokenizer.json) and
onnxruntime in one process, answering V2 JSON for `minilm_text` (text in,
`embedding` out) as hone's ensemble does. Inference on the event loop, like
the shared FastAPI + onnxruntime peer.

Env: PEER_MODEL_PATH (minilm.onnx), PEER_TOKENIZER (tokenizer.json),
PEER_ORT_THREADS (intra-op threads, default: every core).
"""

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from tokenizers import Tokenizer

tok = Tokenizer.from_file(os.environ["PEER_TOKENIZER"])
tok.no_padding()
tok.enable_truncation(256)
so = ort.SessionOptions()
so.intra_op_num_threads = int(os.environ.get("PEER_ORT_THREADS", os.cpu_count() or 1))
so.inter_op_num_threads = 1
sess = ort.InferenceSession(os.environ["PEER_MODEL_PATH"], so, providers=["CPUExecutionProvider"])
app = FastAPI()


@app.get("/v2/health/ready")
def ready():
    return {}


@app.post("/v2/models/minilm_text/infer")
async def infer(request: Request):
    body = await request.json()
    texts = body["inputs"][0]["data"]
    enc = tok.encode_batch(texts)
    width = max(len(e.ids) for e in enc)
    ids = np.zeros((len(enc), width), np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for i, e in enumerate(enc):
        n = len(e.ids)
        ids[i, :n], mask[i, :n], types[i, :n] = e.ids, e.attention_mask, e.type_ids
    (emb,) = sess.run(["sentence_embedding"], {
        "input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    return JSONResponse({
        "model_name": "minilm_text",
        "outputs": [{"name": "embedding", "datatype": "FP32", "shape": list(emb.shape),
                     "data": emb.reshape(-1).tolist()}],
    })

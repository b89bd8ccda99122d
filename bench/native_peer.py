"""The native-framework peer for bench/import.sh: a FastAPI + uvicorn KServe
V2 JSON server that answers with the model's own framework (XGBoost or a
scikit-learn pipeline) in Python, the way a team serves such a model without
converting it. One process, inference on the event loop, like the shared
FastAPI + onnxruntime peer.

Env: PEER_MODEL_PATH (.json XGBoost model or .skops pipeline), PEER_MODEL_NAME.
"""

import os

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

PATH = os.environ["PEER_MODEL_PATH"]
NAME = os.environ["PEER_MODEL_NAME"]

if PATH.endswith(".skops"):
    import pandas as pd
    import skops.io as sio

    MODEL = sio.load(PATH, trusted=sio.get_untrusted_types(file=PATH))
    COLUMNS = list(MODEL.feature_names_in_)

    def predict(inputs):
        frame = pd.DataFrame({c: np.asarray(inputs[c]["data"]).reshape(-1) for c in COLUMNS})
        return MODEL.predict(frame), MODEL.predict_proba(frame)
else:
    import xgboost as xgb

    MODEL = xgb.XGBClassifier()
    MODEL.load_model(PATH)

    def predict(inputs):
        t = next(iter(inputs.values()))
        x = np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])
        return MODEL.predict(x), MODEL.predict_proba(x)


app = FastAPI()


@app.get("/v2/health/ready")
def ready():
    return {}


@app.post(f"/v2/models/{NAME}/infer")
async def infer(request: Request):
    body = await request.json()
    inputs = {t["name"]: t for t in body["inputs"]}
    label, proba = predict(inputs)
    label = np.asarray(label)
    dt = "BYTES" if label.dtype.kind in "OUS" else "INT64"
    return JSONResponse({
        "model_name": NAME,
        "outputs": [
            {"name": "label", "datatype": dt, "shape": list(label.shape), "data": label.tolist()},
            {"name": "probabilities", "datatype": "FP32", "shape": list(proba.shape),
             "data": proba.astype(np.float32).reshape(-1).tolist()},
        ],
    })

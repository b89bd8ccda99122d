"""Trains the models `hone import` is tested on, from small data bundled
with scikit-learn, and writes beside each the framework's own predictions
on its sample rows (what the served model must answer).

Usage: python make_models.py OUT_DIR FORMAT...
FORMAT: keras sklearn xgboost lightgbm catboost
"""

import json
import os
import sys

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)


def save_csv(name, x, y=None, target="label"):
    df = pd.DataFrame(x) if not isinstance(x, pd.DataFrame) else x.copy()
    if y is not None:
        df[target] = y
    df.to_csv(os.path.join(OUT, name), index=False)


def expect(name, **outputs):
    with open(os.path.join(OUT, name + ".expected.json"), "w") as fh:
        json.dump({k: np.asarray(v).tolist() for k, v in outputs.items()}, fh)


def cancer():
    d = load_breast_cancer(as_frame=True)
    x = d.data.astype(np.float32)
    x.columns = [c.replace(" ", "_") for c in x.columns]
    return x, d.target.to_numpy()


def keras():
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    x, y = cancer()
    x = x.to_numpy()
    mean, std = x.mean(axis=0), x.std(axis=0)
    xs = (x - mean) / std
    # The seed's model: Dense 64 relu -> Dense 64 relu -> Dense 1 sigmoid.
    model = tf.keras.Sequential([
        tf.keras.Input(shape=(30,)),
        tf.keras.layers.Dense(64, activation="relu"),
        tf.keras.layers.Dense(64, activation="relu"),
        tf.keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(xs, y, epochs=3, batch_size=64, verbose=0)
    model.save(os.path.join(OUT, "seed.h5"))
    model.save(os.path.join(OUT, "seed.keras"))
    model.export(os.path.join(OUT, "seed_savedmodel"), verbose=False)
    sample = xs[:64].astype(np.float32)
    np.save(os.path.join(OUT, "seed_sample.npy"), sample)
    save_csv("seed.csv", pd.DataFrame(xs.astype(np.float32), columns=[f"x{i}" for i in range(30)]), y)
    expect("seed", output=model.predict(sample, verbose=0))


def sklearn():
    import joblib
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame({
        "age": rng.integers(18, 80, n).astype(np.float64),
        "income": rng.normal(50, 15, n).round(2),
        "region": rng.choice(["north", "south", "east", "west"], n),
        "plan": rng.choice(["basic", "pro"], n),
    })
    logit = 0.05 * (df.age - 45) + 0.04 * (df.income - 50) + (df.region == "west") * 1.5 - (df.plan == "pro") * 1.0
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "churn", "stay")
    pipe = Pipeline([
        ("prep", ColumnTransformer([
            ("num", StandardScaler(), ["age", "income"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["region", "plan"]),
        ])),
        ("gb", GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=0)),
    ])
    pipe.fit(df, y)
    sio.dump(pipe, os.path.join(OUT, "churn.skops"))
    joblib.dump(pipe, os.path.join(OUT, "churn.joblib"))
    save_csv("churn.csv", df, y, target="churn")
    # A numeric pipeline fitted on a DataFrame: imported without a sample,
    # its rows are synthesized around the scaler's statistics.
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler as Scaler

    x, yc = cancer()
    lr = Pipeline([("scale", Scaler()), ("lr", LogisticRegression(max_iter=500))]).fit(x, yc)
    sio.dump(lr, os.path.join(OUT, "cancer_lr.skops"))
    expect("cancer_lr", label=lr.predict(x.head(64)), probabilities=lr.predict_proba(x.head(64)))
    sample = df.head(64)
    expect("churn", label=pipe.predict(sample), probabilities=pipe.predict_proba(sample))


def xgboost():
    import xgboost as xgb

    x, y = cancer()
    clf = xgb.XGBClassifier(n_estimators=30, max_depth=3, random_state=0)
    clf.fit(x, y)
    clf.save_model(os.path.join(OUT, "xgb_cancer.json"))
    clf.save_model(os.path.join(OUT, "xgb_cancer.ubj"))
    save_csv("cancer.csv", x, y)
    s = x.head(64)
    expect("xgb_cancer", label=clf.predict(s), probabilities=clf.predict_proba(s))
    d = load_diabetes(as_frame=True)
    xr = d.data.astype(np.float32)
    reg = xgb.XGBRegressor(n_estimators=50, max_depth=3, random_state=0)
    reg.fit(xr, d.target)
    reg.save_model(os.path.join(OUT, "xgb_diabetes.json"))
    save_csv("diabetes.csv", xr, d.target.to_numpy(), target="progression")
    expect("xgb_diabetes", variable=reg.predict(xr.head(64)))


def lightgbm():
    import lightgbm as lgb

    w = load_wine(as_frame=True)
    xw = w.data.astype(np.float32)
    xw.columns = [c.replace("/", "_") for c in xw.columns]
    clf = lgb.LGBMClassifier(n_estimators=30, num_leaves=8, random_state=0, verbose=-1)
    clf.fit(xw, w.target)
    clf.booster_.save_model(os.path.join(OUT, "lgb_wine.txt"))
    save_csv("wine.csv", xw, w.target.to_numpy())
    p = clf.booster_.predict(xw.head(64))
    expect("lgb_wine", label=p.argmax(axis=1), probabilities=p)
    d = load_diabetes(as_frame=True)
    xr = d.data.astype(np.float32)
    reg = lgb.LGBMRegressor(n_estimators=80, random_state=0, verbose=-1)
    reg.fit(xr, d.target)
    reg.booster_.save_model(os.path.join(OUT, "lgb_diabetes.txt"))
    save_csv("diabetes.csv", xr, d.target.to_numpy(), target="progression")
    expect("lgb_diabetes", variable=reg.booster_.predict(xr.head(64)))


def catboost():
    import catboost as cb

    x, y = cancer()
    m = cb.CatBoostClassifier(iterations=40, depth=4, random_seed=0, verbose=False, allow_writing_files=False)
    m.fit(x, y)
    m.save_model(os.path.join(OUT, "cb_cancer.cbm"))
    save_csv("cancer.csv", x, y)
    s = x.head(64)
    expect("cb_cancer", label=m.predict(s).reshape(-1), probabilities=m.predict_proba(s))


for fmt in sys.argv[2:]:
    globals()[fmt]()

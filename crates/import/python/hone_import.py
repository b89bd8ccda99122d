"""hone import's converter: loads a model in its own framework, converts it
to ONNX with the field's converter, runs both on the same rows and writes a
JSON report. hone (Rust) judges the report, writes the card and moves the
ONNX file into place; nothing here decides what is accepted.

Exit codes: 0 report written; 2 the model or its sample was refused (the
reason is the last stderr line, prefixed "refused: "); anything else is a
crash whose traceback hone shows.
"""

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np


class Refused(Exception):
    """A user-facing reason this model cannot be imported."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sha256(path):
    h = hashlib.sha256()
    if os.path.isdir(path):
        # A SavedModel directory: its files in name order, path and bytes.
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for f in sorted(files):
                p = os.path.join(root, f)
                h.update(os.path.relpath(p, path).encode())
                with open(p, "rb") as fh:
                    h.update(fh.read())
        return h.hexdigest()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def version(module):
    return getattr(__import__(module), "__version__", "unknown")


# ---------------------------------------------------------------- samples


def read_sample(path):
    """A DataFrame (CSV, Parquet) or an array (.npy)."""
    low = path.lower()
    if low.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    import pandas as pd

    if low.endswith(".parquet") or low.endswith(".pq"):
        return pd.read_parquet(path)
    return pd.read_csv(path)


def sample_matrix(sample, names, n, drop):
    """Rows as float32 [rows, n]: columns by name when the model has names,
    else every column but the dropped ones."""
    if isinstance(sample, np.ndarray):
        x = sample.reshape(sample.shape[0], -1) if sample.ndim != 2 else sample
        if x.shape[1] != n:
            raise Refused(f"--sample has {x.shape[1]} columns per row; the model takes {n}")
        return x.astype(np.float32)
    if names:
        missing = [c for c in names if c not in sample.columns]
        if missing:
            raise Refused(f"--sample lacks the model's feature column(s) {', '.join(missing[:5])}")
        df = sample[names]
    else:
        df = sample.drop(columns=[c for c in drop if c in sample.columns])
        if df.shape[1] != n:
            raise Refused(
                f"--sample has {df.shape[1]} columns ({', '.join(map(str, df.columns[:8]))}...) and the "
                f"model takes {n} unnamed features; name the columns to leave out with --target"
            )
    for c in df.columns:
        if df[c].dtype == object:
            raise Refused(f"--sample column `{c}` holds text; this model takes numbers")
    return df.to_numpy(dtype=np.float32)


def synth_normal(n, rows, rng):
    return rng.standard_normal((rows, n)).astype(np.float32)


def synth_trees(thresholds, n, rows, rng):
    """Rows whose values sit on and beside the trees' split points, where a
    rounded threshold would flip a decision."""
    x = rng.standard_normal((rows, n)).astype(np.float32)
    for f in range(n):
        ts = thresholds.get(f)
        if not ts:
            continue
        ts = np.asarray(ts, dtype=np.float64)
        pick = ts[rng.integers(0, len(ts), rows)]
        jitter = rng.choice([-1.0, 0.0, 1.0, 0.5], rows) * np.maximum(np.abs(pick), 1.0) * 1e-3
        x[:, f] = (pick + jitter).astype(np.float32)
        # A quarter exactly at the float32 neighbours of a threshold.
        k = rows // 4
        x[:k, f] = np.nextafter(pick[:k].astype(np.float32), np.float32(np.inf))
    return x


# ---------------------------------------------------------------- ONNX helpers


def strip_zipmap(model):
    """Replaces ZipMap (a list of dicts per row) by its input tensor, so the
    probabilities are a plain [rows, classes] tensor hone can serve."""
    import onnx

    g = model.graph
    for node in list(g.node):
        if node.op_type != "ZipMap":
            continue
        src, dst = node.input[0], node.output[0]
        g.node.remove(node)
        for out in g.output:
            if out.name == dst:
                out.CopyFrom(onnx.helper.make_tensor_value_info(dst, onnx.TensorProto.FLOAT, None))
        g.node.append(onnx.helper.make_node("Identity", [src], [dst], name=f"{dst}_tensor"))
    return model


def batch_outputs(model):
    """Gives every output a free first dimension: some converters declare
    a label of shape [1] that is really one per row."""
    for out in model.graph.output:
        t = out.type.tensor_type
        if t.HasField("shape") and len(t.shape.dim) >= 1:
            d = t.shape.dim[0]
            if not d.dim_param:
                d.Clear()
                d.dim_param = "N"


def rename_output(model, old, new):
    for node in model.graph.node:
        for seq in (node.input, node.output):
            for i, name in enumerate(seq):
                if name == old:
                    seq[i] = new
    for out in model.graph.output:
        if out.name == old:
            out.name = new


def floor32(t):
    """The largest float32 not above t: `x <= t` on a float64 threshold
    is `x <= floor32(t)` for every float32 x."""
    f = np.float32(t)
    if float(f) > t:
        f = np.nextafter(f, np.float32(-np.inf))
    return f


def fix_leq_thresholds(model, by_tree, by_feature):
    """onnxmltools rounds LightGBM's float64 thresholds to the nearest
    float32, which can round up and flip `x <= t` for an x between the two.
    Each BRANCH_LEQ value is set to floor32 of the threshold it came from
    (found by tree and feature). Returns (changed, ambiguous)."""
    import onnx

    changed = ambiguous = 0
    for node in model.graph.node:
        if not node.op_type.startswith("TreeEnsemble"):
            continue
        attrs = {a.name: a for a in node.attribute}
        if "nodes_values" not in attrs:
            continue
        trees = list(attrs["nodes_treeids"].ints)
        feats = list(attrs["nodes_featureids"].ints)
        modes = [m.decode() for m in attrs["nodes_modes"].strings]
        vals = list(attrs["nodes_values"].floats)
        for i, mode in enumerate(modes):
            if mode != "BRANCH_LEQ":
                continue
            v = np.float32(vals[i])
            cands = [t for t in by_tree.get((trees[i], feats[i]), []) if np.float32(t) == v]
            if not cands:
                cands = [t for t in by_feature.get(feats[i], []) if np.float32(t) == v]
            downs = {float(floor32(t)) for t in cands}
            if len(downs) == 1:
                d = downs.pop()
                if d != float(v):
                    vals[i] = d
                    changed += 1
            elif len(downs) > 1:
                ambiguous += 1
        attrs["nodes_values"].CopyFrom(onnx.helper.make_attribute("nodes_values", vals))
    return changed, ambiguous


# ---------------------------------------------------------------- formats
#
# Each loader returns an Imported: the ONNX model, a function that runs the
# source framework on the sample, the feeds for ONNX Runtime, which ONNX
# output answers which source output, and what the card records.


# The highest default-domain opset onnxmltools' converters write.
ML_OPSET = 15


class Imported:
    def __init__(self, **kw):
        self.task = None  # "binary" | "multiclass" | "regression" | None
        self.labels = []
        self.features = []
        self.notes = []
        self.__dict__.update(kw)


def tree_task(n_classes):
    if n_classes is None or n_classes == 0:
        return "regression"
    return "binary" if n_classes == 2 else "multiclass"


def load_xgboost(args, rng):
    import xgboost as xgb
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    booster = xgb.Booster()
    booster.load_model(args.model)
    cfg = json.loads(booster.save_config())
    objective = cfg["learner"]["objective"]["name"]
    n = booster.num_features()
    names = list(booster.feature_names or [])
    if objective.startswith(("binary:", "multi:softprob")):
        est = xgb.XGBClassifier()
    elif objective.startswith(("reg:", "count:", "survival:")) and objective != "reg:logistic":
        est = xgb.XGBRegressor()
    else:
        raise Refused(f"XGBoost objective `{objective}` has no ONNX converter (binary:*, multi:softprob and reg:* do)")
    est.load_model(args.model)
    # The converter reads splits by position (f0, f1, ...); the names stay
    # in the card.
    est.get_booster().feature_names = None
    onx = convert_xgboost(est, initial_types=[("input", FloatTensorType([None, n]))], target_opset=min(args.opset, ML_OPSET))
    strip_zipmap(onx)
    thresholds = {}
    for tree in booster.trees_to_dataframe().itertuples():
        if tree.Feature != "Leaf":
            f = names.index(tree.Feature) if names else int(str(tree.Feature).lstrip("f"))
            thresholds.setdefault(f, []).append(tree.Split)
    x = rows_for(args, names, n, lambda r: synth_trees(thresholds, n, r, rng))
    if isinstance(est, xgb.XGBClassifier):
        classes = [str(c) for c in getattr(est, "classes_", range(int(cfg["learner"]["learner_model_param"]["num_class"]) or 2))]
        expected = {"label": lambda: est.predict(x), "probabilities": lambda: est.predict_proba(x)}
        task, labels = tree_task(len(classes)), classes
    else:
        expected = {"variable": lambda: est.predict(x)}
        task, labels = "regression", []
    return Imported(
        onnx=onx, feeds={"input": x}, expected=expected, task=task, labels=labels,
        features=names, framework=("xgboost", version("xgboost")),
        converter=("onnxmltools", version("onnxmltools")), rows=len(x),
    )


def load_lightgbm(args, rng):
    import lightgbm as lgb
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    booster = lgb.Booster(model_file=args.model)
    dump = booster.dump_model()
    objective = str(dump.get("objective", ""))
    n = booster.num_feature()
    names = list(booster.feature_name() or [])
    if names and all(c.startswith("Column_") for c in names):
        names = []
    if any(t.get("tree_structure", {}).get("decision_type") == "==" for t in dump["tree_info"]):
        raise Refused("LightGBM categorical splits have no ONNX form in onnxmltools; encode categories before training")
    onx = convert_lightgbm(booster, initial_types=[("input", FloatTensorType([None, n]))], target_opset=min(args.opset, ML_OPSET), zipmap=False)
    by_tree, by_feature, thresholds = {}, {}, {}

    def walk(tree_index, node):
        if "split_feature" in node:
            f, t = node["split_feature"], float(node["threshold"])
            by_tree.setdefault((tree_index, f), []).append(t)
            by_feature.setdefault(f, []).append(t)
            thresholds.setdefault(f, []).append(t)
            walk(tree_index, node["left_child"])
            walk(tree_index, node["right_child"])

    for t in dump["tree_info"]:
        walk(t["tree_index"], t["tree_structure"])
    notes = []
    if not args.keep_converter_thresholds:
        changed, ambiguous = fix_leq_thresholds(onx, by_tree, by_feature)
        notes.append(f"{changed} split threshold(s) set to the float32 below LightGBM's float64 value (the converter had rounded them up)")
        if ambiguous:
            notes.append(f"{ambiguous} threshold(s) could not be matched to one source value")
    x = rows_for(args, names, n, lambda r: synth_trees(thresholds, n, r, rng))
    if objective.startswith("binary"):
        p1 = lambda: booster.predict(x)  # noqa: E731
        expected = {
            "label": lambda: (p1() > 0.5).astype(np.int64),
            "probabilities": lambda: np.stack([1 - p1(), p1()], axis=1),
        }
        task, labels = "binary", ["0", "1"]
    elif objective.startswith(("multiclass", "softmax")):
        k = int(dump.get("num_class", 1))
        expected = {"label": lambda: booster.predict(x).argmax(axis=1), "probabilities": lambda: booster.predict(x)}
        task, labels = "multiclass", [str(i) for i in range(k)]
    elif objective.startswith(("regression", "huber", "fair", "poisson", "quantile", "mape", "gamma", "tweedie", "l1", "l2")):
        expected = {"variable": lambda: booster.predict(x)}
        task, labels = "regression", []
    else:
        raise Refused(f"LightGBM objective `{objective}` has no ONNX converter (binary, multiclass and regression ones do)")
    return Imported(
        onnx=onx, feeds={"input": x}, expected=expected, task=task, labels=labels,
        features=names, framework=("lightgbm", version("lightgbm")),
        converter=("onnxmltools", version("onnxmltools")), rows=len(x), notes=notes,
    )


def load_catboost(args, rng):
    import catboost
    import onnx

    m = catboost.CatBoost()
    m.load_model(args.model, format="cbm")
    if m.get_cat_feature_indices():
        raise Refused("CatBoost's ONNX export does not take categorical features; this model has some")
    loss = str(m.get_all_params().get("loss_function", ""))
    tmp = args.out + ".catboost.onnx"
    m.save_model(tmp, format="onnx", export_parameters={"onnx_domain": "ai.catboost", "onnx_model_version": 1})
    onx = onnx.load(tmp)
    os.remove(tmp)
    strip_zipmap(onx)
    names = list(m.feature_names_ or [])
    if names and all(c.isdigit() for c in names):
        names = []
    n = len(m.feature_names_)
    borders = {}
    try:
        for f, b in enumerate(m.get_borders().values()):
            borders[f] = list(b)
    except Exception:  # older models carry no borders table
        pass
    x = rows_for(args, names, n, lambda r: synth_trees(borders, n, r, rng))
    ins = onx.graph.input[0].name
    if loss in ("Logloss", "CrossEntropy", "MultiClass", "MultiClassOneVsAll"):
        classes = [str(c) for c in (m.classes_ if getattr(m, "classes_", None) is not None and len(m.classes_) else range(2))]
        expected = {
            "label": lambda: np.asarray(m.predict(x, prediction_type="Class")).reshape(-1),
            "probabilities": lambda: m.predict(x, prediction_type="Probability"),
        }
        task = tree_task(len(classes))
    else:
        classes = []
        expected = {"predictions": lambda: m.predict(x)}
        task = "regression"
    return Imported(
        onnx=onx, feeds={ins: x}, expected=expected, task=task, labels=classes,
        features=names, framework=("catboost", version("catboost")),
        converter=("catboost", version("catboost")), rows=len(x),
    )


def sklearn_estimator(args):
    path = args.model
    if path.lower().endswith(".skops"):
        import skops.io as sio

        # skops builds objects from their state without running their
        # code; scikit-learn's, NumPy's and SciPy's own types are taken.
        untrusted = sio.get_untrusted_types(file=path)
        foreign = [t for t in untrusted if t.split(".")[0] not in ("sklearn", "numpy", "scipy")]
        if foreign and not args.trust_pickle:
            raise Refused(
                "the skops file names types outside skops' trusted set: "
                + ", ".join(foreign[:8])
                + "; pass --trust-pickle to load them"
            )
        return sio.load(path, trusted=untrusted or None), "skops"
    if not args.trust_pickle:
        raise Refused(
            f"{os.path.basename(path)} is a pickle: loading it runs any code it holds. "
            "Pass --trust-pickle if you trust its author, or save the model with skops (skops.io.dump)"
        )
    import joblib

    return joblib.load(path), "pickle"


def load_sklearn(args, rng):
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    est, how = sklearn_estimator(args)
    names = [str(c) for c in getattr(est, "feature_names_in_", [])]
    n = int(getattr(est, "n_features_in_", len(names) or 0))
    sample = read_sample(args.sample) if args.sample else None
    if names:
        if sample is None or isinstance(sample, np.ndarray):
            text = _text_columns(est)
            if text:
                raise Refused(f"this pipeline reads text column(s) {', '.join(text)}; give rows with --sample CSV|Parquet")
            x = synth_normal(n, args.rows, rng) if sample is None else sample_matrix(sample, [], n, [])
            import pandas as pd

            frame = pd.DataFrame(x, columns=names)
        else:
            missing = [c for c in names if c not in sample.columns]
            if missing:
                raise Refused(f"--sample lacks the model's feature column(s) {', '.join(missing[:5])}")
            frame = sample[names].head(args.rows).copy()
        types, feeds = [], {}
        for c in names:
            col = frame[c]
            if col.dtype == object or str(col.dtype).startswith(("string", "str", "category")):
                types.append((c, StringTensorType([None, 1])))
                feeds[c] = col.astype(str).to_numpy(dtype=object).reshape(-1, 1)
            elif str(col.dtype).startswith(("int", "Int")) and _int_ok(est):
                types.append((c, Int64TensorType([None, 1])))
                feeds[c] = col.to_numpy(dtype=np.int64).reshape(-1, 1)
            else:
                types.append((c, FloatTensorType([None, 1])))
                feeds[c] = col.to_numpy(dtype=np.float32).reshape(-1, 1)
        # The source sees what ONNX sees: float32-rounded numbers.
        source_x = frame.copy()
        for c in names:
            if feeds[c].dtype == np.float32:
                source_x[c] = feeds[c].reshape(-1).astype(np.float64)
    else:
        x = sample_matrix(sample, [], n, args.target) if sample is not None else synth_normal(n, args.rows, rng)
        x = x[: args.rows]
        types, feeds, source_x = [("input", FloatTensorType([None, n]))], {"input": x}, x
    classifier = hasattr(est, "predict_proba") and hasattr(est, "classes_")
    options = {id(_final(est)): {"zipmap": False}} if classifier else None
    onx = convert_sklearn(est, initial_types=types, target_opset={"": args.opset, "ai.onnx.ml": 3}, options=options)
    strip_zipmap(onx)
    outs = [o.name for o in onx.graph.output]
    if classifier:
        classes = [str(c) for c in est.classes_]
        expected = {outs[0]: lambda: est.predict(source_x), outs[1]: lambda: est.predict_proba(source_x)}
        task = tree_task(len(classes))
    else:
        classes = []
        expected = {outs[0]: lambda: est.predict(source_x)}
        task = "regression" if hasattr(est, "predict") and getattr(est, "_estimator_type", "") == "regressor" else None
    return Imported(
        onnx=onx, feeds=feeds, expected=expected, task=task, labels=classes,
        features=names, framework=("scikit-learn", version("sklearn")),
        converter=("skl2onnx", version("skl2onnx")), rows=len(next(iter(feeds.values()))),
        notes=[f"loaded from {how}"],
    )


def _final(est):
    steps = getattr(est, "steps", None)
    return _final(steps[-1][1]) if steps else est


def _text_columns(est):
    """Columns a ColumnTransformer sends to a text or category encoder."""
    out = []
    for step in getattr(est, "steps", [(None, est)]):
        ct = step[1]
        for _, tr, cols in getattr(ct, "transformers_", []):
            kind = type(tr).__name__
            if kind in ("OneHotEncoder", "OrdinalEncoder", "TfidfVectorizer", "CountVectorizer") or (
                hasattr(tr, "steps") and any(type(s[1]).__name__ in ("OneHotEncoder", "OrdinalEncoder") for s in tr.steps)
            ):
                out += [str(c) for c in (cols if isinstance(cols, (list, tuple, np.ndarray)) else [cols])]
    return out


def _int_ok(est):
    return False  # numbers go in as float32: every skl2onnx numeric op takes it


def load_keras(args, rng):
    import tensorflow as tf
    import tf2onnx

    if os.path.isdir(args.model):
        return load_savedmodel(args, rng)
    model = tf.keras.models.load_model(args.model, compile=False)
    specs = []
    for i, t in enumerate(model.inputs):
        shape = [None] + [d for d in t.shape[1:]]
        specs.append(tf.TensorSpec(shape, tf.as_dtype(t.dtype), name=f"input_{i}" if len(model.inputs) > 1 else "input"))
    # Traced as a function: tf2onnx's from_keras fails on Keras 3 models.
    if len(specs) == 1:
        fn = tf.function(lambda x: model(x, training=False), input_signature=specs)
    else:
        fn = tf.function(lambda *xs: model(list(xs), training=False), input_signature=specs)
    onx, _ = tf2onnx.convert.from_function(fn, input_signature=specs, opset=args.opset)
    # tf2onnx names outputs after TensorFlow's tensors (`Identity:0`).
    olds = [o.name for o in onx.graph.output]
    for i, old in enumerate(olds):
        rename_output(onx, old, "output" if len(olds) == 1 else f"output_{i}")
    feeds = {}
    for s in specs:
        feeds[s.name] = rows_for_shape(args, s, rng)
    xs = [feeds[s.name] for s in specs]
    out_names = [o.name for o in onx.graph.output]

    def run():
        y = model(xs[0] if len(xs) == 1 else xs, training=False)
        ys = y if isinstance(y, (list, tuple)) else [y]
        return [np.asarray(v) for v in ys]

    cache = {}

    def nth(i):
        def f():
            if "y" not in cache:
                cache["y"] = run()
            return cache["y"][i]

        return f

    expected = {name: nth(i) for i, name in enumerate(out_names)}
    return Imported(
        onnx=onx, feeds=feeds, expected=expected, task=None, labels=[],
        framework=("tensorflow", tf.__version__), converter=("tf2onnx", tf2onnx.__version__),
        rows=len(xs[0]), notes=[f"keras {version('keras')}"],
    )


def load_savedmodel(args, rng):
    import subprocess

    import onnx
    import tensorflow as tf
    import tf2onnx

    loaded = tf.saved_model.load(args.model)
    sigs = list(loaded.signatures.keys())
    if "serving_default" not in sigs:
        raise Refused(f"the SavedModel has no serving_default signature (it has {', '.join(sigs) or 'none'})")
    fn = loaded.signatures["serving_default"]
    specs = fn.structured_input_signature[1]
    tmp = args.out + ".savedmodel.onnx"
    r = subprocess.run(
        [sys.executable, "-m", "tf2onnx.convert", "--saved-model", args.model, "--output", tmp, "--opset", str(args.opset)],
        capture_output=True, text=True,
    )
    if r.returncode != 0:
        raise RuntimeError("tf2onnx failed:\n" + r.stderr[-4000:])
    onx = onnx.load(tmp)
    os.remove(tmp)
    feeds, named = {}, {}
    onnx_in = [i.name for i in onx.graph.input]
    for key, spec in sorted(specs.items()):
        x = rows_for_shape(args, spec, rng)
        named[key] = tf.constant(x)
        match = next((n for n in onnx_in if n.split(":")[0] == key or n == spec.name), None)
        if match is None:
            raise RuntimeError(f"no ONNX input for signature input {key} (inputs: {onnx_in})")
        feeds[match] = x
    outs = fn(**named)
    expected = {}
    for o in onx.graph.output:
        key = o.name.split(":")[0]
        if key in outs:
            expected[o.name] = (lambda v: lambda: np.asarray(v))(outs[key])
    return Imported(
        onnx=onx, feeds=feeds, expected=expected, task=None, labels=[],
        framework=("tensorflow", tf.__version__), converter=("tf2onnx", tf2onnx.__version__),
        rows=len(next(iter(feeds.values()))), notes=["SavedModel signature serving_default"],
    )


def load_torch(args, rng):
    try:
        import torch
    except ImportError:
        raise Refused("PyTorch models need torch: pass --python with an interpreter that has torch installed")
    if not args.sample or not args.sample.endswith(".npy"):
        raise Refused("a PyTorch model carries no input shape: give example rows with --sample ROWS.npy")
    x = np.load(args.sample, allow_pickle=False)[: args.rows]
    try:
        m = torch.jit.load(args.model)
        how = "TorchScript"
    except Exception:
        m = torch.export.load(args.model).module()
        how = "torch.export"
    m.eval()
    tmp = args.out + ".torch.onnx"
    t = torch.from_numpy(x)
    torch.onnx.export(m, (t,), tmp, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=args.opset, dynamo=False)
    import onnx

    onx = onnx.load(tmp)
    os.remove(tmp)
    with torch.no_grad():
        y = m(t).numpy()
    return Imported(
        onnx=onx, feeds={"input": x}, expected={"output": lambda: y}, task=None, labels=[],
        framework=("torch", torch.__version__), converter=("torch.onnx", torch.__version__),
        rows=len(x), notes=[how],
    )


def rows_for(args, names, n, synth):
    rng_rows = args.rows
    if args.sample:
        x = sample_matrix(read_sample(args.sample), names, n, args.target)
        return x[:rng_rows]
    return synth(rng_rows)


def rows_for_shape(args, spec, rng):
    dims = [int(d) if d is not None else None for d in spec.shape[1:]]
    if args.sample:
        s = read_sample(args.sample)
        if isinstance(s, np.ndarray):
            x = s
        else:
            x = s.drop(columns=[c for c in args.target if c in s.columns]).to_numpy()
        x = x[: args.rows]
        if None not in dims and int(np.prod(dims)) != int(np.prod(x.shape[1:])):
            raise Refused(f"--sample rows have shape {list(x.shape[1:])}; the model takes {dims}")
        if None not in dims:
            x = x.reshape([len(x)] + dims)
    else:
        if None in dims:
            raise Refused(f"input {spec.name} has a free dimension {dims}: give example rows with --sample")
        x = rng.standard_normal([args.rows] + dims)
    return x.astype(spec.dtype.as_numpy_dtype)


LOADERS = {
    "xgboost": load_xgboost,
    "lightgbm": load_lightgbm,
    "catboost": load_catboost,
    "sklearn": load_sklearn,
    "keras": load_keras,
    "savedmodel": load_savedmodel,
    "torch": load_torch,
}

# ---------------------------------------------------------------- parity


def compare(name, want, got, rtol, atol):
    want = np.asarray(want)
    got = np.asarray(got)
    entry = {"name": name, "dtype": str(got.dtype), "shape": list(got.shape)}
    if want.dtype.kind in "OUSb" or got.dtype.kind in "OUSb" or (want.dtype.kind in "iu" and got.dtype.kind in "iu"):
        a = want.reshape(-1).astype(str)
        b = got.reshape(-1).astype(str)
        if a.shape != b.shape:
            entry.update(kind="labels", agreement=0.0, within=False, note=f"{a.shape[0]} source values, {b.shape[0]} ONNX")
            return entry
        # Integer labels against class names ("1" vs 1) compare as text.
        agree = float(np.mean(a == b)) if len(a) else 1.0
        entry.update(kind="labels", agreement=agree, within=agree == 1.0, mismatched=int(np.sum(a != b)))
        return entry
    a = want.astype(np.float64).reshape(len(want), -1) if want.ndim else want.reshape(1, 1)
    b = got.astype(np.float64).reshape(len(got), -1) if got.ndim else got.reshape(1, 1)
    if a.size != b.size:
        entry.update(kind="values", within=False, note=f"source shape {list(want.shape)}, ONNX shape {list(got.shape)}")
        return entry
    b = b.reshape(a.shape)
    diff = np.abs(a - b)
    worst = int(np.argmax(diff)) if diff.size else 0
    both_nan = np.isnan(a) & np.isnan(b)
    ok = bool(np.all((diff <= atol + rtol * np.abs(a)) | both_nan))
    rel = diff / np.maximum(np.abs(a), 1e-12)
    entry.update(
        kind="values",
        max_abs=float(np.nanmax(diff)) if diff.size else 0.0,
        max_rel=float(np.nanmax(np.where(both_nan, 0, rel))) if diff.size else 0.0,
        rows_outside=int(np.sum(~np.all((diff <= atol + rtol * np.abs(a)) | both_nan, axis=1))),
        worst_row=int(worst // max(a.shape[1], 1)),
        within=ok,
    )
    return entry


def reference(imp):
    """Per-feature histograms of the sample (decile edges), the shape drift
    monitoring reads; only for one 2-D numeric input."""
    if len(imp.feeds) != 1:
        return None
    x = next(iter(imp.feeds.values()))
    if x.ndim != 2 or x.dtype.kind != "f" or len(x) < 20:
        return None
    out = []
    for j in range(x.shape[1]):
        col = x[:, j].astype(np.float64)
        col = col[np.isfinite(col)]
        if not len(col):
            return None
        edges = np.unique(np.quantile(col, np.linspace(0, 1, 11)))
        if len(edges) < 2:
            edges = np.array([col[0], col[0]])
        counts, _ = np.histogram(col, bins=edges)
        name = imp.features[j] if j < len(imp.features) else f"x{j}"
        out.append({"name": name, "histogram": {"edges": edges.tolist(), "counts": counts.tolist()}})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--format", required=True, choices=sorted(LOADERS))
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--sample")
    ap.add_argument("--target", action="append", default=[])
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--atol", type=float, default=1e-5)
    ap.add_argument("--trust-pickle", action="store_true")
    ap.add_argument("--keep-converter-thresholds", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    try:
        imp = LOADERS[args.format](args, rng)
    except Refused as e:
        log(f"refused: {e}")
        return 2
    t_convert = time.time() - t0
    import onnx
    import onnxruntime as ort

    batch_outputs(imp.onnx)
    onnx.save(imp.onnx, args.out)
    sess = ort.InferenceSession(args.out, providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, imp.feeds)))
    parity = []
    for name, source in imp.expected.items():
        if name not in got:
            parity.append({"name": name, "kind": "missing", "within": False, "note": "the ONNX model has no such output"})
            continue
        parity.append(compare(name, source(), got[name], args.rtol, args.atol))
    report = {
        "source": {
            "file": os.path.abspath(args.model),
            "sha256": sha256(args.model),
            "format": args.format,
            "framework": imp.framework[0],
            "framework_version": imp.framework[1],
        },
        "converter": {"name": imp.converter[0], "version": imp.converter[1], "onnx": onnx.__version__, "onnxruntime": ort.__version__},
        "task": imp.task,
        "labels": imp.labels,
        "features": imp.features,
        "inputs": [
            {"name": i.name, "dtype": i.type, "shape": [d if isinstance(d, int) else None for d in i.shape]}
            for i in sess.get_inputs()
        ],
        "outputs": [
            {"name": o.name, "dtype": o.type, "shape": [d if isinstance(d, int) else None for d in o.shape]}
            for o in sess.get_outputs()
        ],
        "parity": {"rows": imp.rows, "from": "sample" if args.sample else "synthesized", "rtol": args.rtol, "atol": args.atol, "outputs": parity},
        "reference": reference(imp) if args.sample else None,
        "notes": imp.notes,
        "seconds": {"convert": round(t_convert, 3), "total": round(time.time() - t0, 3)},
    }
    with open(args.report, "w") as fh:
        json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

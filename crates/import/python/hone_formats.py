"""hone import's loaders, one per source format: each loads the model in its
own framework, converts it with that field's converter and says how to run
the source on the same rows."""

import json
import os
import sys

import numpy as np

from hone_common import (
    ML_OPSET,
    Imported,
    Refused,
    fix_leq_thresholds,
    read_sample,
    rename_output,
    rows_for,
    rows_for_shape,
    sample_matrix,
    strip_zipmap,
    synth_normal,
    synth_trees,
    tree_task,
    version,
)


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
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    est, how = sklearn_estimator(args)
    names = [str(c) for c in getattr(est, "feature_names_in_", [])]
    n = int(getattr(est, "n_features_in_", len(names) or 0))
    sample = read_sample(args.sample) if args.sample else None
    if names and not _selects_columns(est):
        # Fitted on a DataFrame but reading every column as numbers: one
        # matrix input (features in the card, in this order) is easier to
        # call than one input per column.
        import pandas as pd

        if sample is None:
            x = _synth(est, n, args.rows, rng)
        else:
            x = sample_matrix(sample, names if not isinstance(sample, np.ndarray) else [], n, args.target)
        x = x[: args.rows]
        types, feeds = [("input", FloatTensorType([None, n]))], {"input": x}
        source_x = pd.DataFrame(x.astype(np.float64), columns=names)
    elif names:
        if sample is None or isinstance(sample, np.ndarray):
            text = _text_columns(est)
            if text:
                raise Refused(f"this pipeline reads text column(s) {', '.join(text)}; give rows with --sample CSV|Parquet")
            x = _synth(est, n, args.rows, rng) if sample is None else sample_matrix(sample, [], n, [])
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
            else:
                types.append((c, FloatTensorType([None, 1])))
                feeds[c] = col.to_numpy(dtype=np.float32).reshape(-1, 1)
        # The source sees what ONNX sees: float32-rounded numbers.
        source_x = frame.copy()
        for c in names:
            if feeds[c].dtype == np.float32:
                source_x[c] = feeds[c].reshape(-1).astype(np.float64)
    else:
        x = sample_matrix(sample, [], n, args.target) if sample is not None else _synth(est, n, args.rows, rng)
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


def _selects_columns(est):
    """Whether a pipeline picks its columns by name (a ColumnTransformer)."""
    steps = [s[1] for s in getattr(est, "steps", [])] or [est]
    return any(type(s).__name__ == "ColumnTransformer" for s in steps)


def _synth(est, n, rows, rng):
    """Rows for a numeric model without a sample: around the training
    data's mean and spread where a leading scaler kept them, else N(0, 1)."""
    first = est.steps[0][1] if hasattr(est, "steps") else est
    mean, scale = getattr(first, "mean_", None), getattr(first, "scale_", None)
    x = synth_normal(n, rows, rng)
    if mean is not None and scale is not None and len(mean) == n == len(scale):
        x = (x * np.asarray(scale) + np.asarray(mean)).astype(np.float32)
    return x


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
    t = torch.from_numpy(x)
    tmp = args.out + ".torch.onnx"
    try:
        m = torch.jit.load(args.model)
        how = "TorchScript"
    except Exception:
        m = None
    if m is not None:
        m.eval()
        torch.onnx.export(m, (t,), tmp, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                          opset_version=args.opset, dynamo=False)
    else:
        # A torch.export program converts through the dynamo exporter, with
        # the dynamic dimensions it was exported with.
        ep = torch.export.load(args.model)
        m = ep.module()
        how = "torch.export"
        torch.onnx.export(ep, (t,), tmp, input_names=["input"], output_names=["output"],
                          opset_version=max(args.opset, 18), dynamo=True)
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


LOADERS = {
    "xgboost": load_xgboost,
    "lightgbm": load_lightgbm,
    "catboost": load_catboost,
    "sklearn": load_sklearn,
    "keras": load_keras,
    "savedmodel": load_savedmodel,
    "torch": load_torch,
}

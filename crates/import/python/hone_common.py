"""What hone import's converters share: the refusal, sample rows (read or
synthesized), and the ONNX fixes applied after a converter (ZipMap removed,
batch dimensions freed, LightGBM thresholds floored to float32)."""

import hashlib
import os
import sys

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
    try:
        if low.endswith(".npy"):
            out = np.load(path, allow_pickle=False)
        else:
            import pandas as pd

            if low.endswith(".parquet") or low.endswith(".pq"):
                out = pd.read_parquet(path)
            else:
                out = pd.read_csv(path)
    except Exception as e:  # the file's fault, not the converter's
        raise Refused(f"--sample {path}: {e}")
    if len(out) == 0:
        raise Refused(f"--sample {path} has no rows")
    return out


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

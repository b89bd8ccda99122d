//! Models as other toolchains write them: weights in `Constant` nodes, old
//! opsets whose ops changed signature, values float16 cannot hold. The
//! canonical form must load and compute what the input computes, and the
//! passes must work from it.

use hone_core::Tensor;
use hone_onnx::proto::{ModelProto, OperatorSetIdProto};
use hone_onnx::{Attr, elem, tensor_f32};
use hone_onnx::{Dim, GraphBuilder};
use hone_optimize::{calibrate, canon, fp16, opset, qdq};
use hone_runtime::SessionConfig;

mod common;
use common::run;

fn input(rows: usize, cols: usize) -> Tensor {
    let v: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    Tensor::from_wire_bytes(
        hone_core::DataType::F32,
        vec![rows as i64, cols as i64],
        bytes.into(),
    )
    .unwrap()
}

/// A [1, 2, 4, 4] image of these 32 values.
fn image(v: &[f32]) -> Tensor {
    let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
    Tensor::from_wire_bytes(hone_core::DataType::F32, vec![1, 2, 4, 4], bytes.into()).unwrap()
}

/// Input `x` [1, 2, 4, 4] and a padded 3×3 Conv to 4 channels with
/// weights from `seed`; returns the Conv's output.
fn image_conv(g: &mut GraphBuilder, seed: usize, out: Option<&str>) -> String {
    let x = g.input(
        "x",
        elem::FLOAT,
        &[Dim::Fixed(1), Dim::Fixed(2), Dim::Fixed(4), Dim::Fixed(4)],
    );
    let w = g.initializer(tensor_f32("w", &[4, 2, 3, 3], &weights(72, seed)));
    let b = g.initializer(tensor_f32("b", &[4], &weights(4, seed + 1)));
    g.node(
        "Conv",
        &[&x, &w, &b],
        out,
        vec![("pads", Attr::Ints(vec![1, 1, 1, 1]))],
    )
}

/// The quantized model `q` stays within 5 % of the output spread of `m` on `x`.
fn assert_within_5_percent(m: &ModelProto, q: &ModelProto, x: &Tensor) {
    let (a, b) = (run(m, x), run(q, x));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f32::max);
    let spread = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(worst < 0.05 * spread, "{worst} of {spread}");
}

fn weights(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 - 0.5) * 0.4)
        .collect()
}

/// MinMax ranges of the activations static int8 quantizes, on one batch.
fn activation_ranges(m: &ModelProto, x: &Tensor) -> calibrate::Ranges {
    calibrate::calibrate(
        m,
        &calibrate::activation_tensors(m).unwrap(),
        &[vec![x.clone()]],
        calibrate::Method::MinMax,
        &SessionConfig::default(),
    )
    .unwrap()
}

fn static_opts() -> qdq::StaticOptions {
    qdq::StaticOptions {
        reduce_range: qdq::StaticOptions::needs_reduce_range(),
        ..Default::default()
    }
}

fn with_opset(mut m: ModelProto, v: i64) -> ModelProto {
    m.opset_import = vec![OperatorSetIdProto {
        domain: String::new(),
        version: v,
    }];
    m
}

/// A paddle2onnx-style model at opset 12: every weight a Constant node,
/// Unsqueeze/Squeeze with an `axes` attribute, Softmax over axis 1 of a
/// rank-3 tensor (flattening semantics before opset 13).
fn exporter_style_model() -> ModelProto {
    let mut g = GraphBuilder::new("exported");
    let x = g.input(
        "x",
        elem::FLOAT,
        &[Dim::Named("batch".into()), Dim::Fixed(16)],
    );
    let w1 = g.node(
        "Constant",
        &[],
        Some("w1"),
        vec![(
            "value",
            Attr::Tensor(Box::new(tensor_f32("w1v", &[16, 32], &weights(512, 1)))),
        )],
    );
    let b1 = g.node(
        "Constant",
        &[],
        Some("b1"),
        vec![(
            "value",
            Attr::Tensor(Box::new(tensor_f32("b1v", &[32], &weights(32, 2)))),
        )],
    );
    let h = g.node("MatMul", &[&x, &w1], None, vec![]);
    let h = g.node("Add", &[&h, &b1], None, vec![]);
    let h = g.node("Relu", &[&h], None, vec![]);
    let w2 = g.node(
        "Constant",
        &[],
        Some("w2"),
        vec![(
            "value",
            Attr::Tensor(Box::new(tensor_f32("w2v", &[32, 8], &weights(256, 3)))),
        )],
    );
    let h = g.node("MatMul", &[&h, &w2], None, vec![]);
    let h = g.node(
        "Unsqueeze",
        &[&h],
        None,
        vec![("axes", Attr::Ints(vec![1]))],
    );
    let h = g.node("Softmax", &[&h], None, vec![("axis", Attr::Int(1))]);
    g.node(
        "Squeeze",
        &[&h],
        Some("y"),
        vec![("axes", Attr::Ints(vec![1]))],
    );
    g.output(
        "y",
        elem::FLOAT,
        &[Dim::Named("batch".into()), Dim::Fixed(8)],
    );
    with_opset(g.finish("test", &[]), 12)
}

#[test]
fn constant_weights_and_an_old_opset_become_the_canonical_form() {
    let m = exporter_style_model();
    let x = input(6, 16);
    let base = run(&m, &x);
    let c = canon::canonicalize(&hone_onnx::encode(&m), &SessionConfig::default()).unwrap();
    let g = c.model.graph.as_ref().unwrap();
    assert!(g.node.iter().all(|n| n.op_type != "Constant"), "{g:?}");
    assert!(g.initializer.len() >= 3);
    assert_eq!(c.opset, 13);
    assert!(c.per_channel_qdq());
    let steps = c.steps.join("\n");
    assert!(steps.contains("3 Constant nodes"), "{steps}");
    assert!(
        steps.contains("Squeeze") && steps.contains("Unsqueeze") && steps.contains("Softmax"),
        "{steps}"
    );
    // Same function: Softmax keeps its pre-13 meaning over the flattened axes.
    let out = run(&c.model, &x);
    assert_eq!(out.len(), base.len());
    for (a, b) in base.iter().zip(&out) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    // The passes find the weights now: static int8 stores them as int8.
    let ranges = activation_ranges(&c.model, &x);
    let (q, nodes) = qdq::quantize_static(&c.model, &ranges, &static_opts()).unwrap();
    assert!(nodes.len() >= 2, "{nodes:?}");
    let gq = q.graph.as_ref().unwrap();
    assert!(
        gq.initializer
            .iter()
            .filter(|t| t.data_type == elem::INT8)
            .count()
            >= 2
    );
    let qo = run(&q, &x);
    let worst = base
        .iter()
        .zip(&qo)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst < 0.05, "{worst} {base:?} {qo:?}");
}

#[test]
fn an_unconvertible_opset_stays_and_qdq_is_per_tensor_there() {
    // Resize-10's sampling has no exact Resize-11 spelling: the model keeps
    // opset 10 and static int8 uses per-tensor QDQ, which opset 10 has.
    let mut g = GraphBuilder::new("old");
    let h = image_conv(&mut g, 5, None);
    let s = g.initializer(tensor_f32("scales", &[4], &[1.0, 1.0, 2.0, 2.0]));
    g.node(
        "Resize",
        &[&h, &s],
        Some("y"),
        vec![("mode", Attr::String("nearest".into()))],
    );
    g.output(
        "y",
        elem::FLOAT,
        &[Dim::Fixed(1), Dim::Fixed(4), Dim::Fixed(8), Dim::Fixed(8)],
    );
    let m = with_opset(g.finish("test", &[]), 10);
    assert!(
        opset::upgrade(&m, 13)
            .unwrap_err()
            .to_string()
            .contains("Resize")
    );
    let c = canon::canonicalize(&hone_onnx::encode(&m), &SessionConfig::default()).unwrap();
    assert_eq!(c.opset, 10);
    assert!(!c.per_channel_qdq());
    assert!(c.opset_kept.as_deref().unwrap().contains("Resize"));
    let x = image(
        &(0..32)
            .map(|i| (i as f32 / 16.0) - 1.0)
            .collect::<Vec<f32>>(),
    );
    let ranges = activation_ranges(&c.model, &x);
    let (q, _) = qdq::quantize_static(&c.model, &ranges, &static_opts()).unwrap();
    assert_eq!(opset::default_opset(&q), 10);
    let gq = q.graph.as_ref().unwrap();
    assert!(
        gq.node
            .iter()
            .filter(|n| n.op_type == "DequantizeLinear")
            .all(|n| n.attribute.iter().all(|a| a.name != "axis"))
    );
    // It loads (ORT validates opset-10 QDQ) and stays close.
    assert_within_5_percent(&m, &q, &x);
}

#[test]
fn fp16_finds_and_keeps_the_nodes_that_overflow() {
    // y = (x · 1e5) · 1e-5: the middle value is far beyond float16's 65504.
    let mut g = GraphBuilder::new("overflow");
    let x = g.input(
        "x",
        elem::FLOAT,
        &[Dim::Named("batch".into()), Dim::Fixed(16)],
    );
    let up = g.initializer(tensor_f32("up", &[], &[1e5]));
    let down = g.initializer(tensor_f32("down", &[], &[1e-5]));
    let h = g.node("Mul", &[&x, &up], Some("big"), vec![]);
    let h = g.node("Mul", &[&h, &down], None, vec![]);
    g.node("Relu", &[&h], Some("y"), vec![]);
    g.output(
        "y",
        elem::FLOAT,
        &[Dim::Named("batch".into()), Dim::Fixed(16)],
    );
    let m = g.finish("test", &[]);
    let x = input(4, 16);
    let base = run(&m, &x);
    let cfg = SessionConfig::default();
    let types = fp16::tensor_types(&m, &cfg).unwrap();
    let plain = run(&fp16::convert(&m, &types, &Default::default()).unwrap(), &x);
    assert!(plain.iter().any(|v| !v.is_finite()), "{plain:?}");
    let ranges = calibrate::calibrate(
        &m,
        &fp16::float_outputs(&m, &types),
        &[vec![x.clone()]],
        calibrate::Method::MinMax,
        &cfg,
    )
    .unwrap();
    let over = fp16::overflowing_nodes(&m, &ranges);
    // The producer of the big value and its reader: a float16 copy of the
    // value between them would already be infinite.
    assert_eq!(over, vec!["Mul_1".to_string(), "Mul_2".to_string()]);
    let keep = over.into_iter().collect();
    let kept = fp16::convert_keeping(&m, &types, &Default::default(), &keep).unwrap();
    let out = run(&kept, &x);
    let bad = out.iter().filter(|v| !v.is_finite()).count();
    let worst = base
        .iter()
        .zip(&out)
        .filter(|(_, b)| b.is_finite())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert_eq!(bad, 0, "{out:?}");
    assert!(worst < 1e-2, "{worst}");
}

#[test]
fn silu_is_quantized_and_a_constant_factor_is_not() {
    // YOLOv8's activation, x · sigmoid(x): both factors are activations, so
    // Sigmoid and Mul get QDQ pairs (ONNX Runtime runs them as QLinearSigmoid
    // and QLinearMul). A Mul by a constant gets none: it would stay a float
    // Mul between the pairs.
    let mut g = GraphBuilder::new("silu");
    let x = g.input(
        "x",
        elem::FLOAT,
        &[Dim::Named("batch".into()), Dim::Fixed(16)],
    );
    let w1 = g.initializer(tensor_f32("w1", &[16, 32], &weights(512, 7)));
    let h = g.node("MatMul", &[&x, &w1], Some("h"), vec![]);
    let s = g.node("Sigmoid", &[&h], Some("s"), vec![]);
    let a = g.node("Mul", &[&h, &s], Some("silu"), vec![]);
    let half = g.initializer(tensor_f32("half", &[], &[0.5]));
    let a = g.node("Mul", &[&a, &half], Some("scaled"), vec![]);
    let w2 = g.initializer(tensor_f32("w2", &[32, 8], &weights(256, 8)));
    g.node("MatMul", &[&a, &w2], Some("y"), vec![]);
    g.output(
        "y",
        elem::FLOAT,
        &[Dim::Named("batch".into()), Dim::Fixed(8)],
    );
    let m = with_opset(g.finish("test", &[]), 13);
    let x = input(8, 16);
    let ranges = activation_ranges(&m, &x);
    let (q, nodes) = qdq::quantize_static(&m, &ranges, &static_opts()).unwrap();
    let gq = q.graph.as_ref().unwrap();
    let by_out = |o: &str| gq.node.iter().find(|n| n.output[0] == o).unwrap();
    let gm = m.graph.as_ref().unwrap();
    let quantized: Vec<&str> = nodes
        .iter()
        .filter_map(|name| gm.node.iter().find(|n| &n.name == name))
        .map(|n| n.output[0].as_str())
        .collect();
    assert!(
        quantized.contains(&"s") && quantized.contains(&"silu"),
        "{quantized:?}"
    );
    assert!(!quantized.contains(&"scaled"), "{quantized:?}");
    let reads_dq = |n: &hone_onnx::proto::NodeProto, k: usize| {
        gq.node
            .iter()
            .any(|p| p.op_type == "DequantizeLinear" && p.output[0] == n.input[k])
    };
    let silu = by_out("silu");
    assert!(reads_dq(silu, 0) && reads_dq(silu, 1));
    let scaled = by_out("scaled");
    assert!(!reads_dq(scaled, 1));
    assert_within_5_percent(&m, &q, &x);
}

#[test]
fn split_resize_and_slice_take_their_input_scale() {
    // A detector neck's data movement: with the input's scale and zero
    // point on every output, ONNX Runtime drops the Q/DQ pairs and runs
    // these ops on int8 (each its own scale would requantize instead).
    let mut g = GraphBuilder::new("neck");
    let h = image_conv(&mut g, 9, Some("h"));
    g.node("Split", &[&h], Some("a"), vec![("axis", Attr::Int(1))]);
    g.node(
        "Concat",
        &["b2", "a"],
        Some("c"),
        vec![("axis", Attr::Int(1))],
    );
    let s = g.initializer(tensor_f32("scales", &[4], &[1.0, 1.0, 2.0, 2.0]));
    g.node(
        "Resize",
        &["c", "", &s],
        Some("r"),
        vec![("mode", Attr::String("nearest".into()))],
    );
    let st = g.initializer(hone_onnx::tensor_i64("st", &[1], &[0]));
    let en = g.initializer(hone_onnx::tensor_i64("en", &[1], &[2]));
    let ax = g.initializer(hone_onnx::tensor_i64("ax", &[1], &[1]));
    g.node("Slice", &["r", &st, &en, &ax], Some("sl"), vec![]);
    let w2 = g.initializer(tensor_f32("w2", &[2, 2, 1, 1], &weights(4, 11)));
    g.node("Conv", &["sl", &w2], Some("y"), vec![]);
    g.output(
        "y",
        elem::FLOAT,
        &[Dim::Fixed(1), Dim::Fixed(2), Dim::Fixed(8), Dim::Fixed(8)],
    );
    let mut m = with_opset(g.finish("test", &[]), 13);
    let gm = m.graph.as_mut().unwrap();
    let split = gm.node.iter_mut().find(|n| n.op_type == "Split").unwrap();
    split.output.push("b2".into());
    let x = image(
        &(0..32)
            .map(|i| ((i * 7 % 32) as f32 / 16.0) - 1.0)
            .collect::<Vec<f32>>(),
    );
    let ranges = activation_ranges(&m, &x);
    let (q, _) = qdq::quantize_static(&m, &ranges, &static_opts()).unwrap();
    let gq = q.graph.as_ref().unwrap();
    let scale_of = |t: &str| -> f32 {
        let qn = gq
            .node
            .iter()
            .find(|n| n.op_type == "QuantizeLinear" && n.input[0] == t)
            .unwrap_or_else(|| panic!("{t} is not quantized"));
        let s = gq
            .initializer
            .iter()
            .find(|i| i.name == qn.input[1])
            .unwrap();
        f32::from_le_bytes(s.raw_data[..4].try_into().unwrap())
    };
    for (out, from) in [("a", "h"), ("b2", "h"), ("r", "c"), ("sl", "r")] {
        assert_eq!(scale_of(out), scale_of(from), "{out} vs {from}");
    }
    assert_within_5_percent(&m, &q, &x);
}

//! Every pass on real models: the output loads in ONNX Runtime (which
//! validates the graph) and stays numerically close to the fp32 model on
//! fixed inputs, within a bound per technique.

use std::path::PathBuf;

use hone_core::{Backend, Tensor};
use hone_data::npy;
use hone_onnx::proto::ModelProto;
use hone_optimize::{calibrate, dynamic, prune, qdq, s2d};
use hone_runtime::{OrtBackend, SessionConfig};

/// Small models committed beside the tests (see fixtures/README.md).
fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

mod common;
use common::run;

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn ops(m: &ModelProto) -> Vec<String> {
    m.graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .map(|n| n.op_type.clone())
        .collect()
}

fn mlp() -> (ModelProto, Tensor) {
    let m = hone_onnx::load(&fixtures().join("mlp.onnx")).unwrap();
    let x = npy::read(&fixtures().join("mlp_input.npy")).unwrap();
    (m, x)
}

fn digits() -> (ModelProto, Tensor) {
    let m = hone_onnx::load(&fixtures().join("digits_cnn.onnx")).unwrap();
    let x = npy::read(&fixtures().join("digits_cnn_input.npy")).unwrap();
    (m, x)
}

#[test]
fn dynamic_int8_quantizes_gemm_and_stays_close() {
    let (m, x) = mlp();
    let base = run(&m, &x);
    for per_channel in [false, true] {
        let (q, nodes) = dynamic::quantize_dynamic(
            &m,
            &dynamic::DynamicOptions {
                per_channel,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(nodes.len(), 3, "all three Gemm layers");
        assert!(!ops(&q).contains(&"Gemm".to_string()));
        assert_eq!(ops(&q).iter().filter(|o| *o == "MatMulInteger").count(), 3);
        // Probabilities: int8 moves them by at most a few hundredths.
        let d = max_abs(&base, &run(&q, &x));
        assert!(d < 0.05, "per_channel={per_channel}: {d}");
    }
    // Excluded nodes stay fp32.
    let first = m
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .find(|n| n.op_type == "Gemm")
        .unwrap()
        .name
        .clone();
    let opts = dynamic::DynamicOptions {
        exclude: [first].into(),
        ..Default::default()
    };
    let (_, nodes) = dynamic::quantize_dynamic(&m, &opts).unwrap();
    assert_eq!(nodes.len(), 2);
}

#[test]
fn static_qdq_calibrates_and_stays_close() {
    let (m, x) = digits();
    let base = run(&m, &x);
    let tensors = calibrate::activation_tensors(&m).unwrap();
    assert!(tensors.contains(&"input".to_string()));
    for method in [
        calibrate::Method::MinMax,
        calibrate::Method::Percentile(99.999),
        calibrate::Method::Entropy,
    ] {
        let ranges = calibrate::calibrate(
            &m,
            &tensors,
            &[vec![x.clone()]],
            method,
            &SessionConfig::default(),
        )
        .unwrap();
        let (lo, hi) = ranges["input"];
        assert!(lo <= 0.0 && hi > 0.0 && hi <= 1.0, "{lo} {hi}");
        let (q, nodes) = qdq::quantize_static(&m, &ranges, &qdq::StaticOptions::default()).unwrap();
        assert!(nodes.len() >= 3);
        assert!(ops(&q).contains(&"QuantizeLinear".to_string()));
        let out = run(&q, &x);
        // Logits of order 10: int8 keeps every row's argmax here.
        // Relative to the logits' spread.
        let spread = base.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = max_abs(&base, &out) / spread;
        eprintln!(
            "{method:?}: max |diff| {:.3} of logits up to {spread:.1}",
            d * spread
        );
        // onnxruntime.quantization.quantize_static gives 2.85 of 25.9 (0.11) on the same data.
        assert!(d < 0.15, "{method:?}: {d}");
        for (a, b) in base.chunks(10).zip(out.chunks(10)) {
            let am = |v: &[f32]| (0..10).fold(0, |m, i| if v[i] > v[m] { i } else { m });
            assert_eq!(am(a), am(b), "{method:?}");
        }
    }
}

#[test]
fn structured_pruning_shrinks_the_mlp() {
    let (m, x) = mlp();
    let before = hone_onnx::encode(&m).len();
    let (p, kept) = prune::structured(&m, 0.5).unwrap();
    assert_eq!(kept, vec![32, 32]);
    let after = hone_onnx::encode(&p).len();
    assert!(after * 2 <= before + 1024, "{before} -> {after}");
    // Without fine-tuning outputs move, but the model still runs on the same inputs.
    assert_eq!(run(&p, &x).len(), run(&m, &x).len());
    // A model without Gemm chains is refused with a reason.
    assert!(prune::structured(&digits().0, 0.5).is_err());
}

#[test]
fn magnitude_pruning_zeroes_the_smallest_weights() {
    let (m, x) = mlp();
    let (p, zeroed) = prune::magnitude(&m, 0.3).unwrap();
    let weights = |m: &ModelProto| -> Vec<(String, Vec<f32>)> {
        let g = m.graph.as_ref().unwrap();
        let names: Vec<&str> = g
            .node
            .iter()
            .filter(|n| n.op_type == "Gemm")
            .map(|n| n.input[1].as_str())
            .collect();
        g.initializer
            .iter()
            .filter(|t| names.contains(&t.name.as_str()))
            .map(|t| (t.name.clone(), hone_onnx::to_f32(t).unwrap()))
            .collect()
    };
    let (before, after) = (weights(&m), weights(&p));
    assert_eq!(before.len(), 3, "the MLP's three Gemm weights");
    let mut total = 0;
    for ((name, w), (_, pw)) in before.iter().zip(&after) {
        let k = (w.len() as f64 * 0.3).floor() as usize;
        let gone: Vec<usize> = (0..w.len())
            .filter(|&i| pw[i] == 0.0 && w[i] != 0.0)
            .collect();
        assert_eq!(gone.len(), k, "{name}: 30 % of {} weights zeroed", w.len());
        // Every zeroed weight is no larger than every kept one, and kept
        // weights are unchanged.
        let largest_gone = gone.iter().map(|&i| w[i].abs()).fold(0.0, f32::max);
        for i in (0..w.len()).filter(|i| !gone.contains(i)) {
            assert_eq!(pw[i], w[i], "{name}[{i}] changed");
            assert!(
                w[i].abs() >= largest_gone,
                "{name}[{i}] kept though smaller"
            );
        }
        total += k;
    }
    assert_eq!(zeroed, total);
    let d = max_abs(&run(&m, &x), &run(&p, &x));
    assert!(d < 0.2, "{d}");
}

#[test]
fn fp16_keeps_fp32_edges_and_stays_close() {
    use hone_optimize::fp16;
    for (m, x, bound) in [(mlp().0, mlp().1, 1e-2), (digits().0, digits().1, 5e-2)] {
        let base = run(&m, &x);
        let types = fp16::tensor_types(&m, &SessionConfig::default()).unwrap();
        let h = fp16::convert(&m, &types, &Default::default()).unwrap();
        // Inputs and outputs keep their fp32 names and types; weights are halves.
        let g = h.graph.as_ref().unwrap();
        assert!(
            g.initializer
                .iter()
                .all(|t| t.data_type != hone_onnx::elem::FLOAT)
        );
        assert!(ops(&h).iter().filter(|o| *o == "Cast").count() >= 2);
        let out = run(&h, &x);
        let spread = base.iter().fold(1f32, |a, v| a.max(v.abs()));
        assert!(
            max_abs(&base, &out) / spread < bound,
            "{}",
            max_abs(&base, &out)
        );
        // A blocked op runs in fp32 between casts and the model still loads.
        let block = ["Relu".to_string()].into();
        let h = fp16::convert(&m, &types, &block).unwrap();
        assert_eq!(run(&h, &x).len(), base.len());
        // With the input's only reader blocked (mlp: Sub, digits: Conv), the
        // input is read in fp32 and no cast of it is left dangling.
        let first = m.graph.as_ref().unwrap().node[0].op_type.clone();
        let h = fp16::convert(&m, &types, &[first].into()).unwrap();
        let g = h.graph.as_ref().unwrap();
        for n in g.node.iter().filter(|n| n.op_type == "Cast") {
            let o = &n.output[0];
            assert!(
                g.node.iter().any(|r| r.input.contains(o)) || g.output.iter().any(|v| &v.name == o),
                "{} is never read",
                n.name
            );
        }
        assert_eq!(run(&h, &x).len(), base.len());
    }
}

#[test]
fn embedding_tables_become_int8() {
    use hone_onnx::{Dim, GraphBuilder, elem};
    let mut g = GraphBuilder::new("emb");
    let ids = g.input("ids", elem::INT64, &[Dim::Named("n".into())]);
    let table: Vec<f32> = (0..1000 * 4)
        .map(|i| ((i % 97) as f32 - 48.0) / 10.0)
        .collect();
    let t = g.initializer(hone_onnx::tensor_f32("table", &[1000, 4], &table));
    g.node("Gather", &[&t, &ids], Some("out"), vec![]);
    g.output("out", elem::FLOAT, &[Dim::Named("n".into()), Dim::Fixed(4)]);
    let m = g.finish("test", &[]);
    let x = hone_core::Tensor::from_wire_bytes(
        hone_core::DataType::I64,
        vec![3],
        [5i64, 500, 999]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
            .into(),
    )
    .unwrap();
    let opts = dynamic::DynamicOptions {
        embeddings: true,
        ..Default::default()
    };
    let (q, nodes) = dynamic::quantize_dynamic(&m, &opts).unwrap();
    assert_eq!(nodes.len(), 1);
    assert!(hone_onnx::encode(&q).len() * 3 < hone_onnx::encode(&m).len());
    // One scale for the table: max |v| = 4.8, so steps of 4.8 / 127.
    assert!(max_abs(&run(&m, &x), &run(&q, &x)) <= 4.8 / 127.0 / 2.0 + 1e-6);
}

/// A stem: input [1, c, h, w] → Conv(k×k, stride, pad) + bias → Relu.
fn stem(c: i64, h: i64, w: i64, k: i64, stride: i64, pad: i64) -> ModelProto {
    use hone_onnx::{Attr, Dim, GraphBuilder, elem};
    let mut g = GraphBuilder::new("stem");
    let x = g.input(
        "input",
        elem::FLOAT,
        &[Dim::Fixed(1), Dim::Fixed(c), Dim::Fixed(h), Dim::Fixed(w)],
    );
    let n = (8 * c * k * k) as usize;
    // Mostly small weights with a few large ones, as in trained convs, and
    // (in `image`) pixels in [0, 1]: full-range weights against uint8 inputs
    // near 255 saturate the int16 pair sums of ORT's u8×s8 kernel on CPUs
    // without VNNI (VPMADDUBSW), and the test would measure that instead.
    let wv: Vec<f32> = (0..n)
        .map(|i| (((i * 37 % 101) as f32 - 50.0) / 50.0).powi(3))
        .collect();
    let wt = g.initializer(hone_onnx::tensor_f32("w", &[8, c, k, k], &wv));
    let b = g.initializer(hone_onnx::tensor_f32("b", &[8], &[0.1; 8]));
    let y = g.node(
        "Conv",
        &[&x, &wt, &b],
        None,
        vec![
            ("kernel_shape", Attr::Ints(vec![k, k])),
            ("strides", Attr::Ints(vec![stride, stride])),
            ("pads", Attr::Ints(vec![pad; 4])),
        ],
    );
    let out = g.node("Relu", &[&y], Some("output"), vec![]);
    g.output(&out, elem::FLOAT, &[]);
    g.finish("test", &[])
}

fn image(c: i64, h: i64, w: i64) -> Tensor {
    let v: Vec<f32> = (0..(c * h * w) as usize)
        .map(|i| ((i * 7919 % 211) as f32 / 210.0).powi(3))
        .collect();
    Tensor::from_f32(vec![1, c, h, w], &v).unwrap()
}

#[test]
fn space_to_depth_stems_are_exact_and_skip_what_they_cannot_rewrite() {
    // resnet's 7×7/2 pad 3 at even and odd sizes, a 3×3/2 stem, and an even
    // kernel on an even padded size.
    for (c, h, w, k, pad) in [
        (3, 16, 16, 7, 3),
        (3, 17, 15, 7, 3),
        (3, 12, 13, 3, 1),
        (1, 10, 10, 4, 1),
    ] {
        let m = stem(c, h, w, k, 2, pad);
        let (r, stems) = s2d::space_to_depth_stems(&m)
            .unwrap()
            .unwrap_or_else(|| panic!("{c}×{h}×{w} k{k} not rewritten"));
        assert_eq!(stems.len(), 1);
        assert_eq!(stems[0].source, "input");
        assert!(ops(&r).contains(&"SpaceToDepth".to_string()));
        let x = image(c, h, w);
        let (a, b) = (run(&m, &x), run(&r, &x));
        let d = max_abs(&a, &b);
        assert!(d < 1e-4, "{c}×{h}×{w} k{k}: {d}");
    }
    // Not stems: stride 1, many channels, an even kernel whose padded size
    // is odd (growing it would add an output row).
    for m in [
        stem(3, 16, 16, 7, 1, 3),
        stem(16, 16, 16, 3, 2, 1),
        stem(3, 11, 11, 4, 2, 1),
    ] {
        assert!(s2d::space_to_depth_stems(&m).unwrap().is_none());
    }
}

#[test]
fn a_space_to_depth_stem_quantizes_like_the_original() {
    let m = stem(3, 32, 32, 7, 2, 3);
    let x = image(3, 32, 32);
    let base = run(&m, &x);
    let tensors = calibrate::activation_tensors(&m).unwrap();
    let cfg = SessionConfig::default();
    let ranges = calibrate::calibrate(
        &m,
        &tensors,
        &[vec![x.clone()]],
        calibrate::Method::MinMax,
        &cfg,
    )
    .unwrap();
    let (r, stems) = s2d::space_to_depth_stems(&m).unwrap().unwrap();
    let mut r_ranges = ranges.clone();
    r_ranges.insert(stems[0].packed.clone(), ranges[&stems[0].source]);
    let opts = qdq::StaticOptions::default();
    let (q, _) = qdq::quantize_static(&m, &ranges, &opts).unwrap();
    let (qs, nodes) = qdq::quantize_static(&r, &r_ranges, &opts).unwrap();
    assert!(nodes.contains(&stems[0].conv), "{nodes:?}");
    let spread = base.iter().fold(0f32, |m, v| m.max(v.abs()));
    let (dq, ds) = (max_abs(&base, &run(&q, &x)), max_abs(&base, &run(&qs, &x)));
    // A Relu that ends the graph stays (folded into a QuantizeLinear there
    // would be none to clamp it).
    assert!(ops(&q).contains(&"Relu".to_string()), "{:?}", ops(&q));
    assert!(dq < 0.05 * spread, "plain int8: {dq} of {spread}");
    // The same int8 weights and input grid (in another order): the error
    // stays that of plain int8.
    assert!(
        ds < 0.05 * spread && ds < 2.0 * dq + 1e-3,
        "{ds} vs {dq} of {spread}"
    );
}

#[test]
fn static_qdq_leaves_attention_masks_in_float() {
    use hone_onnx::{Attr, Dim, GraphBuilder, elem};
    // scores = x·W + mask, where the mask holds 0 or the lowest float, as
    // transformer exports do; then Softmax and a second MatMul.
    let mut g = GraphBuilder::new("masked");
    let x = g.input("x", elem::FLOAT, &[Dim::Fixed(1), Dim::Fixed(4)]);
    let mask = g.input("mask", elem::FLOAT, &[Dim::Fixed(1), Dim::Fixed(4)]);
    let w: Vec<f32> = (0..16).map(|i| (i as f32 - 7.5) / 8.0).collect();
    let w1 = g.initializer(hone_onnx::tensor_f32("w1", &[4, 4], &w));
    let w2 = g.initializer(hone_onnx::tensor_f32("w2", &[4, 4], &w));
    let s = g.node("MatMul", &[&x, &w1], Some("scores"), vec![]);
    let s = g.node("Add", &[&s, &mask], Some("masked"), vec![]);
    let p = g.node(
        "Softmax",
        &[&s],
        Some("probs"),
        vec![("axis", Attr::Int(-1))],
    );
    let y = g.node("MatMul", &[&p, &w2], Some("y"), vec![]);
    g.output(&y, elem::FLOAT, &[Dim::Fixed(1), Dim::Fixed(4)]);
    let m = g.finish("test", &[]);
    let ranges: calibrate::Ranges = [
        ("x", (-1.0, 1.0)),
        ("mask", (f32::MIN, 0.0)),
        ("scores", (-2.0, 2.0)),
        ("masked", (f32::MIN, 2.0)),
        ("probs", (0.0, 1.0)),
        ("y", (-1.0, 1.0)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let (q, _) = qdq::quantize_static(&m, &ranges, &qdq::StaticOptions::default()).unwrap();
    let g = q.graph.as_ref().unwrap();
    let quantized: Vec<&str> = g
        .node
        .iter()
        .filter(|n| n.op_type == "QuantizeLinear")
        .map(|n| n.input[0].as_str())
        .collect();
    assert!(quantized.contains(&"x"), "{quantized:?}");
    for t in ["mask", "masked"] {
        assert!(!quantized.contains(&t), "{t} quantized: {quantized:?}");
    }
    // A Relu whose output is too wide to quantize keeps its clamp: folding
    // it needs the QuantizeLinear that such a tensor does not get.
    let mut wide = ranges.clone();
    wide.insert("scores".into(), (-2.0, 2.0e4));
    wide.insert("relu".into(), (0.0, 2.0e4));
    let mut mr = m.clone();
    let gr = mr.graph.as_mut().unwrap();
    for n in &mut gr.node {
        if n.op_type == "Add" {
            // scores → Relu → (Add reads the Relu's output)
            n.input[0] = "relu".into();
        }
    }
    gr.node.insert(
        1,
        hone_optimize::graph::node("Relu", "relu_node".into(), &["scores"], &["relu"], vec![]),
    );
    let (qr, _) = qdq::quantize_static(&mr, &wide, &qdq::StaticOptions::default()).unwrap();
    assert!(ops(&qr).contains(&"Relu".to_string()), "{:?}", ops(&qr));
    // And the masked position stays masked.
    hone_runtime::init().unwrap();
    let xs = Tensor::from_f32(vec![1, 4], &[0.5, -0.25, 1.0, 0.0]).unwrap();
    let ms = Tensor::from_f32(vec![1, 4], &[0.0, f32::MIN, 0.0, 0.0]).unwrap();
    let infer = |m: &ModelProto| {
        let mut b =
            OrtBackend::from_bytes(&hone_onnx::encode(m), &SessionConfig::default()).unwrap();
        let out = b.infer(&[&[xs.clone(), ms.clone()][..]]).unwrap();
        npy::to_f32(&out[0]).unwrap()
    };
    let d = max_abs(&infer(&m), &infer(&q));
    assert!(d < 0.05, "{d}");
}

//! Every pass on real models: the output loads in ONNX Runtime (which
//! validates the graph) and stays numerically close to the fp32 model on
//! fixed inputs, within a bound per technique.

use std::path::PathBuf;

use hone_core::{Backend, Tensor};
use hone_data::npy;
use hone_onnx::proto::ModelProto;
use hone_optimize::{calibrate, dynamic, prune, qdq};
use hone_runtime::{OrtBackend, SessionConfig};

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models")
}

fn run(model: &ModelProto, input: &Tensor) -> Vec<f32> {
    hone_runtime::init().unwrap();
    let mut b =
        OrtBackend::from_bytes(&hone_onnx::encode(model), &SessionConfig::default()).unwrap();
    let out = b.infer(&[std::slice::from_ref(input)]).unwrap();
    npy::to_f32(&out[0]).unwrap()
}

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
    let m = hone_onnx::load(&shared().join("mlp/mlp.onnx")).unwrap();
    let x = npy::read(&shared().join("mlp/ref/mlp/input_input.npy")).unwrap();
    (m, x)
}

fn digits() -> (ModelProto, Tensor) {
    let m = hone_onnx::load(&shared().join("digits_cnn/digits_cnn.onnx")).unwrap();
    let x = npy::read(&shared().join("digits_cnn/ref/digits_cnn/input_input.npy")).unwrap();
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
    assert!(zeroed > 0);
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

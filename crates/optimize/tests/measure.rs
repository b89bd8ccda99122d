//! Speed measurement runs what it says: one session for latency, several at
//! once for throughput, and side by side for several models.

use std::path::PathBuf;
use std::time::Duration;

use hone_core::Tensor;
use hone_optimize::measure;
use hone_runtime::SessionConfig;

fn mlp() -> (Vec<u8>, Vec<Tensor>) {
    hone_runtime::init().unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let bytes = std::fs::read(dir.join("mlp.onnx")).unwrap();
    let x = hone_data::npy::read(&dir.join("mlp_input.npy")).unwrap();
    let first: Vec<f32> = hone_data::npy::to_f32(&x).unwrap()[..30].to_vec();
    (bytes, vec![Tensor::from_f32(vec![1, 30], &first).unwrap()])
}

#[test]
fn throughput_counts_every_instance() {
    let (bytes, row) = mlp();
    let cfg = SessionConfig {
        intra_op_threads: 1,
        ..Default::default()
    };
    let budget = Duration::from_millis(400);
    for instances in [1, 2] {
        let p = measure::measure(&bytes, &row, &cfg, instances, budget, &[1, 4, 16]).unwrap();
        assert!(p.p50_ms > 0.0 && p.p99_ms >= p.p50_ms, "{p:?}");
        assert!(p.throughput > 0.0 && p.throughput.is_finite(), "{p:?}");
        assert!([1, 4, 16].contains(&p.best_batch), "{p:?}");
    }
    // Input the model cannot take is an error, not a hang.
    let bad = vec![Tensor::from_f32(vec![1, 3], &[0.0; 3]).unwrap()];
    assert!(measure::measure(&bytes, &bad, &cfg, 2, budget, &[1, 4]).is_err());
}

#[test]
fn side_by_side_reports_every_model() {
    let (bytes, row) = mlp();
    let cfg = SessionConfig::default();
    let models = [(&bytes[..], cfg.clone()), (&bytes[..], cfg)];
    let (figures, rounds) =
        measure::side_by_side(&models, &row, Duration::from_millis(300)).unwrap();
    assert_eq!(figures.len(), 2);
    assert!(rounds >= 5);
    for (p50, p99) in figures {
        assert!(p50 > 0.0 && p99 >= p50);
    }
}

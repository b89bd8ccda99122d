//! Instances that share one session (one copy of the weights) answer as
//! the session alone does, run from several threads at once.

use hone_core::{Backend, Tensor};
use hone_runtime::{OrtBackend, SessionConfig};

#[test]
fn shared_instances_run_concurrently_and_agree() {
    hone_runtime::init().unwrap();
    // The digits CNN committed beside the optimizer's tests: [batch, 1, 8, 8].
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../optimize/tests/fixtures/digits_cnn.onnx");
    let cfg = SessionConfig {
        intra_op_threads: 1,
        ..Default::default()
    };
    let mut first = OrtBackend::load(&model, &cfg).unwrap();
    let x: Vec<f32> = (0..3 * 64).map(|i| ((i * 37) % 17) as f32 / 16.0).collect();
    let input = Tensor::from_f32(vec![3, 1, 8, 8], &x).unwrap();
    let want = first.infer(&[std::slice::from_ref(&input)]).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let mut b = first.share().expect("ONNX Runtime sessions can be shared");
            let input = input.clone();
            let want = want.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    assert_eq!(b.infer(&[std::slice::from_ref(&input)]).unwrap(), want);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // The first instance still runs beside them.
    assert_eq!(first.infer(&[&[input]]).unwrap(), want);
}

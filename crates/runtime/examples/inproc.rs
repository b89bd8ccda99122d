//! In-process ONNX Runtime throughput at several batch sizes: the ceiling a
//! server running the same model with the same threads can approach.
//!
//! usage: inproc MODEL.onnx [--threads N] [--batches 1,2,4,8] [--seconds S]

use std::time::{Duration, Instant};

use bytes::Bytes;
use hone_core::{Backend, Tensor, TensorData};
use hone_runtime::{OrtBackend, SessionConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args
        .next()
        .ok_or("usage: inproc MODEL.onnx [--threads N] [--batches 1,2,4] [--seconds S]")?;
    let (mut threads, mut batches, mut seconds) = (0usize, vec![1usize, 2, 4, 8], 3.0f64);
    while let Some(a) = args.next() {
        let v = args.next().ok_or(format!("{a} needs a value"))?;
        match a.as_str() {
            "--threads" => threads = v.parse()?,
            "--batches" => batches = v.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--seconds" => seconds = v.parse()?,
            _ => return Err(format!("unknown flag {a}").into()),
        }
    }
    let cfg = SessionConfig {
        intra_op_threads: threads,
        ..Default::default()
    };
    let mut backend = OrtBackend::load(std::path::Path::new(&model), &cfg)?;
    println!(
        "model {model}, intra-op threads {}",
        if threads == 0 {
            "ORT default".into()
        } else {
            threads.to_string()
        }
    );
    println!("| batch | calls | items/s | ms per call |");
    println!("|---|---|---|---|");
    for &b in &batches {
        let inputs: Vec<Tensor> = backend
            .metadata()
            .inputs
            .iter()
            .map(|spec| {
                let shape: Vec<i64> = spec
                    .dims
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| if i == 0 { b as i64 } else { d.max(1) })
                    .collect();
                let n: i64 = shape.iter().product();
                let size = spec.dtype.size().unwrap_or(1);
                // Small non-zero bytes: valid for every numeric dtype.
                Tensor::new(
                    spec.dtype,
                    shape,
                    TensorData::Raw(Bytes::from(vec![1u8; n as usize * size])),
                )
                .expect("input")
            })
            .collect();
        backend.infer(&[&inputs])?; // warm-up
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < Duration::from_secs_f64(seconds) {
            backend.infer(&[&inputs])?;
            calls += 1;
        }
        let dt = start.elapsed().as_secs_f64();
        println!(
            "| {b} | {calls} | {:.1} | {:.2} |",
            calls as f64 * b as f64 / dt,
            dt * 1e3 / calls as f64
        );
    }
    Ok(())
}

//! In-process ONNX Runtime throughput at several batch sizes: the ceiling a
//! server running the same model with the same threads can approach.
//! `--sessions N` runs N sessions side by side (each with `--threads`), the
//! way a server with N instances does, and reports their sum.
//!
//! usage: inproc MODEL.onnx [--threads N] [--sessions N] [--batches 1,2,4,8] [--seconds S]

use std::time::{Duration, Instant};

use bytes::Bytes;
use hone_core::{Backend, Tensor, TensorData};
use hone_runtime::{OrtBackend, SessionConfig};

const USAGE: &str =
    "usage: inproc MODEL.onnx [--threads N] [--sessions N] [--batches 1,2,4] [--seconds S]";

/// Inputs of batch `b` for every model input: small non-zero bytes, valid
/// for every numeric dtype.
fn inputs(backend: &OrtBackend, b: usize) -> Vec<Tensor> {
    backend
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
            Tensor::new(
                spec.dtype,
                shape,
                TensorData::Raw(Bytes::from(vec![1u8; n as usize * size])),
            )
            .expect("input")
        })
        .collect()
}

/// Calls made in `seconds` by one session at batch `b`.
fn run(backend: &mut OrtBackend, b: usize, seconds: f64) -> Result<(u64, f64), String> {
    let x = inputs(backend, b);
    backend.infer(&[&x]).map_err(|e| e.to_string())?; // warm-up
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < Duration::from_secs_f64(seconds) {
        backend.infer(&[&x]).map_err(|e| e.to_string())?;
        calls += 1;
    }
    Ok((calls, start.elapsed().as_secs_f64()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args.next().ok_or(USAGE)?;
    let (mut threads, mut sessions, mut batches, mut seconds) =
        (0usize, 1usize, vec![1usize, 2, 4, 8], 3.0f64);
    while let Some(a) = args.next() {
        let v = args.next().ok_or(format!("{a} needs a value"))?;
        match a.as_str() {
            "--threads" => threads = v.parse()?,
            "--sessions" => sessions = v.parse::<usize>()?.max(1),
            "--batches" => batches = v.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--seconds" => seconds = v.parse()?,
            _ => return Err(format!("unknown flag {a}\n{USAGE}").into()),
        }
    }
    let cfg = SessionConfig {
        intra_op_threads: threads,
        ..Default::default()
    };
    let mut backends = (0..sessions)
        .map(|_| OrtBackend::load(std::path::Path::new(&model), &cfg))
        .collect::<Result<Vec<_>, _>>()?;
    println!(
        "model {model}, {sessions} session(s), intra-op threads {} each",
        if threads == 0 {
            "ORT default".into()
        } else {
            threads.to_string()
        }
    );
    println!("| batch | calls | items/s | ms per call |");
    println!("|---|---|---|---|");
    for &b in &batches {
        let results: Vec<Result<(u64, f64), String>> = std::thread::scope(|s| {
            let handles: Vec<_> = backends
                .iter_mut()
                .map(|be| s.spawn(move || run(be, b, seconds)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("panicked".into())))
                .collect()
        });
        let (mut calls, mut items_s, mut ms) = (0u64, 0f64, 0f64);
        for r in results {
            let (c, dt) = r?;
            calls += c;
            items_s += c as f64 * b as f64 / dt;
            ms += dt * 1e3 / c.max(1) as f64;
        }
        println!(
            "| {b} | {calls} | {items_s:.1} | {:.2} |",
            ms / sessions as f64
        );
    }
    Ok(())
}

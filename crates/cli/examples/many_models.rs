//! The many-models benchmark's two halves (`bench/memory_budget.sh`):
//!
//! - `many_models make REPO MODELS N`: a repository of MODELS models whose
//!   weights dominate what they take (x[1, N] @ W[N, N] @ V[N, 1]), one
//!   engine instance and one intra-op thread each;
//! - `many_models load URL MODELS SECONDS CONCURRENCY ZIPF_S [RATE]`: V2
//!   JSON requests, each to a model drawn from a Zipf distribution over the
//!   models (model 0 the most popular), on CONCURRENCY keep-alive
//!   connections: closed-loop, or open-loop at RATE requests/s (latency
//!   then counts from when the request was due, so a slow answer cannot
//!   hide the requests it held back).
//!   Prints one JSON object: requests, failures, and client latency
//!   percentiles of the hot models (the 5 most popular) and of the requests
//!   that waited for a load (the `load` entry of `Server-Timing`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use hone_onnx::{Dim, GraphBuilder};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    let num = |i: usize| arg(i).parse::<f64>().unwrap_or_else(|_| usage());
    match arg(0) {
        "make" => make(Path::new(arg(1)), num(2) as usize, num(3) as usize),
        "load" => {
            let rate = if args.len() > 6 { num(6) } else { 0.0 };
            load(
                arg(1),
                num(2) as usize,
                num(3),
                num(4) as usize,
                num(5),
                rate,
            )
        }
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: many_models make REPO MODELS N | many_models load URL MODELS SECONDS CONCURRENCY ZIPF_S [RATE]"
    );
    std::process::exit(2)
}

fn name(i: usize) -> String {
    format!("m{i:02}")
}

fn make(repo: &Path, models: usize, n: usize) {
    for i in 0..models {
        let mut g = GraphBuilder::new(&name(i));
        let batch = Dim::Named("N".into());
        let x = g.input(
            "x",
            hone_onnx::elem::FLOAT,
            &[batch.clone(), Dim::Fixed(n as i64)],
        );
        let mut seed = 1 + i as u32;
        let mut noise = |len: usize| -> Vec<f32> {
            (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 9) as f32 / (1u32 << 23) as f32 - 0.5
                })
                .collect()
        };
        let nn = n as i64;
        let w = g.initializer(hone_onnx::tensor_f32("W", &[nn, nn], &noise(n * n)));
        let v = g.initializer(hone_onnx::tensor_f32("V", &[nn, 1], &noise(n)));
        let h = g.node("MatMul", &[&x, &w], None, vec![]);
        g.node("MatMul", &[&h, &v], Some("y"), vec![]);
        g.output("y", hone_onnx::elem::FLOAT, &[batch, Dim::Fixed(1)]);
        let dir = repo.join(name(i));
        std::fs::create_dir_all(dir.join("1")).expect("create the model directory");
        hone_onnx::save(&g.finish("bench", &[]), &dir.join("1/model.onnx"))
            .expect("write the model");
        std::fs::write(
            dir.join("config.pbtxt"),
            "max_batch_size: 8\ninstance_group [{ count: 1 kind: KIND_CPU }]\nparameters { key: \"intra_op_thread_count\" value: { string_value: \"1\" } }\n",
        )
        .expect("write the config");
    }
}

/// One answered request: which model, how long, whether it failed, and
/// how long the server waited for the model to load.
struct Sample {
    model: usize,
    latency: Duration,
    ok: bool,
    load_ms: Option<f64>,
}

fn load(url: &str, models: usize, seconds: f64, concurrency: usize, s: f64, rate: f64) {
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    // The Zipf CDF over ranks 1..=models.
    let weights: Vec<f64> = (1..=models).map(|k| 1.0 / (k as f64).powf(s)).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    let cdf: Vec<f64> = weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect();
    let n = input_width(&addr);
    let data = vec!["0.5"; n].join(",");
    let body = format!(
        r#"{{"inputs":[{{"name":"x","shape":[1,{n}],"datatype":"FP32","data":[{data}]}}]}}"#
    );
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    // Open loop: request i is due at start + i / rate, whoever sends it.
    let next = std::sync::atomic::AtomicU64::new(0);
    let samples: Vec<Sample> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..concurrency)
            .map(|w| {
                let (addr, body, cdf, next) = (&addr, &body, &cdf, &next);
                sc.spawn(move || {
                    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (w as u64 + 1);
                    let mut out = Vec::new();
                    let mut conn = Conn::open(addr);
                    while Instant::now() < until {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let u = (rng >> 11) as f64 / (1u64 << 53) as f64;
                        let model = cdf.iter().position(|c| u <= *c).unwrap_or(cdf.len() - 1);
                        let began = if rate > 0.0 {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let due = start + Duration::from_secs_f64(i as f64 / rate);
                            if due >= until {
                                break;
                            }
                            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                                std::thread::sleep(wait);
                            }
                            due
                        } else {
                            Instant::now()
                        };
                        let (ok, load_ms) = conn.infer(addr, &name(model), body);
                        out.push(Sample {
                            model,
                            latency: began.elapsed(),
                            ok,
                            load_ms,
                        });
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let ms = |mut v: Vec<f64>, q: f64| -> Option<f64> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v.get(i).map(|x| (x * 1000.0).round() / 1000.0)
    };
    let lat = |f: &dyn Fn(&Sample) -> bool| -> Vec<f64> {
        samples
            .iter()
            .filter(|x| x.ok && f(x))
            .map(|x| x.latency.as_secs_f64() * 1e3)
            .collect()
    };
    let hot = lat(&|x| x.model < 5 && x.load_ms.is_none());
    let cold = lat(&|x| x.load_ms.is_some());
    let loads: Vec<f64> = samples.iter().filter_map(|x| x.load_ms).collect();
    let failed = samples.iter().filter(|x| !x.ok).count();
    let report = serde_json::json!({
        "requests": samples.len(),
        "failed": failed,
        "throughput": samples.len() as f64 / seconds,
        "hot_requests": hot.len(),
        "hot_p50_ms": ms(hot.clone(), 0.5),
        "hot_p99_ms": ms(hot, 0.99),
        "cold_requests": cold.len(),
        "cold_p50_ms": ms(cold.clone(), 0.5),
        "cold_p99_ms": ms(cold, 0.99),
        "load_wait_p50_ms": ms(loads.clone(), 0.5),
        "load_wait_p99_ms": ms(loads, 0.99),
    });
    println!("{report}");
}

/// The width of model 0's input, from its metadata.
fn input_width(addr: &str) -> usize {
    let mut c = Conn::open(addr);
    let (_, body) = c.send(addr, "GET", &format!("/v2/models/{}", name(0)), "");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["inputs"][0]["shape"][1].as_u64().unwrap_or(0) as usize
}

struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: &str) -> Self {
        let s = TcpStream::connect(addr).expect("connect to the server");
        let _ = s.set_nodelay(true);
        Self {
            reader: BufReader::new(s),
        }
    }

    /// One inference: whether it answered 200, and the load wait the
    /// server reported.
    fn infer(&mut self, addr: &str, model: &str, body: &str) -> (bool, Option<f64>) {
        let (head, _) = self.send(addr, "POST", &format!("/v2/models/{model}/infer"), body);
        let ok = head.starts_with("HTTP/1.1 200");
        let load = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("server-timing:"))
            .and_then(|l| l.split("load;dur=").nth(1))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok());
        (ok, load)
    }

    /// Sends one request and reads its answer: (status line and headers,
    /// body). A broken connection is opened again.
    fn send(&mut self, addr: &str, method: &str, path: &str, body: &str) -> (String, String) {
        for _ in 0..2 {
            let req = format!(
                "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if self.reader.get_mut().write_all(req.as_bytes()).is_ok()
                && let Some(answer) = self.read()
            {
                return answer;
            }
            *self = Conn::open(addr);
        }
        (String::new(), String::new())
    }

    fn read(&mut self) -> Option<(String, String)> {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        self.reader.read_exact(&mut body).ok()?;
        Some((head, String::from_utf8_lossy(&body).into_owned()))
    }
}

//! Ready-made pipelines (`examples/pipelines/setup.sh`):
//! - the `minilm_text` ensemble (tokenizer step → MiniLM) takes sentences and
//!   answers with embeddings equal to the shared reference ones, over V2
//!   REST, V2 gRPC and TF Serving REST, one sentence per request and many;
//!   each step keeps its own statistics;
//! - `textline_orientation` (image step → PP-OCR's classifier → labels)
//!   labels rendered text lines, upright and turned, as rapidocr's own
//!   Python pre-processing does;
//!
//! and bad input gets a 400 naming the step, and the server keeps serving.

mod common;

use std::process::Command;

use common::{ServeProcess, bench_step, s, shared, tmp, venv, workspace};
use serde_json::{Value, json};

/// The reference embeddings, [200, 384] float32, from their `.npy`.
fn reference(models: &std::path::Path) -> Vec<Vec<f32>> {
    let raw = std::fs::read(models.join("minilm/embeddings.npy")).unwrap();
    let header = u16::from_le_bytes([raw[8], raw[9]]) as usize;
    let data = &raw[10 + header..];
    let floats: Vec<f32> = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    floats.chunks(384).map(<[f32]>::to_vec).collect()
}

fn sentences(models: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(models.join("minilm/sentences.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (n(a) * n(b))
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn assert_close(got: &[f32], refs: &[Vec<f32>], what: &str) {
    assert_eq!(got.len(), refs.len() * 384, "{what}: {} values", got.len());
    for (i, (g, r)) in got.chunks(384).zip(refs).enumerate() {
        let c = cosine(g, r);
        assert!(
            c >= 0.999,
            "{what}: sentence {i} has cosine {c} to the reference"
        );
    }
}

/// The example repository, written by its setup script into a fresh
/// directory.
fn setup(models: &std::path::Path, name: &str) -> std::path::PathBuf {
    let repo = tmp("pipelines", name).join("repo");
    let status = Command::new("bash")
        .arg(workspace().join("examples/pipelines/setup.sh"))
        .arg(&repo)
        .env("SHARED", models)
        .status()
        .unwrap();
    assert!(status.success());
    repo
}

/// A V2 gRPC call with one BYTES input; the raw outputs.
fn grpc_bytes(url: &str, model: &str, input: &str, items: &[Vec<u8>]) -> Vec<Vec<u8>> {
    use hone_proto::model_infer_request::InferInputTensor;
    use hone_proto::{InferTensorContents, ModelInferRequest};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut grpc = hone_client::grpc::connect(url, None).await.unwrap();
        let request = ModelInferRequest {
            model_name: model.into(),
            inputs: vec![InferInputTensor {
                name: input.into(),
                datatype: "BYTES".into(),
                shape: vec![items.len() as i64],
                contents: Some(InferTensorContents {
                    bytes_contents: items.to_vec(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        grpc.model_infer(request)
            .await
            .unwrap()
            .into_inner()
            .raw_output_contents
            .iter()
            .map(|b| b.to_vec())
            .collect()
    })
}

/// BYTES elements from the binary layout (u32 length, then the bytes).
fn strings(raw: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = raw;
    while rest.len() >= 4 {
        let n = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        out.push(String::from_utf8(rest[4..4 + n].to_vec()).unwrap());
        rest = &rest[4 + n..];
    }
    out
}

#[test]
fn minilm_text_embeds_sentences_over_every_protocol() {
    let Some(models) = shared("minilm_text_embeds_sentences_over_every_protocol") else {
        return;
    };
    let repo = setup(&models, "minilm");
    // An ensemble whose step model is not in the repository, beside it.
    std::fs::create_dir_all(repo.join("broken/1")).unwrap();
    let broken = std::fs::read_to_string(repo.join("minilm_text/config.pbtxt"))
        .unwrap()
        .replace("model_name: \"minilm\"", "model_name: \"absent\"");
    std::fs::write(repo.join("broken/config.pbtxt"), broken).unwrap();

    let refs = reference(&models);
    let texts = sentences(&models);
    let server = ServeProcess::start(&repo);
    let infer = |texts: &[String]| {
        let body = json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [texts.len()], "data": texts}]});
        let (code, text) = server.post("/v2/models/minilm_text/infer", &body.to_string());
        assert_eq!(code, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["outputs"][0]["name"], "embedding");
        assert_eq!(v["outputs"][0]["shape"], json!([texts.len(), 384]));
        floats(&v["outputs"][0]["data"])
    };
    // One sentence per request, then all 200 in one.
    for i in 0..8 {
        assert_close(&infer(&texts[i..=i]), &refs[i..=i], "V2 REST, one sentence");
    }
    assert_close(&infer(&texts), &refs, "V2 REST, 200 sentences");

    // TF Serving: row form (one and many) and columnar form.
    let tfs = |body: Value| {
        let (code, text) = server.post("/v1/models/minilm_text:predict", &body.to_string());
        assert_eq!(code, 200, "{text}");
        serde_json::from_str::<Value>(&text).unwrap()
    };
    let one = tfs(json!({"instances": [texts[3]]}));
    assert_close(
        &floats(&one["predictions"][0]),
        &refs[3..4],
        "TF Serving, one",
    );
    let many = tfs(json!({"instances": &texts[..50]}));
    let flat: Vec<f32> = many["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(floats)
        .collect();
    assert_close(&flat, &refs[..50], "TF Serving, 50 rows");
    let cols = tfs(json!({"inputs": {"text": &texts[50..60]}}));
    let flat: Vec<f32> = cols["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(floats)
        .collect();
    assert_close(&flat, &refs[50..60], "TF Serving, columnar");

    // V2 gRPC, one sentence and many.
    for range in [7..8, 0..200] {
        let items: Vec<Vec<u8>> = texts[range.clone()]
            .iter()
            .map(|t| t.as_bytes().to_vec())
            .collect();
        let raw = grpc_bytes(&server.grpc, "minilm_text", "text", &items);
        let got: Vec<f32> = raw[0]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_close(&got, &refs[range], "V2 gRPC");
    }

    // Each step counts its own work; the ensemble its requests.
    for (model, at_least) in [
        ("minilm_text", 14),
        ("minilm_tokenizer", 14),
        ("minilm", 14),
    ] {
        let (_, text) = server.get(&format!("/v2/models/{model}/stats"));
        let v: Value = serde_json::from_str(&text).unwrap();
        let ok = v["model_stats"][0]["inference_stats"]["success"]["count"]
            .as_u64()
            .unwrap();
        assert!(ok >= at_least, "{model}: {ok} successes: {text}");
    }
    // A version named in the URL, and readiness, as for any model.
    let body = json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [texts[5]]}]});
    let (code, text) = server.post("/v2/models/minilm_text/versions/1/infer", &body.to_string());
    assert_eq!(code, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_close(
        &floats(&v["outputs"][0]["data"]),
        &refs[5..6],
        "V2 REST, version 1",
    );
    assert_eq!(server.get("/v2/models/minilm_text/ready").0, 200);
    let (_, config) = server.get("/v2/models/minilm_text/config");
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["platform"], "ensemble");
    assert_eq!(
        config["ensemble_scheduling"]["step"][1]["model_name"],
        "minilm"
    );

    // Bad input: a number where text belongs, text that is not UTF-8, and a
    // step whose model is missing; the step is named and serving goes on.
    let (code, text) = server.post(
        "/v2/models/minilm_text/infer",
        &json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [5]}]})
            .to_string(),
    );
    assert_eq!(code, 400, "{text}");
    let (code, text) = server.post(
        "/v2/models/broken/infer",
        &json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]})
            .to_string(),
    );
    assert!(
        code >= 400 && text.contains("step 'absent'"),
        "{code} {text}"
    );
    let huge = "word ".repeat(400);
    let (code, text) = server.post(
        "/v2/models/minilm_text/infer",
        &json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [huge]}]})
            .to_string(),
    );
    // Truncation is on in the example: a long text is cut to max_length.
    assert_eq!(code, 200, "{text}");
    assert_close(&infer(&texts[..2]), &refs[..2], "after the bad requests");

    // `hone bench` drives it with raw sentences, one line per element.
    let lines = tmp("pipelines", "lines").join("sentences.txt");
    std::fs::write(&lines, texts.join("\n")).unwrap();
    for protocol in ["http-json", "grpc"] {
        let r = bench_step(
            &server,
            &[
                "--model",
                "minilm_text",
                "--data",
                s(&lines),
                "--shape",
                "text:2",
                "--protocol",
                protocol,
            ],
        );
        assert_eq!(r["inputs"][0], "text BYTES [2]", "{r}");
    }
}

#[test]
fn textline_orientation_labels_lines_as_rapidocr_does() {
    let Some(models) = shared("textline_orientation_labels_lines_as_rapidocr_does") else {
        return;
    };
    let repo = setup(&models, "textline");
    let python = venv("tests/pipelines/requirements.txt", "pipelines-venv");
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache")
        });
    let wheel = cache.join("hone/pipelines/rapidocr_onnxruntime-1.4.4-py3-none-any.whl");
    let lines = tmp("pipelines", "textline-images");
    let o = Command::new(&python)
        .arg(workspace().join("tests/pipelines/textlines.py"))
        .arg(&wheel)
        .arg(&lines)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let expected: Value =
        serde_json::from_slice(&std::fs::read(lines.join("expected.json")).unwrap()).unwrap();
    let expected = expected.as_array().unwrap();
    let images: Vec<Vec<u8>> = expected
        .iter()
        .map(|e| std::fs::read(lines.join(e["file"].as_str().unwrap())).unwrap())
        .collect();
    // The classifier itself must tell most lines apart, or the comparison
    // below would prove little.
    let right = expected
        .iter()
        .filter(|e| (e["label"] == "180") == e["turned"].as_bool().unwrap())
        .count();
    assert!(
        right * 4 >= expected.len() * 3,
        "rapidocr got {right} of {}",
        expected.len()
    );

    let server = ServeProcess::start(&repo);
    let check = |labels: &[String], scores: &[f32], what: &str| {
        assert_eq!(labels.len(), expected.len(), "{what}");
        for ((e, l), sc) in expected.iter().zip(labels).zip(scores) {
            assert_eq!(e["label"].as_str().unwrap(), l, "{what}: {e}");
            let want = e["score"].as_f64().unwrap() as f32;
            assert!((want - sc).abs() < 0.05, "{what}: {e} scored {sc}");
        }
    };
    // V2 gRPC: every line in one request.
    let raw = grpc_bytes(&server.grpc, "textline_orientation", "image", &images);
    let scores: Vec<f32> = raw[1]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    check(&strings(&raw[0]), &scores, "V2 gRPC, all lines");
    // TF Serving REST, one line per request, base64 as TF Serving takes bytes.
    use base64_encode as b64;
    let (mut labels, mut scores) = (Vec::new(), Vec::new());
    for img in &images {
        let body = json!({"instances": [{"b64": b64(img)}]});
        let (code, text) =
            server.post("/v1/models/textline_orientation:predict", &body.to_string());
        assert_eq!(code, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        labels.push(v["predictions"][0]["label"].as_str().unwrap().to_string());
        scores.push(v["predictions"][0]["score"].as_f64().unwrap() as f32);
    }
    check(&labels, &scores, "TF Serving, one line per request");

    // A corrupt image and a text file: 400s naming the step and the row.
    let mut corrupt = images[0].clone();
    corrupt.truncate(corrupt.len() / 3);
    for bad in [corrupt, b"not an image".to_vec()] {
        let body = json!({"instances": [{"b64": b64(&images[1])}, {"b64": b64(&bad)}]});
        let (code, text) =
            server.post("/v1/models/textline_orientation:predict", &body.to_string());
        assert_eq!(code, 400, "{text}");
        assert!(
            text.contains("step 'textline_image'") && text.contains("row 1"),
            "{text}"
        );
    }
    let body = json!({"instances": [{"b64": b64(&images[2])}]});
    let (code, text) = server.post("/v1/models/textline_orientation:predict", &body.to_string());
    assert_eq!(code, 200, "{text}");

    // `hone bench` drives it with the picture files themselves.
    let pictures = tmp("pipelines", "pictures");
    for (i, img) in images.iter().enumerate() {
        std::fs::write(pictures.join(format!("{i:02}.img")), img).unwrap();
    }
    bench_step(
        &server,
        &[
            "--model",
            "textline_orientation",
            "--data",
            s(&pictures),
            "--shape",
            "image:4",
            "--protocol",
            "grpc",
        ],
    );
    let o = common::hone(&[
        "bench",
        "--url",
        &server.url,
        "--model",
        "textline_orientation",
        "--data",
        s(&pictures),
        "--duration",
        "1s",
    ]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("http-binary"));
}

/// Standard base64 with padding, as TF Serving's `{"b64": ...}` takes it.
fn base64_encode(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

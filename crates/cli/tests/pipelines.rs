//! Ready-made pipelines (`examples/pipelines/setup.sh`): the `minilm_text`
//! ensemble (tokenizer step → MiniLM) takes sentences and answers with
//! embeddings equal to the shared reference ones, over V2 REST, V2 gRPC
//! and TF Serving REST, one sentence per request and many; each step keeps
//! its own statistics; bad input gets a 400 naming the step, and the
//! server keeps serving.

mod common;

use std::process::Command;

use common::{ServeProcess, s, shared, tmp, workspace};
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

#[test]
fn minilm_text_embeds_sentences_over_every_protocol() {
    let Some(models) = shared("minilm_text_embeds_sentences_over_every_protocol") else {
        return;
    };
    let repo = tmp("pipelines", "minilm").join("repo");
    let status = Command::new("bash")
        .arg(workspace().join("examples/pipelines/setup.sh"))
        .arg(&repo)
        .env("SHARED", &models)
        .status()
        .unwrap();
    assert!(status.success());
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use hone_proto::model_infer_request::InferInputTensor;
        use hone_proto::{InferTensorContents, ModelInferRequest};
        let mut grpc = hone_client::grpc::connect(&server.grpc, None)
            .await
            .unwrap();
        for range in [7..8, 0..200] {
            let texts = &texts[range.clone()];
            let request = ModelInferRequest {
                model_name: "minilm_text".into(),
                inputs: vec![InferInputTensor {
                    name: "text".into(),
                    datatype: "BYTES".into(),
                    shape: vec![texts.len() as i64],
                    contents: Some(InferTensorContents {
                        bytes_contents: texts.iter().map(|t| t.as_bytes().to_vec()).collect(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            };
            let r = grpc.model_infer(request).await.unwrap().into_inner();
            let got: Vec<f32> = r.raw_output_contents[0]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            assert_close(&got, &refs[range], "V2 gRPC");
        }
    });

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
    let _ = s;
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! `hone serve --model-memory-budget`: models load on their first request,
//! the least recently used idle one is evicted to make room, a pinned one
//! stays, requests for a model that is loading share its one load, and a
//! model that cannot fit alone is refused with the budget named.

mod common;

use std::path::Path;

use common::ServeProcess;
use hone_onnx::{Dim, GraphBuilder};
use serde_json::Value;

const FLOAT: i32 = hone_onnx::elem::FLOAT;

/// A model whose weights dominate what it takes loaded: x[N, n] @ W[n, n]
/// @ V[n, 1], one engine instance.
fn weighty(repo: &Path, name: &str, n: usize, pinned: bool) {
    let mut g = GraphBuilder::new(name);
    let batch = Dim::Named("N".into());
    let x = g.input("x", FLOAT, &[batch.clone(), Dim::Fixed(n as i64)]);
    // Not all zeros, so nothing could share or skip them.
    let mut seed = 7u32;
    let mut noise = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 9) as f32 / (1u32 << 23) as f32 - 0.5
            })
            .collect()
    };
    let w = g.initializer(hone_onnx::tensor_f32(
        "W",
        &[n as i64, n as i64],
        &noise(n * n),
    ));
    let v = g.initializer(hone_onnx::tensor_f32("V", &[n as i64, 1], &noise(n)));
    let h = g.node("MatMul", &[&x, &w], None, vec![]);
    g.node("MatMul", &[&h, &v], Some("y"), vec![]);
    g.output("y", FLOAT, &[batch, Dim::Fixed(1)]);
    let model = g.finish("test", &[]);
    let dir = repo.join(name);
    std::fs::create_dir_all(dir.join("1")).unwrap();
    hone_onnx::save(&model, &dir.join("1/model.onnx")).unwrap();
    let pin = if pinned {
        "\nparameters { key: \"pinned\" value: { string_value: \"true\" } }"
    } else {
        ""
    };
    std::fs::write(
        dir.join("config.pbtxt"),
        format!("max_batch_size: 8\ninstance_group [{{ count: 1 kind: KIND_CPU }}]{pin}\n"),
    )
    .unwrap();
}

fn infer(s: &ServeProcess, model: &str, n: usize) -> (u16, String) {
    let data = vec!["0.5"; n].join(",");
    s.post(
        &format!("/v2/models/{model}/infer"),
        &format!(
            r#"{{"inputs":[{{"name":"x","shape":[1,{n}],"datatype":"FP32","data":[{data}]}}]}}"#
        ),
    )
}

/// The dashboard's memory figures, by model.
fn memory(s: &ServeProcess) -> (Value, std::collections::BTreeMap<String, Value>) {
    let (code, body) = s.get("/dashboard.json");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let m = v["memory"].clone();
    let by = m["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["model"].as_str().unwrap().to_string(), x.clone()))
        .collect();
    (m, by)
}

fn resident(s: &ServeProcess) -> Vec<String> {
    let (_, by) = memory(s);
    by.into_iter()
        .filter(|(_, x)| x["resident"] == true)
        .map(|(n, _)| n)
        .collect()
}

#[test]
fn a_memory_budget_loads_on_demand_and_evicts_the_least_recently_used() {
    const N: usize = 1024;
    let d = common::tmp("memory", "budget");
    let repo = d.join("repo");
    for m in ["m1", "m2", "m3", "m4"] {
        weighty(&repo, m, N, false);
    }
    weighty(&repo, "p", 256, true);

    // First, what one model and the pinned one take, measured by a server
    // whose budget fits everything.
    let (one, pinned) = {
        let s = ServeProcess::start_with(&repo, &["--model-memory-budget", "1GiB"]);
        assert_eq!(resident(&s), ["p"], "only the pinned model loads at start");
        assert_eq!(infer(&s, "m1", N).0, 200);
        let (_, by) = memory(&s);
        assert_eq!(by["m1"]["measured"], true, "{:?}", by["m1"]);
        let one = by["m1"]["bytes"].as_u64().unwrap();
        assert!(one >= (N * N * 4) as u64, "at least its weights: {one}");
        (one, by["p"]["bytes"].as_u64().unwrap())
    };

    // Room for the pinned model and two and a half others; one model that
    // cannot fit at all.
    let budget = pinned + one * 5 / 2;
    let huge = ((budget as f64 / 4.0).sqrt() as usize + 64).max(N);
    weighty(&repo, "huge", huge, false);
    let s = ServeProcess::start_with(&repo, &["--model-memory-budget", &budget.to_string()]);
    let (code, body) = s.get("/v2/health/ready");
    assert_eq!(
        code, 200,
        "models that load on demand count as ready: {body}"
    );
    let (code, body) = s.get("/v2/models/m1/ready");
    assert_eq!((code, body.contains("true")), (200, true), "{body}");
    assert_eq!(resident(&s), ["p"], "a readiness probe loads nothing");
    let (_, index) = s.post("/v2/repository/index", "");
    let index: Value = serde_json::from_str(&index).unwrap();
    let m1 = index
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "m1")
        .unwrap();
    assert!(
        m1["reason"].as_str().unwrap().contains("first request"),
        "{m1}"
    );

    // m1 and m2 fit; m1 is used again, so m3 pushes out m2, the least
    // recently used.
    for m in ["m1", "m2", "m1", "m3"] {
        let (code, body) = infer(&s, m, N);
        assert_eq!(code, 200, "{m}: {body}");
    }
    assert_eq!(resident(&s), ["m1", "m3", "p"]);
    let (mem, by) = memory(&s);
    assert_eq!(by["m2"]["evictions"], 1);
    assert!(
        mem["resident_bytes"].as_u64().unwrap() <= budget,
        "{mem} over {budget}"
    );
    let (_, index) = s.post("/v2/repository/index", "");
    assert!(index.contains("evicted to keep within --model-memory-budget"));

    // Eight requests at once for a model out of memory: one load, eight
    // answers; m1 is now the least recently used.
    let answers: Vec<(u16, String)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8).map(|_| sc.spawn(|| infer(&s, "m4", N))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (code, body) in &answers {
        assert_eq!(*code, 200, "{body}");
    }
    let (mem, by) = memory(&s);
    assert_eq!(by["m4"]["loads"], 1, "{mem}");
    assert_eq!(resident(&s), ["m3", "m4", "p"], "{mem}");
    assert_eq!(by["p"]["evictions"], 0, "pinned: never evicted");

    // Evicted, m2 serves again on its next request.
    assert_eq!(infer(&s, "m2", N).0, 200);
    assert_eq!(memory(&s).1["m2"]["loads"], 2);

    // A model bigger than the whole budget: a clear refusal, and the
    // server goes on serving.
    let (code, body) = infer(&s, "huge", huge);
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("more than the whole --model-memory-budget"),
        "{body}"
    );
    assert_eq!(infer(&s, "m2", N).0, 200);

    // TF Serving's status brings an evicted model in, as its clients wait
    // for AVAILABLE there.
    assert!(!resident(&s).contains(&"m1".to_string()));
    let (code, body) = s.get("/v1/models/m1");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("AVAILABLE"), "{body}");
    assert!(resident(&s).contains(&"m1".to_string()));
    let (mem, _) = memory(&s);
    assert!(mem["resident_bytes"].as_u64().unwrap() <= budget, "{mem}");
}

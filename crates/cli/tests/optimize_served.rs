//! `hone optimize` judges a candidate the way `hone serve` runs it: at
//! batch 1 and in the batches its batcher forms, each sequence at its own
//! length, with the positions an attention mask marks as padding left out.
//! Dynamic int8 computes activation scales per engine call, so both models
//! here are built to make the batch matter.

use std::path::Path;

use hone_onnx::{Attr, Dim, GraphBuilder, elem};

mod common;
use common::{hone, s};

const HIDDEN: usize = 64;
const VOCAB: usize = 32;
const STORED_LEN: usize = 24;

/// Deterministic weights in [-1, 1].
fn weights(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5) - 1.0)
        .collect()
}

/// ids [batch, seq] → Gather(embedding) → + 400 where the mask is 0 →
/// MatMul: a token encoder whose padding positions carry far larger
/// activations than real tokens, as a padded batch's stray ones can.
fn token_model(path: &Path) {
    let mut g = GraphBuilder::new("tokens");
    let dims = [Dim::Named("batch".into()), Dim::Named("sequence".into())];
    let ids = g.input("input_ids", elem::INT64, &dims);
    let mask = g.input("attention_mask", elem::INT64, &dims);
    let emb = weights(VOCAB * HIDDEN, 1);
    let emb = g.initializer(hone_onnx::tensor_f32(
        "embedding",
        &[VOCAB as i64, HIDDEN as i64],
        &emb,
    ));
    let w = g.initializer(hone_onnx::tensor_f32(
        "w",
        &[HIDDEN as i64, HIDDEN as i64],
        &weights(HIDDEN * HIDDEN, 2),
    ));
    let axes = g.initializer(hone_onnx::tensor_i64("axes", &[1], &[-1]));
    let one = g.initializer(hone_onnx::tensor_i64("one", &[], &[1]));
    let big = g.initializer(hone_onnx::tensor_f32("big", &[], &[400.0]));
    let x = g.node("Gather", &[&emb, &ids], None, vec![]);
    let pad = g.node("Sub", &[&one, &mask], None, vec![]);
    let pad = g.node(
        "Cast",
        &[&pad],
        None,
        vec![("to", Attr::Int(elem::FLOAT as i64))],
    );
    let pad = g.node("Mul", &[&pad, &big], None, vec![]);
    let pad = g.node("Unsqueeze", &[&pad, &axes], None, vec![]);
    let x = g.node("Add", &[&x, &pad], None, vec![]);
    let y = g.node("MatMul", &[&x, &w], Some("last_hidden_state"), vec![]);
    g.output(
        &y,
        elem::FLOAT,
        &[
            Dim::Named("batch".into()),
            Dim::Named("sequence".into()),
            Dim::Fixed(HIDDEN as i64),
        ],
    );
    std::fs::write(path, hone_onnx::encode(&g.finish("test", &[]))).unwrap();
}

/// x [batch, HIDDEN] → MatMul: a dense model with no sequence axis.
fn dense_model(path: &Path) {
    let mut g = GraphBuilder::new("dense");
    let x = g.input(
        "x",
        elem::FLOAT,
        &[Dim::Named("batch".into()), Dim::Fixed(HIDDEN as i64)],
    );
    let w = g.initializer(hone_onnx::tensor_f32(
        "w",
        &[HIDDEN as i64, HIDDEN as i64],
        &weights(HIDDEN * HIDDEN, 3),
    ));
    let y = g.node("MatMul", &[&x, &w], Some("y"), vec![]);
    g.output(
        &y,
        elem::FLOAT,
        &[Dim::Named("batch".into()), Dim::Fixed(HIDDEN as i64)],
    );
    std::fs::write(path, hone_onnx::encode(&g.finish("test", &[]))).unwrap();
}

fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn optimize(model: &Path, data: &Path, out: &Path) -> serde_json::Value {
    let o = hone(&[
        "optimize",
        s(model),
        "--data",
        s(data),
        "--techniques",
        "dynamic",
        "--max-drop",
        "0.01",
        "--measure-seconds",
        "0.2",
        "-o",
        s(out),
        "--json",
    ]);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

#[test]
fn sequences_are_judged_at_their_own_length_with_padding_left_out() {
    let d = common::tmp("optimize_served", "tokens");
    let model = d.join("tokens.onnx");
    token_model(&model);
    // 40 sentences of 3..12 tokens, right-padded with id 0 to 24.
    let rows = 40;
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for r in 0..rows {
        let len = 3 + r % 10;
        for p in 0..STORED_LEN {
            let real = p < len;
            ids.push(if real {
                1 + ((r * 13 + p * 7) % (VOCAB - 1)) as i64
            } else {
                0
            });
            mask.push(i64::from(real));
        }
    }
    let data = d.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let shape = [rows, STORED_LEN];
    common::write_npy(&data.join("input_ids.npy"), "<i8", &shape, &i64_bytes(&ids));
    common::write_npy(
        &data.join("attention_mask.npy"),
        "<i8",
        &shape,
        &i64_bytes(&mask),
    );
    let r = optimize(&model, &data, &d.join("out.onnx"));
    let judged_as = r["judged_as"].as_str().unwrap();
    assert!(
        judged_as.contains("batch 1") && judged_as.contains("own length"),
        "{judged_as}"
    );
    let c = common::candidate(&r, "int8-dynamic");
    // As served no call holds a padding token: the scale fits real tokens.
    let served = c["metric"].as_f64().unwrap();
    assert!(served > 0.99, "{c}");
    assert_eq!(c["verdict"], "within budget", "{c}");
    // In padded batches the padding embeddings set the scale and real tokens
    // lose their precision. Counting the padded positions would hide that
    // (they are large and quantize well), so this figure shows the mask is
    // applied.
    let padded = c["padded_metric"].as_f64().unwrap();
    assert!(padded < 0.95, "{c}");
    // The choice is int8, or fp32 itself where int8 does not run faster on
    // this CPU.
    let chosen = r["chosen"].as_str().unwrap();
    assert!(
        chosen.starts_with("int8-dynamic") || chosen == "fp32",
        "{r}"
    );
}

#[test]
fn rows_are_judged_in_the_batches_the_batcher_forms_too() {
    let d = common::tmp("optimize_served", "dense");
    let model = d.join("dense.onnx");
    dense_model(&model);
    // Row 0 of every 64 is 300× larger than the rest: alone each row
    // quantizes well; batched with it, the others lose their precision.
    let rows = 128;
    let mut x = Vec::new();
    for r in 0..rows {
        let scale = if r % 64 == 0 { 300.0 } else { 1.0 };
        x.extend(weights(HIDDEN, 10 + r).iter().map(|v| v * scale));
    }
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let data = d.join("data");
    std::fs::create_dir_all(&data).unwrap();
    common::write_npy(&data.join("x.npy"), "<f4", &[rows, HIDDEN], &bytes);
    let r = optimize(&model, &data, &d.join("out.onnx"));
    let c = common::candidate(&r, "int8-dynamic");
    assert_eq!(c["judged_in"], "batches of ≤ 64", "{c}");
    assert!(
        c["verdict"].as_str().unwrap().starts_with("over budget"),
        "{c}"
    );
    // No sequence axis: no padded figure.
    assert!(c["padded_metric"].is_null(), "{c}");
    // At batch 1 alone the same file is inside the budget.
    let single = c["by_pass"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pass"] == "batch 1")
        .unwrap_or_else(|| panic!("{c}"));
    assert!(single["drop"].as_f64().unwrap() < 0.01, "{c}");
}

//! The optimize stage of a ship: `hone optimize` on the validated model and
//! the held-out rows, its choice kept only when it is faster than fp32.

use hone_data::Table;
use hone_data::metrics::Metric;

use super::report::ShipOptions;
use crate::Result;
use crate::imported::ImportCard;

/// The card that says how the held-out rows feed the model.
#[derive(Clone, Copy)]
pub(super) enum Card<'a> {
    Trained(&'a hone_train::ModelCard),
    Imported(&'a ImportCard),
}

/// The optimize stage: `hone optimize`'s search, in memory, over graph /
/// int8 dynamic / int8 static candidates of the validated model within
/// `max_drop` of the held-out metric; its choice replaces the fp32 model
/// only when it is faster.
pub(super) fn optimize_stage(
    opts: &ShipOptions,
    rows: &Table,
    onnx: &[u8],
    card: Card<'_>,
    metric: Metric,
    max_drop: f64,
) -> Result<(Vec<u8>, String)> {
    use crate::search as opt;
    let o = opt::OptimizeOptions {
        // Only names in the report: the inputs are in memory.
        model: "model.onnx".into(),
        data: "held-out rows".into(),
        target: opts.target.clone(),
        metric: Some(metric.name().to_string()),
        max_drop,
        relative: false,
        calibration: None,
        calibration_rows: 128,
        objective: opt::Objective::Latency,
        time_budget: std::time::Duration::from_secs(60),
        techniques: vec![
            opt::Technique::Graph,
            opt::Technique::Dynamic,
            opt::Technique::Static,
        ],
        output: "chosen.onnx".into(),
        repository: None,
        name: None,
        output_name: None,
        threads: 0,
        measure_seconds: 0.3,
        train_data: None,
        prune_ratio: 0.5,
        latency_data: None,
        keep_candidates: None,
        external_data: false,
        in_memory: Some(opt::InMemory {
            model: onnx.to_vec(),
            card: match card {
                Card::Trained(c) => Some(c.clone()),
                Card::Imported(_) => None,
            },
            imported: match card {
                Card::Trained(_) => None,
                Card::Imported(c) => Some(c.clone()),
            },
            data: rows.clone(),
        }),
    };
    let r = opt::run(&o, &mut |_, _, _| {})?;
    let base = r.baseline.p50_ms.unwrap_or(f64::MAX);
    let chosen = r
        .chosen
        .as_ref()
        .and_then(|c| r.candidates.iter().find(|x| &x.name == c));
    Ok(match chosen {
        Some(c) if c.p50_ms.unwrap_or(f64::MAX) < base => (
            c.bytes.clone(),
            format!(
                "{}: p50 {:.3} ms vs fp32 {base:.3} ms, held-out {} drop {:.4} (≤ {max_drop}); {} candidates",
                c.name,
                c.p50_ms.unwrap_or(0.0),
                metric.name(),
                c.drop.unwrap_or(0.0),
                r.candidates.len()
            ),
        ),
        _ => (
            onnx.to_vec(),
            format!(
                "kept fp32: no candidate within {max_drop} was faster (p50 {base:.3} ms); {} candidates",
                r.candidates.len()
            ),
        ),
    })
}

//! The optimize stage of a ship: `hone optimize` on the validated model and
//! the held-out rows, its choice kept only when it is faster than fp32.

use hone_data::metrics::Metric;

use super::report::{Data, ShipOptions};
use crate::Result;

/// The optimize stage: the validated model, its card and the held-out rows
/// go to a scratch directory, `hone optimize` searches graph / int8 dynamic /
/// int8 static candidates within `max_drop` of the held-out metric, and its
/// choice replaces the fp32 model only when it is faster.
pub(super) fn optimize_stage(
    opts: &ShipOptions,
    data: &Data,
    onnx: &[u8],
    card: &[u8],
    metric: Metric,
    max_drop: f64,
) -> Result<(Vec<u8>, String)> {
    use crate::search as opt;
    let dir = std::env::temp_dir().join(format!("hone-ship-optimize-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = (|| {
        let model = dir.join("model.onnx");
        std::fs::write(&model, onnx)?;
        std::fs::write(crate::card_path(&model), card)?;
        let held = dir.join("holdout.csv");
        data.holdout_table.write_csv(&held)?;
        let o = opt::OptimizeOptions {
            model,
            data: held,
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
            output: dir.join("chosen.onnx"),
            repository: None,
            name: None,
            output_name: None,
            threads: 0,
            measure_seconds: 0.3,
            train_data: None,
            prune_ratio: 0.5,
            latency_data: None,
            keep_candidates: None,
        };
        let r = opt::run(&o, &mut |_, _, _| {})?;
        let base = r.baseline.p50_ms.unwrap_or(f64::MAX);
        let chosen = r
            .chosen
            .as_ref()
            .and_then(|c| r.candidates.iter().find(|x| &x.name == c));
        Ok(match chosen {
            Some(c) if c.p50_ms.unwrap_or(f64::MAX) < base => (
                std::fs::read(dir.join("chosen.onnx"))?,
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
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

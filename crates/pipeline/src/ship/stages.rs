//! The offline stages of a ship: load the data, train, validate on the
//! held-out rows, optionally optimize, and package the next version.

use std::time::Instant;

use hone_data::metrics::Metric;
use hone_data::{Encoding, Table, Task, split};
use hone_server::Server;
use hone_train::CardInput;

use super::optimize_stage::{Card, optimize_stage};
use super::package::config_pbtxt;
use super::release::publish_and_go_live;
use super::report::{Data, Run, ShipOptions, judge};
use super::smoke::Smoke;
use crate::{PipelineError, Result};

pub(super) async fn run_stages(opts: &ShipOptions, run: &mut Run) -> Result<Option<Server>> {
    if !(0.0..1.0).contains(&opts.holdout) || opts.holdout == 0.0 {
        return Err(PipelineError::Message(
            "--holdout must be between 0 and 1".into(),
        ));
    }
    let seed = opts.train.seed;
    let data = run.stage("load data", || {
        let table = match &opts.data_path {
            Some(p)
                if matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("parquet" | "pq")
                ) =>
            {
                Table::read(p)?
            }
            _ => Table::parse_csv(&opts.data, &opts.data_name)?,
        };
        let encoding = Encoding::fit(&table, &opts.target, opts.task, &opts.categorical)?;
        let all = encoding.apply(&table, true)?;
        let strat = (encoding.target.task != Task::Regression).then_some(&all.y[..]);
        let (rest, held) = split::split(all.rows, opts.holdout, strat, seed);
        let rest = all.select(&rest);
        let strat = (encoding.target.task != Task::Regression).then_some(&rest.y[..]);
        let (tr, va) = split::split(rest.rows, 0.2, strat, seed.wrapping_add(1));
        let d = Data {
            train: rest.select(&tr),
            val: rest.select(&va),
            holdout: all.select(&held),
            holdout_table: table.select(&held),
            encoding,
        };
        let detail = format!(
            "{} rows, {} features, {} task; {} train / {} early-stopping / {} held out",
            all.rows,
            d.encoding.features.len(),
            d.encoding.target.task.name(),
            d.train.rows,
            d.val.rows,
            d.holdout.rows
        );
        Ok((d, detail))
    })?;

    let train_start = Instant::now();
    let model = run.stage("train", || {
        let m = hone_train::train(
            &data.encoding,
            &data.train,
            Some(&data.val),
            &opts.train,
            |_| {},
        )?;
        let detail = format!(
            "MLP {:?}, {} epochs (best {}), candle",
            opts.train.hidden,
            m.history.len(),
            m.best_epoch
        );
        Ok((m, detail))
    })?;
    let train_seconds = train_start.elapsed().as_secs_f64();

    let task = data.encoding.target.task;
    let metric = opts.metric.unwrap_or(if task == Task::Regression {
        Metric::R2
    } else {
        Metric::Accuracy
    });
    let (onnx_bytes, report) = run.stage("validate", || {
        let bytes = hone_onnx::encode(&model.to_onnx(&[("hone.task", task.name().to_string())]));
        let (served, diff) = crate::check_export(&model, &bytes, &data.holdout)?;
        let report = hone_data::metrics::for_task(
            task,
            data.encoding.output_width(),
            &served,
            &data.holdout.y,
        );
        let (value, gate_note) = judge(&report, metric, task, opts.min_metric, "held-out ")?;
        let detail = format!(
            "held-out {} = {value:.4} on {} rows; ONNX vs Rust max |diff| {diff:.1e}{gate_note}",
            metric.name(),
            data.holdout.rows
        );
        Ok(((bytes, report), detail))
    })?;
    run.report.metric = Some(metric.name().to_string());
    run.report.value = report.get(metric);
    run.report.validation = Some(report.clone());

    let card = hone_train::card_for(CardInput {
        model: &model,
        cfg: &opts.train,
        train: &data.train,
        val: Some(&data.holdout),
        train_report: &model.evaluate(&data.train)?,
        val_report: Some(&report),
        data_file: &opts.data_name,
        val_file: None,
        data_bytes: &opts.data,
        seconds: train_seconds,
    });
    let card_json = serde_json::to_vec_pretty(&card)?;
    let onnx_bytes = match opts.optimize {
        None => {
            run.skipped(
                "optimize",
                "not asked for (--optimize): the validated fp32 model ships",
            );
            onnx_bytes
        }
        Some(max_drop) => run.stage("optimize", || {
            optimize_stage(
                opts,
                &data.holdout_table,
                &onnx_bytes,
                Card::Trained(&card),
                metric,
                max_drop,
            )
        })?,
    };

    let smoke = Smoke::trained(&onnx_bytes, &data.holdout, opts.smoke_rows)?;
    let config = config_pbtxt(&opts.name, &model);
    publish_and_go_live(opts, run, &onnx_bytes, &card_json, &config, &smoke).await
}

//! `hone score`: a model's predictions for every row of a CSV, Parquet or
//! `.npy` file, written beside the rows' key columns to CSV or Parquet.
//! Streamed in chunks through three threads (read and encode, infer,
//! write) so files larger than memory score with bounded memory; the
//! engine is ONNX Runtime with every core, or a running server (`--url`).
//! A model with a card answers with its label as written in the training
//! data and a probability per class.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

use hone_core::{Backend, Tensor};
use hone_data::encoded::EncodedChunks;
use hone_data::stream::{Chunks, Column, Sink};
use hone_data::{Table, Task, metrics, npy};
use hone_runtime::{OrtBackend, SessionConfig};
use serde::Serialize;

use crate::eval::{dataset_from_table, pick_output};
use crate::{PipelineError, Result};

#[derive(Debug, Clone)]
pub struct ScoreOptions {
    /// A model file, a version directory, or a repository's model
    /// directory (its newest version).
    pub model: PathBuf,
    pub data: PathBuf,
    pub output: PathBuf,
    /// Input columns copied to the output beside the predictions; None:
    /// every column that is neither a feature nor the target.
    pub keys: Option<Vec<String>>,
    pub chunk_rows: usize,
    /// Score through this running server instead of in process.
    pub server: Option<hone_client::Options>,
    /// The model's name on the server (default: the repository directory's).
    pub name: Option<String>,
    /// This process scores chunks `shard`, `shard + shards`, ...
    pub shards: usize,
    pub shard: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScoreReport {
    pub model: String,
    pub data: String,
    pub output: String,
    pub engine: String,
    pub rows: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
    pub columns: Vec<String>,
    pub shard: Option<String>,
}

/// The model file a path names, and its name in a repository.
pub fn resolve_model(path: &Path) -> Result<(PathBuf, Option<String>)> {
    let dir_name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let is_version = |p: &Path| dir_name(p).is_some_and(|n| n.parse::<u64>().is_ok());
    if path.is_file() {
        let name = path
            .parent()
            .filter(|v| is_version(v))
            .and_then(Path::parent)
            .and_then(dir_name);
        return Ok((path.to_path_buf(), name));
    }
    if path.join("model.onnx").is_file() {
        let name = is_version(path)
            .then(|| path.parent().and_then(dir_name))
            .flatten();
        return Ok((path.join("model.onnx"), name));
    }
    let newest = std::fs::read_dir(path)
        .map_err(|e| PipelineError::Message(format!("cannot read {}: {e}", path.display())))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u64>().ok()?;
            e.path().join("model.onnx").is_file().then_some(v)
        })
        .max()
        .ok_or_else(|| {
            PipelineError::Message(format!(
                "{}: no model.onnx in it or in a numbered version directory",
                path.display()
            ))
        })?;
    Ok((
        path.join(newest.to_string()).join("model.onnx"),
        dir_name(path),
    ))
}

/// What turns output values into the output file's prediction columns.
struct Post {
    task: Option<Task>,
    labels: Vec<String>,
    output: String,
}

impl Post {
    fn names(&self, width: usize) -> Vec<String> {
        match self.task {
            Some(Task::Regression) => vec!["prediction".into()],
            Some(_) => std::iter::once("label".to_string())
                .chain(self.labels.iter().map(|l| format!("p_{l}")))
                .collect(),
            None if width == 1 => vec![self.output.clone()],
            None => (0..width).map(|j| format!("{}_{j}", self.output)).collect(),
        }
    }

    /// The prediction columns of rows of `width` output values each.
    fn columns(&self, mut v: Vec<f32>, width: usize) -> Result<Vec<Column>> {
        let k = self.labels.len();
        let f = |x: &f32| f64::from(*x);
        Ok(match self.task {
            Some(Task::Regression) | None if width == 1 => {
                vec![Column::Number(v.iter().map(f).collect())]
            }
            None => (0..width)
                .map(|j| Column::Number(v.iter().skip(j).step_by(width).map(f).collect()))
                .collect(),
            Some(Task::Regression) => {
                return Err(PipelineError::Message(format!(
                    "a regression model has one output column; {:?} has {width}",
                    self.output
                )));
            }
            Some(_) => {
                // P(class 1) alone, or one score per class.
                let probs: Vec<f32> = if width == 1 && k == 2 {
                    v.iter().flat_map(|p| [1.0 - p, *p]).collect()
                } else if width == k {
                    metrics::to_probabilities(&mut v, width);
                    v
                } else {
                    return Err(PipelineError::Message(format!(
                        "output {:?} has {width} columns for {k} classes",
                        self.output
                    )));
                };
                // Two classes: class 1 from P >= 0.5, as `hone eval` counts.
                let class = |r: &[f32]| match r {
                    [_, p1] => usize::from(*p1 >= 0.5),
                    _ => metrics::argmax(r).min(k - 1),
                };
                let mut cols = vec![Column::Text(
                    probs
                        .chunks(k)
                        .map(|r| self.labels[class(r)].clone())
                        .collect(),
                )];
                cols.extend(
                    (0..k)
                        .map(|j| Column::Number(probs.iter().skip(j).step_by(k).map(f).collect())),
                );
                cols
            }
        })
    }
}

/// One chunk on its way: its index, key columns and encoded input.
struct Encoded {
    keys: Vec<Column>,
    input: Tensor,
    rows: usize,
}

/// Scores every row (of this process's shard) and writes the output file.
pub fn score(
    opts: &ScoreOptions,
    progress: &(dyn Fn(u64, Option<u64>) + Sync),
) -> Result<ScoreReport> {
    let start = Instant::now();
    if opts.shards == 0 || opts.shard >= opts.shards {
        return Err(PipelineError::Message(format!(
            "--shard {} of {}: the index must be below the count",
            opts.shard, opts.shards
        )));
    }
    let (model_path, repo_name) = resolve_model(&opts.model)?;
    if let Some(keys) = &opts.keys
        && let Some((_, k)) = keys
            .iter()
            .enumerate()
            .find(|(i, k)| keys[..*i].contains(k))
    {
        return Err(PipelineError::Message(format!(
            "--key {k:?} is given twice"
        )));
    }
    hone_runtime::init()?;
    let cores = hone_runtime::sizing::cores();
    let cfg = SessionConfig {
        intra_op_threads: cores,
        ..SessionConfig::default()
    };
    let mut backend = OrtBackend::load(&model_path, &cfg)?;
    let meta = backend.metadata().clone();
    let card = crate::read_card(&model_path)?;
    let out_index = match &card {
        Some(c) => {
            pick_output(&meta, Some(&c.output.name)).or_else(|_| pick_output(&meta, None))?
        }
        None => pick_output(&meta, None)?,
    };
    let post = Post {
        task: card.as_ref().map(|c| c.task),
        labels: card.as_ref().map(|c| c.labels.clone()).unwrap_or_default(),
        output: meta.outputs[out_index].name.clone(),
    };
    let is_npy = opts.data.extension().is_some_and(|e| e == "npy");
    let (tx, rx) = sync_channel::<Result<Encoded>>(2);
    let mut engine = match &opts.server {
        Some(o) => Engine::Server(Box::new(Remote::connect(
            o,
            opts.name.clone().or(repo_name).ok_or_else(|| {
                PipelineError::Message(
                    "--url needs the model's name on the server: give --name, or the model as REPOSITORY/NAME".into(),
                )
            })?,
            &post.output,
            &meta.inputs[0].name,
        )?)),
        None => Engine::Local(&mut backend, out_index),
    };
    let (key_names, total) = if is_npy {
        (vec!["row".to_string()], None)
    } else {
        let chunks = Chunks::open(&opts.data, opts.chunk_rows)?;
        let names = chunks.names().to_vec();
        let features: Vec<String> = match &card {
            Some(c) => c.input.features.iter().map(|f| f.name.clone()).collect(),
            None => Vec::new(),
        };
        let target = card.as_ref().map(|c| c.target.clone());
        let keys = match &opts.keys {
            Some(k) => {
                if let Some(bad) = k.iter().find(|k| !names.contains(k)) {
                    return Err(PipelineError::Message(format!(
                        "--key {bad:?}: {} has no such column (columns: {})",
                        opts.data.display(),
                        names.join(", ")
                    )));
                }
                k.clone()
            }
            // Without a card every column is a feature: no keys.
            None if card.is_none() => Vec::new(),
            None => names
                .iter()
                .filter(|n| !features.contains(n) && Some(*n) != target.as_ref())
                .cloned()
                .collect(),
        };
        (keys, chunks.total)
    };
    // The output's width as the model declares it; the first chunk's real
    // width names the columns once it is known.
    let declared = meta.outputs[out_index]
        .dims
        .get(1)
        .copied()
        .filter(|d| *d > 0)
        .map_or(1, |d| d as usize);
    let mut columns: Vec<String> = key_names
        .iter()
        .cloned()
        .chain(post.names(declared))
        .collect();
    if let Some(parent) = opts.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            PipelineError::Message(format!("cannot create {}: {e}", parent.display()))
        })?;
    }
    let reader = {
        let (opts, meta, card, keys) =
            (opts.clone(), meta.clone(), card.clone(), key_names.clone());
        std::thread::Builder::new()
            .name("hone-score-read".into())
            .spawn(move || read(&opts, &meta, card.as_ref(), &keys, is_npy, &tx))
            .map_err(|e| PipelineError::Message(format!("cannot start a reader thread: {e}")))?
    };
    let (wtx, wrx) = sync_channel::<(Vec<String>, Vec<Column>)>(2);
    let writer = {
        let (path, fallback) = (opts.output.clone(), columns.clone());
        std::thread::Builder::new()
            .name("hone-score-write".into())
            .spawn(move || write(&path, fallback, &wrx))
            .map_err(|e| PipelineError::Message(format!("cannot start a writer thread: {e}")))?
    };
    let mut rows = 0u64;
    let run = (|| -> Result<()> {
        for chunk in rx.iter() {
            let Encoded {
                mut keys,
                input,
                rows: n,
            } = chunk?;
            let (values, w) = engine.run(input, n)?;
            if rows == 0 {
                columns = key_names.iter().cloned().chain(post.names(w)).collect();
            }
            keys.extend(post.columns(values, w)?);
            if wtx.send((columns.clone(), keys)).is_err() {
                break; // the writer failed: its error is reported below
            }
            rows += n as u64;
            progress(rows, total.map(|t| t / opts.shards as u64));
        }
        Ok(())
    })();
    drop(wtx);
    drop(rx);
    let wrote = writer
        .join()
        .map_err(|_| PipelineError::Message("the writer thread panicked".into()))?;
    let read = reader.join();
    run?;
    wrote?;
    // A reader that died early closed its channel like one that finished.
    read.map_err(|_| PipelineError::Message("the reader thread panicked".into()))?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(ScoreReport {
        model: model_path.display().to_string(),
        data: opts.data.display().to_string(),
        output: opts.output.display().to_string(),
        engine: match &opts.server {
            Some(o) => format!("server {}", o.url),
            None => format!("ONNX Runtime, {cores} threads"),
        },
        rows,
        seconds,
        rows_per_second: rows as f64 / seconds.max(1e-9),
        columns,
        shard: (opts.shards > 1).then(|| format!("{} of {}", opts.shard, opts.shards)),
    })
}

/// The reader thread: chunks of this shard, keys taken, rows encoded.
fn read(
    opts: &ScoreOptions,
    meta: &hone_core::ModelMetadata,
    card: Option<&hone_train::ModelCard>,
    keys: &[String],
    is_npy: bool,
    tx: &SyncSender<Result<Encoded>>,
) {
    let mine = |k: usize| k % opts.shards == opts.shard;
    if is_npy {
        let sent = (|| -> Result<()> {
            let all = npy::read(&opts.data)?;
            let n = all.batch();
            let step = opts.chunk_rows.max(1);
            for (k, at) in (0..n).step_by(step).enumerate() {
                let end = (at + step).min(n);
                if !mine(k) {
                    continue;
                }
                let keys = vec![Column::Number((at..end).map(|r| r as f64).collect())];
                let input = all.slice_batch(at, end);
                if tx
                    .send(Ok(Encoded {
                        keys,
                        input,
                        rows: end - at,
                    }))
                    .is_err()
                {
                    break;
                }
            }
            Ok(())
        })();
        if let Err(e) = sent {
            let _ = tx.send(Err(e));
        }
        return;
    }
    // A hone model fed rows of its features: encoded straight from the
    // file's cells, no table of text in between.
    if let Some(card) = card
        && let [spec] = meta.inputs.as_slice()
        && spec.dtype == hone_core::DataType::F32
        && spec.dims.len() == 2
        && spec.dims.get(1).copied() == i64::try_from(card.input.features.len()).ok()
    {
        let enc = hone_data::Encoding {
            features: card.input.features.clone(),
            target: hone_data::Target {
                name: card.target.clone(),
                task: card.task,
                classes: card.labels.clone(),
            },
        };
        let sent = (|| -> Result<()> {
            let mut chunks = EncodedChunks::open(&opts.data, &enc, keys, opts.chunk_rows)?;
            let mut k = 0;
            while let Some(c) = chunks.next_chunk()? {
                k += 1;
                if !mine(k - 1) {
                    continue;
                }
                let width = enc.features.len() as i64;
                let input = Tensor::from_f32(vec![c.rows as i64, width], &c.x)?;
                let keys = c.keys.into_iter().map(Column::Text).collect();
                if tx
                    .send(Ok(Encoded {
                        keys,
                        input,
                        rows: c.rows,
                    }))
                    .is_err()
                {
                    break;
                }
            }
            Ok(())
        })();
        if let Err(e) = sent {
            let _ = tx.send(Err(e));
        }
        return;
    }
    let sent = (|| -> Result<()> {
        let mut chunks = Chunks::open(&opts.data, opts.chunk_rows)?;
        let mut k = 0;
        while let Some(t) = chunks.next_chunk()? {
            k += 1;
            if !mine(k - 1) {
                continue;
            }
            let e = encode(t, meta, card, keys)?;
            if tx.send(Ok(e)).is_err() {
                break;
            }
        }
        Ok(())
    })();
    if let Err(e) = sent {
        let _ = tx.send(Err(e));
    }
}

fn encode(
    mut t: Table,
    meta: &hone_core::ModelMetadata,
    card: Option<&hone_train::ModelCard>,
    keys: &[String],
) -> Result<Encoded> {
    let mut key_cols = Vec::with_capacity(keys.len());
    for k in keys {
        let Some(i) = t.column(k) else { continue };
        key_cols.push(Column::Text(if card.is_some() {
            t.columns[i].clone()
        } else {
            // Without a card every other column is a feature: keys leave.
            t.names.remove(i);
            t.columns.remove(i)
        }));
    }
    let target = card.map_or_else(String::new, |c| c.target.clone());
    let ds = dataset_from_table(t, &target, meta, card)?;
    let input = ds
        .slice(0, ds.rows)
        .into_iter()
        .next()
        .ok_or_else(|| PipelineError::Message("the model has no input".into()))?;
    Ok(Encoded {
        keys: key_cols,
        input,
        rows: ds.rows,
    })
}

/// The writer thread: the file is created with the first chunk's column
/// names (`fallback` when there is none).
fn write(
    path: &Path,
    fallback: Vec<String>,
    rx: &Receiver<(Vec<String>, Vec<Column>)>,
) -> Result<()> {
    let mut sink: Option<Sink> = None;
    for (names, cols) in rx.iter() {
        let s = match &mut sink {
            Some(s) => s,
            None => sink.insert(Sink::create(path, names)?),
        };
        s.write(&cols)?;
    }
    match sink {
        Some(s) => s.finish()?,
        None => Sink::create(path, fallback)?.finish()?,
    }
    Ok(())
}

enum Engine<'a> {
    Local(&'a mut OrtBackend, usize),
    Server(Box<Remote>),
}

impl Engine<'_> {
    /// One chunk's output values and their row width.
    fn run(&mut self, input: Tensor, rows: usize) -> Result<(Vec<f32>, usize)> {
        let values = match self {
            Engine::Local(b, out) => {
                let outs = b.infer(&[&[input]])?;
                let t = outs.get(*out).ok_or_else(|| {
                    PipelineError::Message("the engine returned too few outputs".into())
                })?;
                npy::to_f32(t)
                    .ok_or_else(|| PipelineError::Message("the output is not numeric".into()))?
            }
            Engine::Server(r) => r.run(&input, rows)?,
        };
        let width = values.len().checked_div(rows).unwrap_or(0);
        if width == 0 || width * rows != values.len() {
            return Err(PipelineError::Message(format!(
                "{} output values for {rows} rows",
                values.len()
            )));
        }
        Ok((values, width))
    }
}

/// A running server as the engine: requests of at most the model's
/// `max_batch_size` rows, several in flight.
struct Remote {
    rt: tokio::runtime::Runtime,
    client: hone_client::Client,
    name: String,
    output: String,
    input: String,
    max_rows: usize,
}

impl Remote {
    fn connect(
        o: &hone_client::Options,
        name: String,
        output: &str,
        input: &str,
    ) -> Result<Remote> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| PipelineError::Message(format!("cannot start a runtime: {e}")))?;
        let client = hone_client::Client::new(o)?;
        let cfg = rt.block_on(client.model_config(&name, None))?;
        let max_rows = cfg["max_batch_size"]
            .as_u64()
            .filter(|m| *m > 0)
            .map_or(1024, |m| m as usize);
        Ok(Remote {
            rt,
            client,
            name,
            output: output.to_string(),
            input: input.to_string(),
            max_rows,
        })
    }

    fn run(&self, input: &Tensor, rows: usize) -> Result<Vec<f32>> {
        use futures_util::StreamExt;
        let values = npy::to_f32(input)
            .ok_or_else(|| PipelineError::Message("the encoded input is not numeric".into()))?;
        let width = values.len().checked_div(rows).unwrap_or(0);
        let bodies: Vec<serde_json::Value> = values
            .chunks((self.max_rows * width).max(1))
            .map(|part| {
                let n = part.len() / width.max(1);
                serde_json::json!({"inputs": [{"name": self.input, "datatype": "FP32",
                    "shape": [n, width], "data": part}],
                    "outputs": [{"name": self.output}]})
            })
            .collect();
        let answers: Vec<hone_client::Result<serde_json::Value>> = self.rt.block_on(
            // Batch scoring is not live traffic: out of the server's drift
            // and feedback record.
            futures_util::stream::iter(
                bodies
                    .iter()
                    .map(|b| self.client.infer_synthetic(&self.name, None, b)),
            )
            .buffered(8)
            .collect(),
        );
        let mut out = Vec::with_capacity(rows);
        for a in answers {
            let a = a?;
            let data = a["outputs"]
                .as_array()
                .and_then(|o| o.iter().find(|o| o["name"] == self.output.as_str()))
                .and_then(|o| o["data"].as_array())
                .ok_or_else(|| {
                    PipelineError::Message(format!(
                        "the server's answer has no output {:?}",
                        self.output
                    ))
                })?;
            out.extend(data.iter().map(|x| x.as_f64().unwrap_or(f64::NAN) as f32));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(c: &[Column]) -> Vec<String> {
        match c.first() {
            Some(Column::Text(v)) => v.clone(),
            _ => panic!("no label column"),
        }
    }

    #[test]
    fn classes_are_counted_as_eval_counts_them() {
        let post = Post {
            task: Some(Task::Binary),
            labels: vec!["no".into(), "yes".into()],
            output: "p".into(),
        };
        // P(class 1) of 0.5 is class 1, as metrics::binary counts it.
        let c = post.columns(vec![0.2, 0.5, 0.9], 1).unwrap();
        assert_eq!(labels(&c), ["no", "yes", "yes"]);
        assert_eq!(post.names(1), ["label", "p_no", "p_yes"]);
        // Two scores per row: softmax, then the same rule.
        let c = post.columns(vec![1.0, 1.0, 3.0, 0.0], 2).unwrap();
        assert_eq!(labels(&c), ["yes", "no"]);
        let multi = Post {
            task: Some(Task::Multiclass),
            labels: vec!["a".into(), "b".into(), "c".into()],
            output: "p".into(),
        };
        let c = multi
            .columns(vec![0.1, 0.7, 0.2, 0.5, 0.2, 0.3], 3)
            .unwrap();
        assert_eq!(labels(&c), ["b", "a"]);
        assert!(multi.columns(vec![0.1, 0.9], 2).is_err());
    }
}

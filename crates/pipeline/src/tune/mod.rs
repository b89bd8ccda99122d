//! `hone tune`: serves one model in-process on loopback under each serving
//! configuration it tries, measures it with `hone bench`'s engine, and picks
//! the best for the objective. The search goes a dimension at a time
//! (instances × intra-op threads, queue delay, max batch size, graph
//! optimization), each from the best so far, and drops the rest of a
//! dimension once two values in a row lose clearly. The default and the
//! winner are measured once more side by side at the end, so the gain it
//! reports is not an artefact of drift during the search.

mod knobs;
mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hone_core::{Error, Result};
use hone_loadgen::{Data, Load, Plan, Protocol};
use hone_server::config::{ModelConfig, VersionPolicy};
use hone_server::{ModelControl, Server, ServerOptions};

pub use knobs::{Knobs, Objective, Trial, TuneOptions};
pub use report::TuneReport;

/// How much the winner must beat the default by to be written.
const MARGIN: f64 = 1.03;

struct Search<'a> {
    opts: &'a TuneOptions,
    base: ModelConfig,
    work: PathBuf,
    /// The newest version: what the default serves.
    newest: u64,
    /// The other versions tried with --include-optimized.
    others: Vec<u64>,
    trial: Duration,
    deadline: Instant,
    /// What one trial costs in wall time, learnt from the first.
    cost: Duration,
    trials: Vec<Trial>,
    progress: &'a (dyn Fn(&str) + Sync),
}

impl Search<'_> {
    /// True when `a` is better than `b` for the objective.
    fn better(&self, a: &Trial, b: &Trial) -> bool {
        if !a.ok() || !b.ok() {
            return a.ok();
        }
        let fits = |t: &Trial| {
            self.opts
                .max_p99
                .is_none_or(|m| t.p99_us as u128 <= m.as_micros())
        };
        match (fits(a), fits(b)) {
            (true, false) => return true,
            (false, true) => return false,
            _ => {}
        }
        match self.opts.objective {
            Objective::Throughput => a.throughput > b.throughput,
            Objective::Latency => {
                (a.p99_us, -a.throughput as i64) < (b.p99_us, -b.throughput as i64)
            }
        }
    }

    /// Better by more than run-to-run noise (3 % on the objective, in the
    /// final side-by-side runs): a change to the repository must pay.
    fn clearly_better(&self, a: &Trial, b: &Trial) -> bool {
        self.better(a, b)
            && match self.opts.objective {
                Objective::Throughput => a.throughput > b.throughput * MARGIN,
                Objective::Latency => (a.p99_us as f64) * MARGIN < b.p99_us as f64,
            }
    }

    /// Clearly worse: more than 10 % behind on the objective.
    fn loses_clearly(&self, a: &Trial, best: &Trial) -> bool {
        !a.ok()
            || match self.opts.objective {
                Objective::Throughput => a.throughput < best.throughput * 0.9,
                Objective::Latency => a.p99_us as f64 > best.p99_us as f64 * 1.1,
            }
    }

    fn room_for(&self, n: u32) -> bool {
        Instant::now() + self.cost * n < self.deadline
    }

    /// Serves the model under `knobs` (None: the repository's own config)
    /// and measures it.
    async fn measure(&mut self, stage: &str, knobs: Option<&Knobs>) -> Result<Trial> {
        let started = Instant::now();
        let mut config = match knobs {
            Some(k) => k.apply(&self.base),
            None => self.base.clone(),
        };
        // Exactly the version under test; the policy written back with
        // --write is the user's own (or pins a faster older version).
        let version = knobs.map_or(self.newest, |k| k.version);
        config.version_policy = VersionPolicy::Specific(vec![version as i64]);
        let dir = self.work.join(&self.opts.model);
        publish_config(&dir.join("config.pbtxt"), &config)?;
        let mut o = ServerOptions::ephemeral(&self.work);
        o.metrics_port = None;
        o.model_control = ModelControl::None;
        if self.opts.protocol != Protocol::Grpc {
            o.grpc_port = None;
        }
        let server = Server::start(o).await?;
        let loaded = server.state.repo.models().get(&self.opts.model, None);
        let knobs = match (&loaded, knobs) {
            (_, Some(k)) => k.clone(),
            (Ok(m), None) => Knobs::of(&m.config, version),
            (Err(_), None) => Knobs::of(&config, version),
        };
        let label = knobs.label();
        (self.progress)(&format!("{stage:<10} {label}"));
        let mut trial = Trial {
            stage: stage.into(),
            label,
            knobs,
            throughput: 0.0,
            p50_us: 0,
            p99_us: 0,
            mean_batch: 0.0,
            error: None,
            pareto: false,
        };
        match loaded {
            Err(e) => trial.error = Some(e.message),
            Ok(_) => {
                let plan = Plan {
                    server: hone_client::Options {
                        url: format!("http://{}", server.http_addr),
                        ..hone_client::Options::default()
                    },
                    grpc_url: server
                        .grpc_addr
                        .map(|a| format!("http://{a}"))
                        .unwrap_or_default(),
                    model: self.opts.model.clone(),
                    version: None,
                    protocol: self.opts.protocol,
                    loads: vec![Load::Concurrency(self.opts.concurrency)],
                    duration: self.trial,
                    warmup: self.trial / 3,
                    batch: 1,
                    data: Data::Random,
                    shapes: Vec::new(),
                };
                match hone_loadgen::run(&plan, &|_| {}).await {
                    Ok(r) => {
                        if let Some(s) = r.steps.first() {
                            trial.throughput = s.throughput;
                            trial.p50_us = s.latency_us.p50;
                            trial.p99_us = s.latency_us.p99;
                            trial.mean_batch = s.server.map_or(0.0, |v| v.mean_batch);
                            if !s.errors.is_empty() {
                                trial.error = Some(format!("errors: {:?}", s.errors));
                            }
                        }
                    }
                    Err(e) => trial.error = Some(e.message),
                }
            }
        }
        server.shutdown().await;
        self.cost = self.cost.max(started.elapsed());
        self.trials.push(trial.clone());
        Ok(trial)
    }

    /// Tries `candidates` in order from `best`, keeping the better; stops
    /// the dimension after two clear losses in a row, or when the budget
    /// (less the final comparison) runs out.
    async fn stage(&mut self, name: &str, best: Trial, candidates: Vec<Knobs>) -> Result<Trial> {
        let mut best = best;
        let mut losses = 0;
        for k in candidates {
            if self.trials.iter().any(|t| t.knobs == k) {
                continue;
            }
            if !self.room_for(3) {
                (self.progress)("time budget reached: the search stops here");
                break;
            }
            let t = self.measure(name, Some(&k)).await?;
            if self.better(&t, &best) {
                best = t;
                losses = 0;
            } else if self.loses_clearly(&t, &best) {
                losses += 1;
                if losses == 2 {
                    break;
                }
            }
        }
        Ok(best)
    }
}

/// Writes `config` as the model's config.pbtxt, atomically.
fn publish_config(path: &Path, config: &ModelConfig) -> Result<()> {
    crate::publish::write_atomic(path, config.to_pbtxt().as_bytes())
        .map_err(|e| Error::internal(e.to_string()))
}

/// The numeric version directories of `dir` holding `file`, oldest first.
fn versions(dir: &Path, file: &str) -> Result<Vec<(u64, PathBuf)>> {
    let read =
        std::fs::read_dir(dir).map_err(|e| Error::invalid(format!("{}: {e}", dir.display())))?;
    let mut v: Vec<(u64, PathBuf)> = read
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u64 = e.file_name().to_str()?.parse().ok()?;
            e.path().join(file).is_file().then_some((v, e.path()))
        })
        .collect();
    v.sort();
    if v.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no version directory holds {file}",
            dir.display()
        )));
    }
    Ok(v)
}

/// Copies the files of a version directory (the model and any external
/// weight files beside it) into `to`.
fn copy_version(from: &Path, to: &Path) -> Result<()> {
    let io = |e: std::io::Error| Error::internal(format!("{}: {e}", from.display()));
    std::fs::create_dir_all(to).map_err(io)?;
    for e in std::fs::read_dir(from).map_err(io)? {
        let e = e.map_err(io)?;
        if e.file_type().map_err(io)?.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).map_err(io)?;
        }
    }
    Ok(())
}

/// Runs the search; `progress` gets a line per configuration.
pub async fn run(opts: &TuneOptions, progress: &(dyn Fn(&str) + Sync)) -> Result<TuneReport> {
    if opts.concurrency == 0 {
        return Err(Error::invalid("--concurrency must be at least 1"));
    }
    let dir = opts.repository.join(&opts.model);
    let config_path = dir.join("config.pbtxt");
    let base = match std::fs::read_to_string(&config_path) {
        Ok(text) => ModelConfig::parse(&text)?.0,
        Err(_) => ModelConfig::default(),
    };
    let mut found = versions(&dir, &base.default_model_filename)?;
    let newest = found.last().map_or(1, |(v, _)| *v);
    if !opts.include_optimized {
        found.retain(|(v, _)| *v == newest);
    }
    let work =
        std::env::temp_dir().join(format!("hone-tune-{}-{}", std::process::id(), opts.model));
    let _ = std::fs::remove_dir_all(&work);
    for (v, path) in &found {
        copy_version(path, &work.join(&opts.model).join(v.to_string()))?;
    }
    let others = found
        .iter()
        .rev()
        .map(|(v, _)| *v)
        .filter(|&v| v != newest)
        .collect();
    let cores = hone_runtime::sizing::cores() as u32;
    // About a dozen configurations, each measured for its trial and a third
    // of it in warm-up, plus loading.
    let trial = opts.trial.unwrap_or_else(|| {
        (opts.budget / 20).clamp(Duration::from_millis(500), Duration::from_secs(15))
    });
    let started = Instant::now();
    let mut s = Search {
        opts,
        base,
        work: work.clone(),
        newest,
        others,
        trial,
        deadline: started + opts.budget,
        cost: Duration::ZERO,
        trials: Vec::new(),
        progress,
    };
    let outcome = search(&mut s, cores).await;
    let _ = std::fs::remove_dir_all(&work);
    let (default, best) = outcome?;
    let mut written = None;
    let wins = best.knobs != default.knobs && s.clearly_better(&best, &default);
    if opts.write && wins {
        let backup = dir.join("config.pbtxt.before-tune");
        if config_path.is_file() {
            std::fs::copy(&config_path, &backup)
                .map_err(|e| Error::internal(format!("back up {}: {e}", config_path.display())))?;
        }
        let mut winner = best.knobs.apply(&s.base);
        if best.knobs.version != newest {
            // An older (optimized) version won: serve exactly it.
            winner.version_policy = VersionPolicy::Specific(vec![best.knobs.version as i64]);
        }
        publish_config(&config_path, &winner)?;
        written = Some(config_path);
    }
    Ok(report::build(
        opts,
        cores,
        trial,
        started.elapsed(),
        s.trials,
        default,
        best,
        wins,
        written,
    ))
}

/// The stages, then the default and the winner again side by side.
async fn search(s: &mut Search<'_>, cores: u32) -> Result<(Trial, Trial)> {
    let default = s.measure("default", None).await?;
    if !default.ok() {
        return Err(Error::invalid(format!(
            "the model does not serve under its own configuration: {}",
            default.error.clone().unwrap_or_default()
        )));
    }
    let mut d = default.knobs.clone();
    let mut best = default.clone();
    if !s.others.is_empty() {
        let cands = s
            .others
            .iter()
            .map(|&v| Knobs {
                version: v,
                ..d.clone()
            })
            .collect();
        best = s.stage("version", best, cands).await?;
        d.version = best.knobs.version;
    }
    // Instances × intra-op threads that use every core, then half of them.
    let mut pairs = Vec::new();
    for used in [cores, (cores / 2).max(1)] {
        let mut i = 1;
        while i <= used {
            if used % i == 0 {
                pairs.push((i, used / i));
            }
            i *= 2;
        }
        if !pairs.contains(&(used, 1)) {
            pairs.push((used, 1));
        }
    }
    let with = |base: &Knobs, f: &dyn Fn(&mut Knobs)| {
        let mut k = base.clone();
        f(&mut k);
        k
    };
    let cands = pairs
        .iter()
        .map(|&(i, t)| with(&d, &|k| (k.instances, k.intra_op_threads) = (i, t)))
        .collect();
    best = s.stage("instances", best, cands).await?;
    if d.max_batch_size > 0 {
        let b = best.knobs.clone();
        let cands = [0, 100, 500, 2000]
            .iter()
            .map(|&us| with(&b, &|k| k.queue_delay_us = us))
            .collect();
        best = s.stage("delay", best, cands).await?;
        let b = best.knobs.clone();
        let c = s.opts.concurrency as u32;
        let mut sizes: Vec<u32> = vec![c, 2 * c, d.max_batch_size];
        sizes.dedup();
        let cands = sizes
            .into_iter()
            .map(|m| with(&b, &|k| k.max_batch_size = m))
            .collect();
        best = s.stage("max batch", best, cands).await?;
    }
    let b = best.knobs.clone();
    let cands = [Some(2), Some(1)]
        .iter()
        .map(|&l| with(&b, &|k| k.graph_level = l))
        .collect();
    best = s.stage("graph", best, cands).await?;
    // The final word: both again, one after the other.
    let again_default = s.measure("final", None).await?;
    let again_best = if best.knobs == default.knobs {
        again_default.clone()
    } else {
        let k = best.knobs.clone();
        s.measure("final", Some(&k)).await?
    };
    Ok((again_default, again_best))
}

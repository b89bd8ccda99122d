//! `hone score`: batch predictions for a file, in process or through a
//! running server.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use hone_pipeline::score::{self, ScoreOptions};

#[derive(clap::Args)]
pub struct ScoreArgs {
    /// The model: an ONNX file, a version directory, or REPOSITORY/NAME
    /// (its newest version). Its card, when there is one, gives the
    /// feature encoding and the class labels.
    model: PathBuf,
    /// The rows: a CSV or Parquet file with the model's feature columns,
    /// or a .npy of the model's input.
    #[arg(long)]
    data: PathBuf,
    /// Where the predictions go: .parquet, else CSV. `{shard}` in the name
    /// becomes this process's shard index.
    #[arg(short, long)]
    output: PathBuf,
    /// An input column copied to the output beside the predictions
    /// (repeatable) [default: every column that is neither a feature nor
    /// the target].
    #[arg(long = "key", value_name = "COLUMN")]
    keys: Vec<String>,
    /// Rows per chunk: what is read, encoded and inferred at once.
    #[arg(long, default_value_t = 8192)]
    chunk_rows: usize,
    /// Score through a running hone (or any KServe V2) server instead of in
    /// process: http[s]://HOST:PORT.
    #[arg(long)]
    url: Option<String>,
    /// The model's name on the server [default: the repository
    /// directory's name].
    #[arg(long, requires = "url")]
    name: Option<String>,
    /// File with the server's inference key.
    #[arg(long, requires = "url")]
    api_key_file: Option<PathBuf>,
    /// PEM CA certificate(s) of an https server.
    #[arg(long, requires = "url")]
    cacert: Option<PathBuf>,
    /// Split the file among this many processes (a Kubernetes indexed
    /// Job): this one scores every SHARDS-th chunk from --shard-index.
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// This process's shard [default: $JOB_COMPLETION_INDEX, else 0].
    #[arg(long)]
    shard_index: Option<usize>,
    /// Print the report as JSON, no progress bar.
    #[arg(long)]
    json: bool,
}

pub fn run(a: ScoreArgs) -> ExitCode {
    let shard = match a.shard_index {
        Some(i) => i,
        None => match std::env::var("JOB_COMPLETION_INDEX") {
            Ok(v) => match v.trim().parse() {
                Ok(i) => i,
                Err(_) => {
                    eprintln!("hone score: JOB_COMPLETION_INDEX={v:?} is not a shard index");
                    return ExitCode::FAILURE;
                }
            },
            Err(_) => 0,
        },
    };
    if a.shards > 1 && !a.output.to_string_lossy().contains("{shard}") {
        eprintln!(
            "hone score: --shards {} with -o {}: every shard would write the same file; put {{shard}} in the name",
            a.shards,
            a.output.display()
        );
        return ExitCode::FAILURE;
    }
    let output = PathBuf::from(
        a.output
            .to_string_lossy()
            .replace("{shard}", &shard.to_string()),
    );
    let opts = ScoreOptions {
        model: a.model,
        data: a.data,
        output,
        keys: (!a.keys.is_empty()).then_some(a.keys),
        chunk_rows: a.chunk_rows.max(1),
        server: a.url.map(|url| hone_client::Options {
            url,
            admin_key_file: None,
            api_key_file: a.api_key_file,
            cacert: a.cacert,
        }),
        name: a.name,
        shards: a.shards,
        shard,
    };
    let bar = if a.json || !std::io::stderr().is_terminal() {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} rows  {per_sec}  eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    };
    let progress = |rows: u64, total: Option<u64>| {
        match total {
            Some(t) => bar.set_length(t.max(rows)),
            None => bar.set_length(rows),
        }
        bar.set_position(rows);
    };
    let r = score::score(&opts, &progress);
    bar.finish_and_clear();
    match r {
        Ok(r) => {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                println!(
                    "scored {} rows in {:.2} s ({:.0} rows/s, {}) → {}{}",
                    r.rows,
                    r.seconds,
                    r.rows_per_second,
                    r.engine,
                    r.output,
                    r.shard.map(|s| format!(" (shard {s})")).unwrap_or_default()
                );
                println!("columns: {}", r.columns.join(", "));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hone score: {e}");
            ExitCode::FAILURE
        }
    }
}

//! `hone profile`: flags in, `hone_pipeline::profile` out, a summary printed.

use std::path::PathBuf;
use std::process::ExitCode;

use hone_pipeline::profile::{ProfileOptions, profile, profile_path};

#[derive(clap::Args)]
pub struct ProfileArgs {
    /// The data the model's inputs and outputs are profiled on: a CSV or
    /// Parquet file (every column but --target feeds the first input) or a
    /// directory of <input>.npy files.
    data: PathBuf,
    /// The ONNX model.
    #[arg(long)]
    model: PathBuf,
    /// A label column in the data, left out of the inputs [default: the
    /// target in the model's card, else label].
    #[arg(long)]
    target: Option<String>,
    /// Where to write (default: MODEL.profile.json beside the model, where
    /// `hone serve` reads it).
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// An input column whose values are category codes: its drift is
    /// measured on per-category frequencies, and codes outside the data's
    /// are counted as unseen. Repeatable.
    #[arg(long, value_name = "COLUMN")]
    categorical: Vec<String>,
    /// Print the profile as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: ProfileArgs) -> ExitCode {
    let output = a.output.clone().unwrap_or_else(|| profile_path(&a.model));
    let opts = ProfileOptions {
        target: crate::common::target_or_card(a.target, &a.model),
        model: a.model,
        data: a.data,
        output: output.clone(),
        categorical: a.categorical,
    };
    match profile(&opts) {
        Ok(p) => {
            if a.json {
                println!("{}", serde_json::to_string(&p).unwrap_or_default());
            } else {
                println!(
                    "profiled {} rows: {} input features of {:?}, {} output columns of {:?}\nwrote {}",
                    p.rows,
                    p.inputs.len(),
                    p.input,
                    p.outputs.len(),
                    p.output,
                    output.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hone profile: {e}");
            ExitCode::FAILURE
        }
    }
}

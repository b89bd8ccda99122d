//! `hone package`: flags in, `hone_package` out, the layer table or JSON printed.

use std::path::PathBuf;
use std::process::ExitCode;

use hone_package::k8s::{self, K8sOptions};

#[derive(clap::Args)]
pub struct PackageArgs {
    /// The Triton-style repository the image serves (and the manifests size).
    #[arg(long)]
    model_repository: PathBuf,
    /// Write the image here: one tar that is an OCI layout and a
    /// `docker load` archive.
    #[arg(short = 'o', long = "output", value_name = "IMAGE.tar")]
    output: Option<PathBuf>,
    /// The image's NAME[:TAG] (default hone:latest).
    #[arg(long, default_value = "hone")]
    tag: String,
    /// Stack on this base image (an OCI layout directory, or an OCI or
    /// docker-archive tar, e.g. distroless/cc) instead of the minimal
    /// userland taken from this machine.
    #[arg(long, value_name = "BASE.tar|OCI_DIR")]
    base: Option<PathBuf>,
    /// Leave the models out (they come from a volume or KServe's storage
    /// initializer at /models or /mnt/models).
    #[arg(long)]
    no_models: bool,
    /// The image's platform; only this machine's (linux/amd64) can be built.
    #[arg(long, default_value = "linux/amd64")]
    platform: String,
    /// Also write Kubernetes manifests into this directory.
    #[arg(long, value_name = "OUT_DIR")]
    k8s: Option<PathBuf>,
    /// The image reference the manifests pull (default: --tag).
    #[arg(long, value_name = "REF")]
    image: Option<String>,
    #[arg(long, default_value_t = 2)]
    replicas: u32,
    /// Also write a KServe ClusterServingRuntime and an InferenceService.
    #[arg(long)]
    kserve: bool,
    /// For --kserve: the repository's storage URI (s3://, gs://, pvc://);
    /// without it the InferenceService serves the models in the image.
    #[arg(long)]
    storage_uri: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn package(a: PackageArgs) -> ExitCode {
    let fail = |m: String| {
        eprintln!("hone package: {m}");
        ExitCode::FAILURE
    };
    if a.output.is_none() && a.k8s.is_none() {
        return fail("nothing to do: give -o IMAGE.tar, --k8s OUT_DIR or both".into());
    }
    if a.platform != "linux/amd64" || !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return fail(format!(
            "--platform {}: the image carries this machine's binaries, so only linux/amd64 built on linux/amd64",
            a.platform
        ));
    }
    let reference = hone_package::reference(&a.tag);
    let mut out = serde_json::Map::new();
    let mut text = String::new();
    if let Some(output) = &a.output {
        let hone = match std::env::current_exe() {
            Ok(p) => p,
            Err(e) => return fail(format!("cannot find the hone binary: {e}")),
        };
        // The verified library this hone loads (fetched if not cached).
        let onnxruntime = match hone_runtime::init() {
            Ok(p) => p.to_path_buf(),
            Err(e) => return fail(e.message),
        };
        let created = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .map(rfc3339);
        let opts = hone_package::Options {
            repository: a.model_repository.clone(),
            output: output.clone(),
            tag: a.tag.clone(),
            base: a.base.clone(),
            no_models: a.no_models,
            hone,
            onnxruntime,
            created,
        };
        match hone_package::package(&opts) {
            Ok(r) => {
                text += &hone_package::render(&r);
                out.insert("image".into(), serde_json::to_value(&r).unwrap_or_default());
            }
            Err(e) => return fail(e.to_string()),
        }
    }
    if let Some(dir) = &a.k8s {
        let model_bytes = match hone_package::repo::scan(&a.model_repository) {
            Ok(v) => v
                .iter()
                .filter_map(|v| {
                    std::fs::metadata(
                        a.model_repository
                            .join(&v.model)
                            .join(&v.version)
                            .join(&v.file),
                    )
                    .ok()
                })
                .map(|m| m.len())
                .sum(),
            Err(e) => return fail(e.to_string()),
        };
        let image = a.image.clone().unwrap_or(reference.clone());
        let o = K8sOptions {
            name: k8s::name_from(&image),
            image,
            replicas: a.replicas.max(1),
            kserve: a.kserve,
            storage_uri: a.storage_uri.clone(),
            model_bytes,
        };
        match k8s::write(&o, dir) {
            Ok(files) => {
                for f in &files {
                    text += &format!("wrote {}\n", f.display());
                }
                out.insert(
                    "manifests".into(),
                    files.iter().map(|f| f.display().to_string()).collect(),
                );
            }
            Err(e) => return fail(e.to_string()),
        }
    }
    if a.json {
        println!("{}", serde_json::Value::Object(out));
    } else {
        print!("{text}");
    }
    ExitCode::SUCCESS
}

/// Seconds since the epoch as RFC 3339 UTC (civil-from-days, no time crate).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn epoch_seconds_become_rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_796_083_200), "2026-12-01T00:00:00Z");
    }
}

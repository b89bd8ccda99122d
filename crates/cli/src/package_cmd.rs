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
    /// The image's NAME[:TAG]; a NAME without a tag gets `:latest`.
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
    /// The image reference the manifests pull, with its registry
    /// (`ghcr.io/team/fraud:3`); without --image, --tag, which must then
    /// name a registry too.
    #[arg(long, value_name = "REF")]
    image: Option<String>,
    /// The fewest replicas the autoscaler keeps.
    #[arg(long, default_value_t = 2)]
    replicas: u32,
    /// What scales the pods: cpu (an HPA; metrics-server only),
    /// queue-time (an HPA on hone's queue time through prometheus-adapter,
    /// whose Helm values are written beside) or keda (a KEDA ScaledObject
    /// on hone's queue time from Prometheus; with --kserve, KServe's KEDA
    /// autoscaler class).
    #[arg(long, value_enum, default_value_t = AutoscaleArg::Cpu)]
    autoscale: AutoscaleArg,
    /// With --autoscale keda: the Prometheus KEDA queries.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://prometheus-operated.monitoring.svc:9090"
    )]
    prometheus_url: String,
    /// With --autoscale keda: scale to no pod when idle, and wake when this
    /// PromQL request rate is above zero. It must count requests before
    /// they reach a pod (an idle model has no pod to report its queue),
    /// e.g. your ingress controller's rate for the Service.
    #[arg(long, value_name = "PROMQL")]
    scale_to_zero: Option<String>,
    /// A label for the ServiceMonitor, KEY=VALUE (repeatable): the one
    /// your Prometheus selects on, e.g. release=kube-prometheus-stack.
    #[arg(long, value_name = "KEY=VALUE")]
    monitor_label: Vec<String>,
    /// With --no-models: the PersistentVolumeClaim that holds the
    /// repository, mounted read-only where the image reads its models.
    #[arg(long, value_name = "CLAIM")]
    models_pvc: Option<String>,
    /// Write a KServe ServingRuntime, an InferenceService that uses it and
    /// a PodMonitor, instead of the Deployment, Service, autoscaler and
    /// disruption budget (KServe runs the pods).
    #[arg(long, conflicts_with = "modelmesh")]
    kserve: bool,
    /// Write a KServe ModelMesh ServingRuntime (multi-model: ModelMesh
    /// places, loads and evicts models on hone's pods, which run with
    /// --modelmesh-port) and an InferenceService on it, pulled from
    /// --storage-uri, instead of the Deployment and its companions.
    #[arg(long, requires = "storage_uri")]
    modelmesh: bool,
    /// For --kserve and --modelmesh: the model's storage URI (s3://, gs://,
    /// pvc://); without it a --kserve InferenceService serves the models in
    /// the image.
    #[arg(long)]
    storage_uri: Option<String>,
    /// Also write a Kubernetes indexed Job to this file that scores a
    /// file on the cluster with `hone score` in --job-shards pods (apply it
    /// on its own: it runs once; keep it out of the --k8s folder).
    #[arg(long, value_name = "FILE.yaml", requires_all = ["k8s", "job_data"])]
    job: Option<PathBuf>,
    /// With --job: CLAIM:PATH, the PersistentVolumeClaim holding the input
    /// file and the path of the file in it (CSV, Parquet or .npy).
    #[arg(long, value_name = "CLAIM:PATH")]
    job_data: Option<String>,
    /// With --job: each pod's output, relative to the claim; `{shard}` is
    /// the pod's index.
    #[arg(long, default_value = "scores/part-{shard}.parquet")]
    job_output: String,
    /// With --job: pods the file is split among.
    #[arg(long, default_value_t = 4)]
    job_shards: u32,
    /// With --job: the model to score with [default: the repository's only model].
    #[arg(long, value_name = "NAME")]
    job_model: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AutoscaleArg {
    Cpu,
    QueueTime,
    Keda,
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
    // Measured before the image is built: building it holds its layers in
    // this process's memory, which a pod serving the repository does not.
    let peak = match &a.k8s {
        Some(_) => match measure_serving_memory(&a.model_repository) {
            Ok(b) => Some(b),
            Err(e) => return fail(format!("--k8s: cannot size memory: {e}")),
        },
        None => None,
    };
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
        let job = match a.job.as_ref().map(|p| score_job(&a, p, dir)).transpose() {
            Ok(j) => j,
            Err(e) => return fail(format!("--job: {e}")),
        };
        let image = a.image.clone().unwrap_or(reference.clone());
        if let Err(e) = k8s::check_registry(&image) {
            return fail(format!("--k8s: {e}"));
        }
        if a.scale_to_zero.is_some() && !matches!(a.autoscale, AutoscaleArg::Keda) {
            return fail(
                "--scale-to-zero needs --autoscale keda (an HPA keeps at least one pod)".into(),
            );
        }
        if a.modelmesh && !matches!(a.autoscale, AutoscaleArg::Cpu) {
            return fail(
                "--autoscale with --modelmesh: ModelMesh scales models across its pods itself; the runtime's pods are set by --replicas".into(),
            );
        }
        if a.kserve && matches!(a.autoscale, AutoscaleArg::QueueTime) {
            return fail(
                "--autoscale queue-time with --kserve: KServe scales with its own classes; use cpu (KServe's HPA) or keda".into(),
            );
        }
        // KServe fetches the repository itself: from --storage-uri, or
        // from the claim as a pvc:// URI.
        let storage_uri = match (&a.storage_uri, &a.models_pvc) {
            (Some(u), _) => Some(u.clone()),
            (None, Some(claim)) if a.kserve => Some(format!("pvc://{claim}")),
            _ => None,
        };
        if a.no_models && a.models_pvc.is_none() && !(a.kserve && storage_uri.is_some()) {
            return fail(
                "--no-models with --k8s: the pods would serve an empty repository; give --models-pvc CLAIM (mounted read-only at /models; with --kserve, --storage-uri works too), or build the image with its models".into(),
            );
        }
        let monitor_labels = match a
            .monitor_label
            .iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => Err(format!("--monitor-label {l}: expected KEY=VALUE")),
            })
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(l) => l,
            Err(e) => return fail(e),
        };
        let Some(peak) = peak else {
            return fail("--k8s: memory was not measured".into());
        };
        let memory = k8s::Memory::from_peak_rss(peak);
        text += &format!(
            "memory: hone serve on this repository peaked at {} MiB RSS; request {} Mi, limit {} Mi\n",
            peak >> 20,
            memory.request_mib,
            memory.limit_mib
        );
        out.insert(
            "memory".into(),
            serde_json::json!({"peak_rss_bytes": peak, "request_mib": memory.request_mib, "limit_mib": memory.limit_mib}),
        );
        let o = K8sOptions {
            name: k8s::name_from(&image),
            image,
            replicas: a.replicas.max(1),
            kserve: a.kserve,
            modelmesh: a.modelmesh,
            storage_uri,
            memory,
            autoscale: match a.autoscale {
                AutoscaleArg::Cpu => k8s::Autoscale::Cpu,
                AutoscaleArg::QueueTime => k8s::Autoscale::QueueTime,
                AutoscaleArg::Keda => k8s::Autoscale::Keda {
                    prometheus: a.prometheus_url.clone(),
                    wake: a.scale_to_zero.clone(),
                },
            },
            monitor_labels,
            models_claim: a.models_pvc.clone(),
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
        if let (Some(path), Some(job)) = (&a.job, &job) {
            match k8s::write_job(&o, job, path) {
                Ok(p) => {
                    text += &format!(
                        "wrote {} (an indexed Job: {} pods score {} on claim {})\n",
                        p.display(),
                        job.shards,
                        job.input,
                        job.claim
                    );
                    out.insert("job".into(), p.display().to_string().into());
                }
                Err(e) => return fail(e.to_string()),
            }
        }
    }
    if a.json {
        println!("{}", serde_json::Value::Object(out));
    } else {
        print!("{text}");
    }
    ExitCode::SUCCESS
}

/// The scoring Job's settings from the flags: the claim and file, and the
/// model (the repository's only one unless named).
fn score_job(
    a: &PackageArgs,
    path: &std::path::Path,
    k8s_dir: &std::path::Path,
) -> Result<k8s::ScoreJob, String> {
    let abs = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    if abs(path).starts_with(abs(k8s_dir)) {
        return Err(format!(
            "{} is inside the --k8s folder, so `kubectl apply -R` of the server would also start the scoring; write it elsewhere",
            path.display()
        ));
    }
    let data = a.job_data.as_deref().unwrap_or_default();
    let (claim, input) = match data.split_once(':') {
        Some((c, p)) if !c.is_empty() && !p.is_empty() => (c, p.trim_start_matches('/')),
        _ => {
            return Err(format!(
                "--job-data {data:?}: expected CLAIM:PATH (a PersistentVolumeClaim and the file's path in it)"
            ));
        }
    };
    if a.job_shards == 0 {
        return Err("--job-shards must be at least 1".into());
    }
    if a.job_shards > 1 && !a.job_output.contains("{shard}") {
        return Err(format!(
            "--job-output {:?}: every pod would write the same file; put {{shard}} in it",
            a.job_output
        ));
    }
    let model = match &a.job_model {
        Some(m) => m.clone(),
        None => {
            let names: Vec<String> = std::fs::read_dir(&a.model_repository)
                .map_err(|e| format!("cannot read {}: {e}", a.model_repository.display()))?
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| !n.starts_with('.'))
                .collect();
            match names.as_slice() {
                [one] => one.clone(),
                _ => {
                    return Err(format!(
                        "the repository holds {} models ({}); name one with --job-model",
                        names.len(),
                        names.join(", ")
                    ));
                }
            }
        }
    };
    Ok(k8s::ScoreJob {
        model,
        claim: claim.to_string(),
        input: input.to_string(),
        output: a.job_output.trim_start_matches('/').to_string(),
        shards: a.job_shards,
    })
}

/// Serves the repository in this process, as `hone serve` would (every
/// model loaded, with its instances), and returns the peak RSS: what a pod
/// needs, measured rather than guessed from file sizes.
fn measure_serving_memory(repo: &std::path::Path) -> Result<u64, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let mut o = hone_server::ServerOptions::ephemeral(repo);
        o.grpc_port = None;
        o.metrics_port = None;
        let server = hone_server::Server::start(o)
            .await
            .map_err(|e| e.to_string())?;
        let client = hone_client::Client::new(&hone_client::Options {
            url: format!("http://{}", server.http_addr),
            ..hone_client::Options::default()
        })
        .map_err(|e| e.to_string())?;
        let index = client
            .call(
                hone_client::Access::Read,
                hone_client::Method::POST,
                "/v2/repository/index",
                None,
            )
            .await
            .map_err(|e| e.to_string());
        server.shutdown().await;
        let index = index?;
        let failed = index
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m.get("state").and_then(serde_json::Value::as_str) != Some("READY"));
        match failed {
            Some(m) => Err(format!(
                "model '{}' does not load: {}",
                m.get("name")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("?"),
                m.get("reason")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("no reason given")
            )),
            None => Ok(()),
        }
    })?;
    peak_rss().ok_or_else(|| "cannot read /proc/self/status".into())
}

/// VmHWM: the most resident memory this process has held.
fn peak_rss() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
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

//! `hone package` end to end: an image of a repository with the shared mlp
//! and digits CNN, checked by skopeo and umoci, started from its unpacked
//! root filesystem as its own user and driven by tritonclient
//! (tests/deploy/image.py); reproducible digests; a base image stacked
//! under it; manifests validated against the official Kubernetes schemas and
//! KServe's CRDs (tests/deploy/manifests.py); bad input refused clearly.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{hone, run, s, venv, workspace};

fn repository(d: &Path, m: &Path) -> PathBuf {
    let repo = d.join("repo");
    for (name, file) in [
        ("mlp", "mlp/mlp.onnx"),
        ("digits", "digits_cnn/digits_cnn.onnx"),
    ] {
        std::fs::create_dir_all(repo.join(name).join("1")).unwrap();
        std::fs::copy(m.join(file), repo.join(name).join("1/model.onnx")).unwrap();
    }
    repo
}

fn package(args: &[&str]) -> serde_json::Value {
    let mut a = vec!["package"];
    a.extend_from_slice(args);
    a.push("--json");
    let o = hone(&a);
    assert!(
        o.status.success(),
        "hone {a:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn layers(r: &serde_json::Value) -> Vec<(String, String)> {
    r["image"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The image suite needs skopeo and umoci (`scripts/test.sh` installs
/// them): missing, it is skipped, saying so.
fn image_suite(image: &Path, work: &str) {
    if !["skopeo", "umoci"].into_iter().all(common::have_tool) {
        return;
    }
    let python = venv("tests/conformance/requirements.txt", "conformance-venv");
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join(work);
    run(Command::new(python)
        .arg(workspace().join("tests/deploy/image.py"))
        .arg(image)
        .arg("1")
        .arg(&work)
        .env(
            "PATH",
            format!(
                "{}:/usr/sbin:/sbin",
                std::env::var("PATH").unwrap_or_default()
            ),
        ));
}

#[test]
fn the_image_runs_and_is_reproducible() {
    let Some(m) = common::shared("the_image_runs_and_is_reproducible") else {
        return;
    };
    let d = common::tmp("package", "image");
    let repo = repository(&d, &m);
    let (a, b) = (d.join("a.tar"), d.join("b.tar"));
    let ra = package(&[
        "--model-repository",
        s(&repo),
        "-o",
        s(&a),
        "--tag",
        "hone-test:1",
    ]);
    let names: Vec<String> = layers(&ra).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["userland", "onnxruntime", "hone", "models"]);
    // Same inputs, same bytes: the digest is reproducible.
    let rb = package(&[
        "--model-repository",
        s(&repo),
        "-o",
        s(&b),
        "--tag",
        "hone-test:1",
    ]);
    assert_eq!(
        ra["image"]["manifest_digest"],
        rb["image"]["manifest_digest"]
    );
    common::assert_same_bytes(&a, &b);
    // Without models: the other layers are the very same blobs.
    let nm = d.join("no-models.tar");
    let rn = package(&[
        "--model-repository",
        s(&repo),
        "-o",
        s(&nm),
        "--tag",
        "hone-test:1",
        "--no-models",
    ]);
    assert_eq!(layers(&rn), layers(&ra)[..3]);
    image_suite(&a, "image-work");
}

#[test]
fn layers_stack_on_a_base_image() {
    let Some(m) = common::shared("layers_stack_on_a_base_image") else {
        return;
    };
    let d = common::tmp("package", "base");
    let repo = repository(&d, &m);
    // The base: an image that has a userland, as distroless/cc would.
    let base = d.join("base.tar");
    let rbase = package(&[
        "--model-repository",
        s(&repo),
        "-o",
        s(&base),
        "--tag",
        "base:1",
        "--no-models",
    ]);
    let img = d.join("on-base.tar");
    let r = package(&[
        "--model-repository",
        s(&repo),
        "-o",
        s(&img),
        "--tag",
        "hone-test:1",
        "--base",
        s(&base),
    ]);
    let l = layers(&r);
    let b = layers(&rbase);
    assert_eq!(l.len(), b.len() + 3, "{l:?}");
    for (i, (ours, theirs)) in l.iter().zip(&b).enumerate() {
        assert_eq!(ours.1, theirs.1, "base layer {i} kept byte for byte");
    }
    assert_eq!(l.last().unwrap().0, "models");
    image_suite(&img, "base-work");
    // The same base as a `docker save` archive (uncompressed layers named
    // in manifest.json), as skopeo writes one.
    let docker = d.join("base-docker.tar");
    let _ = std::fs::remove_file(&docker);
    run(Command::new("skopeo").args([
        "copy",
        &format!("oci-archive:{}:1", s(&base)),
        &format!("docker-archive:{}:base:1", s(&docker)),
    ]));
    let img2 = d.join("on-docker-base.tar");
    let r2 = package(&[
        "--model-repository",
        s(&repo),
        "-o",
        s(&img2),
        "--tag",
        "hone-test:1",
        "--base",
        s(&docker),
    ]);
    assert_eq!(layers(&r2).len(), b.len() + 3);
    let dst = d.join("docker-base-copy");
    let _ = std::fs::remove_dir_all(&dst);
    run(Command::new("skopeo").args([
        "copy",
        &format!("oci-archive:{}:1", s(&img2)),
        &format!("oci:{}:1", s(&dst)),
    ]));
    // A base with a corrupt blob is refused, not stacked on.
    let bad = d.join("bad-base.tar");
    let mut bytes = std::fs::read(&base).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&bad, bytes).unwrap();
    let o = hone(&[
        "package",
        "--model-repository",
        s(&repo),
        "-o",
        s(&d.join("x.tar")),
        "--base",
        s(&bad),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("base image"), "{err}");
}

#[test]
fn manifests_validate_against_the_real_schemas() {
    let Some(m) = common::shared("manifests_validate_against_the_real_schemas") else {
        return;
    };
    let d = common::tmp("package", "k8s");
    let repo = repository(&d, &m);
    let python = venv("tests/deploy/requirements.txt", "deploy-venv");
    let scanner = venv("tests/deploy/scan-requirements.txt", "scan-venv");
    let checkov = scanner.with_file_name("checkov");
    let kserve = workspace().join("../shared/schemas/kserve");
    let prometheus = workspace().join("../shared/schemas/prometheus-operator");
    let keda = workspace().join("../shared/schemas/keda");
    let wake = "sum(rate(nginx_ingress_controller_requests{service=\"fraud-model\"}[1m]))";
    for (dir, extra) in [
        (
            "queue",
            vec![
                "--autoscale",
                "queue-time",
                "--monitor-label",
                "release=kube-prometheus-stack",
            ],
        ),
        ("keda", vec!["--autoscale", "keda", "--scale-to-zero", wake]),
        ("kserve", vec!["--kserve"]),
        (
            "modelmesh",
            vec!["--modelmesh", "--storage-uri", "s3://models/hone/fraud"],
        ),
        (
            "kserve-keda",
            vec![
                "--kserve",
                "--storage-uri",
                "s3://models/hone",
                "--autoscale",
                "keda",
                "--scale-to-zero",
                wake,
                "--monitor-label",
                "release=kube-prometheus-stack",
            ],
        ),
    ] {
        let out = d.join(dir);
        let mut args = vec![
            "--model-repository",
            s(&repo),
            "--k8s",
            s(&out),
            "--image",
            "registry.example.com/team/fraud-model:3",
            "--replicas",
            "3",
        ];
        args.extend(extra);
        let r = package(&args);
        assert!(r["manifests"].as_array().unwrap().len() >= 4, "{r}");
        // Sized from the measured peak, not 512 MiB plus three times the files.
        let request = r["memory"]["request_mib"].as_u64().unwrap();
        assert!((64..512).contains(&request), "{r}");
        let workload = if dir.starts_with("kserve") {
            out.join("kserve/servingruntime.yaml")
        } else if dir == "modelmesh" {
            out.join("modelmesh/servingruntime.yaml")
        } else {
            out.join("deployment.yaml")
        };
        let w = std::fs::read_to_string(workload).unwrap();
        assert!(w.contains("fraud-model"), "{w}");
        assert!(w.contains(&format!("memory: \"{request}Mi\"")), "{w}");
        run(Command::new(&python)
            .arg(workspace().join("tests/deploy/manifests.py"))
            .arg(&out)
            .arg(&kserve)
            .arg(&prometheus)
            .arg(&keda));
        run(Command::new(&python)
            .arg(workspace().join("tests/deploy/scan.py"))
            .arg(&out)
            .arg(&checkov));
    }
    let hpa = std::fs::read_to_string(d.join("queue/hpa.yaml")).unwrap();
    assert!(
        hpa.contains("hone_queue_seconds_per_request") && hpa.contains("minReplicas: 3"),
        "{hpa}"
    );
    let values = std::fs::read_to_string(d.join("queue/prometheus-adapter.values")).unwrap();
    assert!(
        values.contains("as: hone_queue_seconds_per_request"),
        "{values}"
    );
    let sm =
        std::fs::read_to_string(d.join("queue/prometheus-operator/servicemonitor.yaml")).unwrap();
    assert!(sm.contains("release: \"kube-prometheus-stack\""), "{sm}");
    let so = std::fs::read_to_string(d.join("keda/keda/scaledobject.yaml")).unwrap();
    assert!(
        so.contains("minReplicaCount: 0") && so.contains("nginx_ingress_controller_requests"),
        "{so}"
    );
    assert!(!d.join("keda/hpa.yaml").exists());
    let isvc = std::fs::read_to_string(d.join("kserve/kserve/inferenceservice.yaml")).unwrap();
    assert!(isvc.contains("autoscalerClass: \"hpa\""), "{isvc}");
    assert!(!d.join("kserve/deployment.yaml").exists());
    let isvc = std::fs::read_to_string(d.join("kserve-keda/kserve/inferenceservice.yaml")).unwrap();
    assert!(
        isvc.contains("storageUri: \"s3://models/hone\"")
            && isvc.contains("autoscalerClass: \"keda\"")
            && isvc.contains("hone_pending_requests"),
        "{isvc}"
    );
    let mm = std::fs::read_to_string(d.join("modelmesh/modelmesh/servingruntime.yaml")).unwrap();
    for want in [
        "multiModel: true",
        "grpcEndpoint: \"port:8085\"",
        "grpcDataEndpoint: \"port:8001\"",
        "- \"--modelmesh-port\"",
    ] {
        assert!(mm.contains(want), "{want} missing:\n{mm}");
    }
    let isvc =
        std::fs::read_to_string(d.join("modelmesh/modelmesh/inferenceservice.yaml")).unwrap();
    assert!(
        isvc.contains("deploymentMode: \"ModelMesh\"") && isvc.contains("s3://models/hone/fraud"),
        "{isvc}"
    );
    assert!(!d.join("modelmesh/deployment.yaml").exists());
    let pm =
        std::fs::read_to_string(d.join("kserve-keda/prometheus-operator/podmonitor.yaml")).unwrap();
    assert!(pm.contains("release: \"kube-prometheus-stack\""), "{pm}");

    // Batch scoring on the cluster: an indexed Job beside the manifests.
    let job = d.join("jobs/score.yaml");
    let r = package(&[
        "--model-repository",
        s(&repo),
        "--k8s",
        s(&d.join("with-job")),
        "--image",
        "registry.example.com/team/fraud-model:3",
        "--job",
        s(&job),
        "--job-data",
        "scoring:in/rows.parquet",
        "--job-shards",
        "3",
        "--job-model",
        "mlp",
    ]);
    assert_eq!(r["job"], s(&job), "{r}");
    run(Command::new(python.with_file_name("kubernetes-validate"))
        .args(["--strict", "--quiet"])
        .arg(&job));
    let j = std::fs::read_to_string(&job).unwrap();
    for want in [
        "completionMode: \"Indexed\"",
        "completions: 3",
        "claimName: \"scoring\"",
        "\"/data/in/rows.parquet\"",
        "\"/data/scores/part-{shard}.parquet\"",
        "- \"score\"",
        "\"/models/mlp\"",
    ] {
        assert!(j.contains(want), "{want} missing:\n{j}");
    }

    // An image built without models runs on a claim that holds them.
    let out = d.join("claim");
    package(&[
        "--model-repository",
        s(&repo),
        "--k8s",
        s(&out),
        "--no-models",
        "--models-pvc",
        "fraud-models",
        "--image",
        "registry.example.com/team/fraud-model:3",
    ]);
    let dep = std::fs::read_to_string(out.join("deployment.yaml")).unwrap();
    assert!(dep.contains("claimName: \"fraud-models\""), "{dep}");
    assert!(dep.contains("mountPath: \"/models\""), "{dep}");
    // With KServe the claim becomes its storage URI.
    let out = d.join("kserve-claim");
    package(&[
        "--model-repository",
        s(&repo),
        "--k8s",
        s(&out),
        "--kserve",
        "--no-models",
        "--models-pvc",
        "fraud-models",
        "--image",
        "registry.example.com/team/fraud-model:3",
    ]);
    let isvc = std::fs::read_to_string(out.join("kserve/inferenceservice.yaml")).unwrap();
    assert!(
        isvc.contains("storageUri: \"pvc://fraud-models\""),
        "{isvc}"
    );
}

#[test]
fn bad_arguments_are_refused_clearly() {
    let d = common::tmp("package", "bad");
    let inside = d.join("k8s/score.yaml");
    let k8s_dir = d.join("k8s");
    let cases: [(&[&str], &str); 12] = [
        (
            &[
                "--model-repository",
                s(&d),
                "--k8s",
                s(&k8s_dir),
                "--job",
                "/tmp/job.yaml",
                "--job-data",
                "claim:rows.csv",
                "--job-output",
                "out.parquet",
            ],
            "every pod would write the same file",
        ),
        (
            &[
                "--model-repository",
                s(&d),
                "--k8s",
                s(&k8s_dir),
                "--job",
                s(&inside),
                "--job-data",
                "claim:rows.csv",
            ],
            "inside the --k8s folder",
        ),
        (
            &[
                "--model-repository",
                s(&d),
                "--k8s",
                s(&k8s_dir),
                "--job",
                "/tmp/job.yaml",
                "--job-data",
                "rows.csv",
            ],
            "expected CLAIM:PATH",
        ),
        (
            &[
                "--model-repository",
                s(&d),
                "--k8s",
                s(&d),
                "--image",
                "ghcr.io/team/churn:1",
                "--kserve",
                "--autoscale",
                "queue-time",
            ],
            "KServe scales with its own classes",
        ),
        (
            &["--model-repository", s(&d), "--k8s", s(&d)],
            "docker.io/library/hone:latest",
        ),
        (
            &[
                "--model-repository",
                s(&d),
                "--k8s",
                s(&d),
                "--image",
                "team/churn:1",
            ],
            "names no registry",
        ),
        (
            &[
                "--model-repository",
                s(&d),
                "--k8s",
                s(&d),
                "--image",
                "ghcr.io/team/churn:1",
                "--no-models",
            ],
            "--models-pvc",
        ),
        (
            &[
                "--model-repository",
                s(&d),
                "-o",
                "x.tar",
                "--tag",
                "Bad Name:1",
            ],
            "expected NAME[:TAG]",
        ),
        (
            &["--model-repository", "/nonexistent/repo", "-o", "x.tar"],
            "cannot read /nonexistent/repo",
        ),
        (&["--model-repository", s(&d)], "nothing to do"),
        (
            &[
                "--model-repository",
                s(&d),
                "-o",
                "x.tar",
                "--platform",
                "linux/arm64",
            ],
            "only linux/amd64",
        ),
        (
            &["--model-repository", s(&d), "-o", "x.tar"],
            "holds no model version",
        ),
    ];
    for (args, want) in cases {
        let mut a = vec!["package"];
        a.extend_from_slice(args);
        let o = hone(&a);
        assert!(!o.status.success(), "{a:?} succeeded");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{a:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn ship_adds_a_timed_image_stage() {
    let Some(m) = common::shared("ship_adds_a_timed_image_stage") else {
        return;
    };
    let d = common::tmp("package", "ship");
    let img = d.join("img.tar");
    let repo = d.join("repo");
    let csv = m.join("tabular/breast_cancer/train.csv");
    let mut args = vec![
        "ship",
        s(&csv),
        "--target",
        "label",
        "--name",
        "cancer",
        "--model-repository",
        s(&repo),
        "--image",
        s(&img),
        "--json",
    ];
    args.extend(common::EPHEMERAL_PORTS);
    let o = hone(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let stages = r["stages"].as_array().unwrap();
    let image = stages.iter().find(|s| s["stage"] == "image").unwrap();
    assert_eq!(image["status"], "ok", "{image}");
    assert!(
        image["detail"].as_str().unwrap().contains("hone-cancer:1"),
        "{image}"
    );
    // Built after the version is packaged, before it goes live.
    let order: Vec<&str> = stages
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    let at = |n: &str| order.iter().position(|s| *s == n).unwrap();
    assert!(
        at("package") < at("image") && at("image") < at("smoke test"),
        "{order:?}"
    );
    let tar = std::fs::read(&img).unwrap();
    assert!(tar.len() > 1 << 20);
    let text = String::from_utf8_lossy(&tar);
    assert!(
        text.contains("ai.hone.model.cancer.1.sha256"),
        "labels name the model"
    );
}

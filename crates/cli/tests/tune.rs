//! `hone tune` on the example mlp100 with a short budget: it measures the
//! default and every stage, marks the Pareto front, writes the report, and
//! with --write leaves a config.pbtxt the server reads back as the winner
//! (the previous one kept), or nothing when the default wins.

mod common;

use common::{hone, s, tmp};
use hone_server::config::{ModelConfig, VersionPolicy};
use serde_json::Value;

/// `hone tune --json` on mlp100 in `repo` with short trials, plus `extra`.
fn tune_json(repo: &std::path::Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "tune",
        "--model-repository",
        s(repo),
        "--model",
        "mlp100",
        "--trial",
        "300ms",
        "--json",
    ];
    args.extend_from_slice(extra);
    let run = hone(&args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&run.stdout).unwrap()
}

#[test]
fn tune_searches_reports_and_writes_the_winner() {
    let repo = tmp("tune", "repo");
    let out = tmp("tune", "report");
    let m = repo.join("mlp100");
    // Version 3, served by a policy that names it: the trials serve a copy,
    // the written config keeps the policy.
    common::example_model(&repo, "mlp100", "3");
    let before = "version_policy { specific { versions: [3] } }\ninstance_group [{ count: 1 kind: KIND_CPU }]\n";
    std::fs::write(m.join("config.pbtxt"), before).unwrap();
    let r = tune_json(
        &repo,
        &[
            "--time-budget",
            "40s",
            "--concurrency",
            "4",
            "--write",
            "--report",
            s(&out),
        ],
    );
    let trials = r["trials"].as_array().unwrap();
    let stages: Vec<&str> = trials
        .iter()
        .map(|t| t["stage"].as_str().unwrap())
        .collect();
    for stage in [
        "default",
        "instances",
        "delay",
        "max batch",
        "graph",
        "final",
    ] {
        assert!(stages.contains(&stage), "no {stage} trial: {stages:?}");
    }
    for t in trials {
        assert!(t["error"].is_null(), "{t}");
        assert!(t["throughput"].as_f64().unwrap() > 0.0, "{t}");
    }
    assert!(trials.iter().any(|t| t["pareto"] == true));
    assert!(r["why"].as_str().unwrap().contains("req/s"));
    let html = std::fs::read_to_string(out.join("tune.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("hone tune: mlp100"));
    let _: Value = serde_json::from_slice(&std::fs::read(out.join("tune.json")).unwrap()).unwrap();

    let now = std::fs::read_to_string(m.join("config.pbtxt")).unwrap();
    if r["improves"] == true {
        // The winner, as the server will read it; the old file kept.
        assert_eq!(r["written"].as_str().unwrap(), s(&m.join("config.pbtxt")));
        let (c, warnings) = ModelConfig::parse(&now).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let k = &r["best"]["knobs"];
        assert_eq!(
            u64::from(c.instance_count),
            k["instances"].as_u64().unwrap()
        );
        assert_eq!(c.version_policy, VersionPolicy::Specific(vec![3]));
        assert_eq!(
            c.parameters["intra_op_thread_count"],
            k["intra_op_threads"].to_string()
        );
        assert_eq!(
            std::fs::read_to_string(m.join("config.pbtxt.before-tune")).unwrap(),
            before
        );
    } else {
        assert!(r["written"].is_null());
        assert_eq!(now, before, "the default won, yet the config changed");
    }
}

#[test]
fn a_model_that_is_not_there_is_a_clear_error() {
    let repo = tmp("tune", "empty");
    let out = hone(&["tune", "--model-repository", s(&repo), "--model", "nope"]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn include_optimized_tries_every_version() {
    let repo = tmp("tune", "versions");
    for v in ["1", "2"] {
        common::example_model(&repo, "mlp100", v);
    }
    let r = tune_json(
        &repo,
        &[
            "--time-budget",
            "30s",
            "--concurrency",
            "2",
            "--include-optimized",
        ],
    );
    let trials = r["trials"].as_array().unwrap();
    // The default serves the newest; the version stage tries the other.
    assert_eq!(trials[0]["knobs"]["version"], 2);
    assert!(
        trials
            .iter()
            .any(|t| t["stage"] == "version" && t["knobs"]["version"] == 1 && t["error"].is_null()),
        "{trials:?}"
    );
}

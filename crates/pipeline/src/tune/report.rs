//! What `hone tune` found: every trial, the Pareto front (throughput vs
//! p99), the winner against the default and why, as text, JSON and a
//! self-contained HTML page with the plot.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::knobs::{Objective, Trial, TuneOptions};

#[derive(Debug, Clone, Serialize)]
pub struct TuneReport {
    pub model: String,
    pub cores: u32,
    pub concurrency: usize,
    pub objective: Objective,
    pub max_p99_ms: Option<f64>,
    pub protocol: String,
    pub trial_secs: f64,
    pub search_secs: f64,
    /// Every configuration measured, in order.
    pub trials: Vec<Trial>,
    /// The default and the winner, measured again side by side at the end.
    pub default: Trial,
    pub best: Trial,
    /// The winner beats the default for the objective.
    pub improves: bool,
    /// Throughput of the winner over the default's (final measurements).
    pub throughput_ratio: f64,
    pub why: String,
    /// Where the winner's config.pbtxt was written (`--write`).
    pub written: Option<PathBuf>,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn build(
    opts: &TuneOptions,
    cores: u32,
    trial: Duration,
    took: Duration,
    mut trials: Vec<Trial>,
    default: Trial,
    best: Trial,
    improves: bool,
    written: Option<PathBuf>,
) -> TuneReport {
    // Pareto front: no other trial has more throughput and a lower p99.
    let front: Vec<bool> = trials
        .iter()
        .map(|t| {
            t.ok()
                && !trials.iter().any(|o| {
                    o.ok()
                        && o.throughput >= t.throughput
                        && o.p99_us <= t.p99_us
                        && (o.throughput > t.throughput || o.p99_us < t.p99_us)
                })
        })
        .collect();
    for (t, p) in trials.iter_mut().zip(front) {
        t.pareto = p;
    }
    let ratio = if default.throughput > 0.0 {
        best.throughput / default.throughput
    } else {
        0.0
    };
    let why = if improves {
        format!(
            "{} serves {:.1} req/s at p99 {:.2} ms against the default's {:.1} req/s at p99 {:.2} ms ({:+.1} % throughput, {:+.1} % p99), measured side by side after the search",
            best.label,
            best.throughput,
            best.p99_us as f64 / 1e3,
            default.throughput,
            default.p99_us as f64 / 1e3,
            (ratio - 1.0) * 100.0,
            (best.p99_us as f64 / default.p99_us.max(1) as f64 - 1.0) * 100.0
        )
    } else {
        format!(
            "no configuration beat the default ({}: {:.0} req/s, p99 {:.2} ms) by more than 3 % for {} (the best, {}: {:.0} req/s, p99 {:.2} ms); nothing to change",
            default.label,
            default.throughput,
            default.p99_us as f64 / 1e3,
            match opts.objective {
                Objective::Throughput => "throughput",
                Objective::Latency => "latency",
            },
            best.label,
            best.throughput,
            best.p99_us as f64 / 1e3,
        )
    };
    TuneReport {
        model: opts.model.clone(),
        cores,
        concurrency: opts.concurrency,
        objective: opts.objective,
        max_p99_ms: opts.max_p99.map(|d| d.as_secs_f64() * 1e3),
        protocol: opts.protocol.name().to_string(),
        trial_secs: trial.as_secs_f64(),
        search_secs: took.as_secs_f64(),
        trials,
        default,
        best,
        improves,
        throughput_ratio: ratio,
        why,
        written,
    }
}

impl TuneReport {
    pub fn table(&self) -> String {
        let mut o = format!(
            "{} on {} cores, c={} over {}, {:.1} s per configuration ({:.0} s in all)\n\n",
            self.model,
            self.cores,
            self.concurrency,
            self.protocol,
            self.trial_secs,
            self.search_secs
        );
        o.push_str("stage      configuration                                        req/s    p50 ms   p99 ms  batch\n");
        for t in &self.trials {
            let mark = if t.pareto { "*" } else { " " };
            match &t.error {
                Some(e) => o.push_str(&format!("{:<10} {:<50} failed: {e}\n", t.stage, t.label)),
                None => o.push_str(&format!(
                    "{:<10} {:<50}{mark}{:>8} {:>9.3} {:>8.3} {:>6.2}\n",
                    t.stage,
                    t.label,
                    // Heavy models serve tens a second: a decimal matters there.
                    if t.throughput < 1000.0 {
                        format!("{:.1}", t.throughput)
                    } else {
                        format!("{:.0}", t.throughput)
                    },
                    t.p50_us as f64 / 1e3,
                    t.p99_us as f64 / 1e3,
                    t.mean_batch
                )),
            }
        }
        o.push_str(
            "\n* on the Pareto front (no other trial has both more throughput and a lower p99)\n",
        );
        o.push_str(&format!("\n{}\n", self.why));
        if let Some(p) = &self.written {
            o.push_str(&format!(
                "wrote {} (the previous one, if any, is config.pbtxt.before-tune)\n",
                p.display()
            ));
        }
        o
    }

    /// A self-contained page: the plot (p99 across, throughput up) and the table.
    pub fn html(&self) -> String {
        let ok: Vec<&Trial> = self.trials.iter().filter(|t| t.ok()).collect();
        let max_x = ok.iter().map(|t| t.p99_us).max().unwrap_or(1).max(1) as f64 * 1.1;
        let max_y = ok.iter().map(|t| t.throughput).fold(1.0, f64::max) * 1.1;
        let (w, h, pad) = (640.0, 360.0, 50.0);
        let x = |us: u64| pad + us as f64 / max_x * (w - 2.0 * pad);
        let y = |rps: f64| h - pad - rps / max_y * (h - 2.0 * pad);
        let mut svg = format!(
            r##"<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">
<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="#444"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="#444"/>
<text x="{cx}" y="{lx}" text-anchor="middle">p99 latency (ms, 0 to {mx:.2})</text>
<text x="12" y="{cy}" transform="rotate(-90 12 {cy})" text-anchor="middle">requests/s (0 to {my:.0})</text>
"##,
            b = h - pad,
            r = w - pad,
            cx = w / 2.0,
            lx = h - 12.0,
            cy = h / 2.0,
            mx = max_x / 1e3,
            my = max_y,
        );
        for t in &ok {
            let fill = if t.label == self.best.label {
                "#d62728"
            } else if t.pareto {
                "#1f77b4"
            } else {
                "#bbb"
            };
            svg.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{fill}\"><title>{}: {:.0} req/s, p99 {:.3} ms</title></circle>\n",
                x(t.p99_us),
                y(t.throughput),
                esc(&t.label),
                t.throughput,
                t.p99_us as f64 / 1e3
            ));
        }
        svg.push_str("</svg>");
        let rows: String = self
            .trials
            .iter()
            .map(|t| {
                format!(
                    "<tr><td>{}</td><td>{}{}</td><td>{:.0}</td><td>{:.3}</td><td>{:.3}</td><td>{:.2}</td><td>{}</td></tr>\n",
                    esc(&t.stage),
                    esc(&t.label),
                    if t.pareto { " ★" } else { "" },
                    t.throughput,
                    t.p50_us as f64 / 1e3,
                    t.p99_us as f64 / 1e3,
                    t.mean_batch,
                    esc(t.error.as_deref().unwrap_or(""))
                )
            })
            .collect();
        format!(
            r#"<!doctype html><html><head><meta charset="utf-8"><title>hone tune: {m}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}}td:nth-child(2),td:first-child{{text-align:left}}</style></head>
<body><h1>hone tune: {m}</h1><p>{cores} cores, c={c} over {p}, {ts:.1} s per configuration. Red: the winner; blue: the Pareto front (throughput vs p99); grey: the rest.</p>
{svg}<p><b>{why}</b></p>
<table><tr><th>stage</th><th>configuration</th><th>req/s</th><th>p50 ms</th><th>p99 ms</th><th>batch</th><th>error</th></tr>
{rows}</table></body></html>
"#,
            m = esc(&self.model),
            cores = self.cores,
            c = self.concurrency,
            p = self.protocol,
            ts = self.trial_secs,
            why = esc(&self.why),
        )
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

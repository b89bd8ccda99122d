//! `report.html`: one self-contained page with the candidate table and a
//! Pareto plot (metric against batch-1 latency) drawn as inline SVG, so it
//! opens anywhere without scripts or network.

use super::report::{Candidate, OptimizeReport};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn render(r: &OptimizeReport) -> String {
    let all: Vec<&Candidate> = std::iter::once(&r.baseline).chain(&r.candidates).collect();
    let pts: Vec<(&Candidate, f64, f64)> = all
        .iter()
        .filter_map(|c| Some((*c, c.p50_ms?, c.metric?)))
        .filter(|(_, x, y)| x.is_finite() && y.is_finite())
        .collect();
    let (w, h, pad) = (640.0, 400.0, 60.0);
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' style='background:#fff;border:1px solid #ccc'>"
    );
    if !pts.is_empty() {
        let (mut x0, mut x1) = (f64::MAX, f64::MIN);
        let (mut y0, mut y1) = (f64::MAX, f64::MIN);
        for (_, x, y) in &pts {
            x0 = x0.min(*x);
            x1 = x1.max(*x);
            y0 = y0.min(*y);
            y1 = y1.max(*y);
        }
        let span = |a: f64, b: f64| {
            if b - a > 0.0 {
                b - a
            } else {
                a.abs().max(1e-9) * 0.1
            }
        };
        let (xs, ys) = (span(x0, x1), span(y0, y1));
        let (x0, x1, y0, y1) = (x0 - xs * 0.05, x1 + xs * 0.05, y0 - ys * 0.1, y1 + ys * 0.1);
        let px = |x: f64| pad + (x - x0) / (x1 - x0) * (w - 2.0 * pad);
        let py = |y: f64| h - pad - (y - y0) / (y1 - y0) * (h - 2.0 * pad);
        // Pareto front: no other point is both faster and better.
        let better = |a: f64, b: f64| if r.higher_is_better { a >= b } else { a <= b };
        let mut front: Vec<(f64, f64)> = pts
            .iter()
            .filter(|(_, x, y)| {
                !pts.iter().any(|(_, x2, y2)| {
                    (x2 < x && better(*y2, *y)) || (x2 <= x && better(*y2, *y) && y2 != y)
                })
            })
            .map(|(_, x, y)| (*x, *y))
            .collect();
        front.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = front
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        svg += &format!(
            "<polyline points='{}' fill='none' stroke='#888' stroke-dasharray='4 3'/>",
            path.join(" ")
        );
        svg += &format!(
            "<line x1='{pad}' y1='{}' x2='{}' y2='{}' stroke='#000'/>",
            h - pad,
            w - pad,
            h - pad
        );
        svg += &format!(
            "<line x1='{pad}' y1='{pad}' x2='{pad}' y2='{}' stroke='#000'/>",
            h - pad
        );
        svg += &format!(
            "<text x='{}' y='{}' text-anchor='middle' font-size='12'>batch-1 latency p50 (ms)</text>",
            w / 2.0,
            h - 15.0
        );
        svg += &format!(
            "<text x='15' y='{}' font-size='12' transform='rotate(-90 15 {})' text-anchor='middle'>{}</text>",
            h / 2.0,
            h / 2.0,
            esc(&r.judge)
        );
        for i in 0..=4 {
            let xv = x0 + (x1 - x0) * i as f64 / 4.0;
            let yv = y0 + (y1 - y0) * i as f64 / 4.0;
            svg += &format!(
                "<text x='{:.1}' y='{}' font-size='10' text-anchor='middle'>{xv:.3}</text>",
                px(xv),
                h - pad + 14.0
            );
            svg += &format!(
                "<text x='{}' y='{:.1}' font-size='10' text-anchor='end'>{yv:.4}</text>",
                pad - 4.0,
                py(yv) + 3.0
            );
        }
        for (c, x, y) in &pts {
            let color = if r.chosen.as_deref() == Some(&c.name) {
                "#d62728"
            } else if c.name == "fp32" {
                "#1f77b4"
            } else if c.meets_budget {
                "#2ca02c"
            } else {
                "#999"
            };
            svg += &format!(
                "<circle cx='{:.1}' cy='{:.1}' r='5' fill='{color}'><title>{}: {} {y:.4}, p50 {x:.3} ms</title></circle><text x='{:.1}' y='{:.1}' font-size='10'>{}</text>",
                px(*x),
                py(*y),
                esc(&c.name),
                esc(&r.judge),
                px(*x) + 7.0,
                py(*y) - 6.0,
                esc(&c.name)
            );
        }
    }
    svg += "</svg>";
    let mut rows = String::new();
    let f = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
    for c in &all {
        rows += &format!(
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if r.chosen.as_deref() == Some(&c.name) {
                " class='chosen'"
            } else {
                ""
            },
            esc(&c.name),
            esc(&c.technique),
            f(c.metric, 4),
            f(c.drop, 4),
            f(c.p50_ms, 3),
            f(c.p99_ms, 3),
            f(c.throughput, 0),
            f(c.size_bytes.map(|b| b as f64 / 1024.0), 1),
            esc(&c.verdict_with_figures()),
            esc(&c.detail)
        );
    }
    format!(
        "<!doctype html><html><head><meta charset='utf-8'><title>hone optimize: {model}</title>\
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}tr.chosen{{background:#fde}}</style></head><body>\
<h1>hone optimize</h1><p>Model <code>{model}</code>, judged by <b>{judge}</b> on <code>{data}</code> (output <code>{out}</code>) {judged_as}; budget: drop ≤ {budget}{rel}; objective: {obj:?}.</p>\
<p><b>{reason}</b></p>{svg}<p>Blue: fp32; green: within budget; grey: over budget; red: chosen. The dashed line is the Pareto front.</p>\
<table><tr><th>candidate</th><th>technique</th><th>{judge}</th><th>drop</th><th>p50 ms</th><th>p99 ms</th><th>rows/s</th><th>size KB</th><th>verdict</th><th>detail</th></tr>{rows}</table>\
<p>{timing}. {sbs}{secs:.1} s in all.</p><p>{machine}.</p></body></html>",
        timing = esc(&r.timing),
        machine = esc(&r.machine.describe()),
        sbs = r.side_by_side.as_ref().map_or(String::new(), |s| format!(
            "p50/p99 of {} measured side by side ({} interleaved rounds). ",
            esc(&s.models.join(", ")),
            s.rounds
        )),
        model = esc(&r.model),
        judge = esc(&r.judge),
        data = esc(&r.data),
        out = esc(&r.output_judged),
        judged_as = esc(&r.judged_as),
        budget = r.max_drop,
        rel = if r.relative { " (relative)" } else { "" },
        obj = r.objective,
        reason = esc(&r.reason),
        secs = r.seconds,
    )
}

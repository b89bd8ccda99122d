//! The memory budget over the repository (`--model-memory-budget`): what
//! each model takes (estimated from its files before it loads, measured as
//! it loads), which models are resident, and the figures the metrics, the
//! index and the dashboard show. Which model to evict is decided in
//! `lifecycle`, which holds the registry.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::metrics::Histogram;

/// What one model takes, and what became of it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Footprint {
    /// Bytes of its selected versions' files on disk.
    pub on_disk: u64,
    /// Before any load: the files once per engine instance.
    pub estimated: u64,
    /// The heap its last load kept (every version, every instance), when
    /// that load ran alone so nothing else was counted with it.
    pub measured: Option<u64>,
    pub resident: bool,
    /// The config's `pinned` parameter: loaded at start, never evicted.
    pub pinned: bool,
    pub loads: u64,
    pub evictions: u64,
    /// Seconds its last load took.
    pub last_load_s: Option<f64>,
}

impl Footprint {
    /// What the budget counts: the measured size (never below the files,
    /// which ONNX Runtime may map rather than copy), else the estimate.
    pub fn bytes(&self) -> u64 {
        self.measured
            .map_or(self.estimated, |m| m.max(self.on_disk))
    }
}

/// The budget and every model's footprint.
#[derive(Default)]
pub struct Residency {
    /// None: no budget; every model loads at start and stays.
    pub(crate) limit: Option<u64>,
    models: Mutex<BTreeMap<String, Footprint>>,
    /// The process's RSS before any model loaded: what it takes beyond the
    /// models (code, the runtime library, threads, buffers).
    base_rss: std::sync::atomic::AtomicU64,
    /// How long loads took (a lazy load is a request's cold start).
    load_seconds: Histogram,
}

impl Residency {
    pub(crate) fn new(limit: Option<u64>) -> Self {
        Self {
            limit,
            base_rss: hone_runtime::memory::resident_bytes().unwrap_or(0).into(),
            ..Self::default()
        }
    }

    /// After a load or an eviction: freed pages go back to the OS once the
    /// process holds more than the budget, its base, and room for a load
    /// (four times the largest model: ONNX Runtime's working copies of the
    /// weights left 2.5-5× a 16 MiB model's footprint in freed pages) —
    /// below that they stay with the allocator for the next loads. Measured
    /// on 2 cores, 40 models of 16 MiB, a third resident: loads on request
    /// took 40-50 ms (p50) this way, 60 ms trimming after every load, 20 ms
    /// never trimming, but RSS then passed twice the budget. Without a
    /// budget, always.
    pub(crate) fn settle(&self) {
        let Some(limit) = self.limit else {
            hone_runtime::memory::release_free_memory();
            return;
        };
        let largest = self.snapshot().values().map(Footprint::bytes).max();
        let allowed = limit
            .saturating_add(self.base_rss.load(std::sync::atomic::Ordering::Relaxed))
            .saturating_add(largest.unwrap_or(0).saturating_mul(4));
        if hone_runtime::memory::resident_bytes().is_none_or(|rss| rss > allowed) {
            hone_runtime::memory::release_free_memory();
        }
    }

    fn with<T>(&self, name: &str, f: impl FnOnce(&mut Footprint) -> T) -> Option<T> {
        let mut m = self.models.lock().ok()?;
        Some(f(m.entry(name.to_string()).or_default()))
    }

    pub fn footprint(&self, name: &str) -> Option<Footprint> {
        self.models.lock().ok()?.get(name).cloned()
    }

    /// Records what the files say, before a load.
    pub(crate) fn sized(&self, name: &str, on_disk: u64, estimated: u64, pinned: bool) {
        self.with(name, |f| {
            f.on_disk = on_disk;
            f.estimated = estimated;
            f.pinned = pinned;
        });
    }

    /// A load finished: `kept` is the heap it kept, when measured alone.
    pub(crate) fn loaded(&self, name: &str, kept: Option<u64>, took: Duration, resident: bool) {
        self.load_seconds.observe(took);
        self.with(name, |f| {
            f.loads += 1;
            f.last_load_s = Some(took.as_secs_f64());
            if kept.is_some() {
                f.measured = kept;
            }
            f.resident = resident;
        });
    }

    /// A failed reload left the versions that served in memory.
    pub(crate) fn stays(&self, name: &str) {
        self.with(name, |f| f.resident = true);
    }

    /// The model left memory: evicted to make room, or unloaded.
    pub(crate) fn left(&self, name: &str, evicted: bool) {
        self.with(name, |f| {
            f.resident = false;
            f.evictions += u64::from(evicted);
        });
    }

    /// Its directory is gone.
    pub(crate) fn forget(&self, name: &str) {
        if let Ok(mut m) = self.models.lock() {
            m.remove(name);
        }
    }

    /// What loading `name` is expected to take: its last measurement,
    /// else its estimate. (Scaling estimates by what other models measured
    /// misleads: a small model's fixed session overhead dwarfs its weights.)
    pub(crate) fn need(&self, name: &str) -> u64 {
        self.footprint(name).map_or(0, |f| f.bytes())
    }

    /// Bytes the resident models take, `except` one.
    pub(crate) fn resident_bytes(&self, except: &str) -> u64 {
        self.models.lock().map_or(0, |m| {
            m.iter()
                .filter(|(n, f)| f.resident && n.as_str() != except)
                .map(|(_, f)| f.bytes())
                .sum()
        })
    }

    pub fn snapshot(&self) -> BTreeMap<String, Footprint> {
        self.models.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// The Prometheus families of the budget and every model's footprint.
    pub(crate) fn render(&self, out: &mut String) {
        let models = self.snapshot();
        let mut family = |name: &str, kind: &str, help: &str, f: &dyn Fn(&Footprint) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (model, fp) in &models {
                let model = crate::metrics::escape(model);
                let _ = writeln!(out, "{name}{{model=\"{model}\"}} {}", f(fp));
            }
        };
        family(
            "hone_model_resident",
            "gauge",
            "1 while the model is loaded in memory, 0 when it is not (evicted, not loaded yet, unloaded).",
            &|f| u64::from(f.resident),
        );
        family(
            "hone_model_memory_bytes",
            "gauge",
            "What the model takes loaded: measured at its last load, else estimated from its files.",
            &Footprint::bytes,
        );
        family(
            "hone_model_loads_total",
            "counter",
            "Times the model was loaded (at start, on request, by the repository API).",
            &|f| f.loads,
        );
        family(
            "hone_model_evictions_total",
            "counter",
            "Times the model was unloaded to keep within --model-memory-budget.",
            &|f| f.evictions,
        );
        let resident: u64 = models
            .values()
            .filter(|f| f.resident)
            .map(Footprint::bytes)
            .sum();
        let _ = writeln!(
            out,
            "# HELP hone_models_resident_bytes What the resident models take, together.\n# TYPE hone_models_resident_bytes gauge\nhone_models_resident_bytes {resident}"
        );
        if let Some(limit) = self.limit {
            let _ = writeln!(
                out,
                "# HELP hone_model_memory_budget_bytes --model-memory-budget.\n# TYPE hone_model_memory_budget_bytes gauge\nhone_model_memory_budget_bytes {limit}"
            );
        }
        self.load_seconds.render_family(
            out,
            "hone_model_load_duration_seconds",
            "How long model loads took; a load on a request is that request's cold start.",
        );
    }
}

//! Payload sampling for audit and offline analysis: a share of requests and
//! their responses written as JSON lines to rotating files under a total
//! size cap, by one writer thread. A request only hands over reference
//! counted tensors; when the writer falls behind, samples are dropped and
//! counted, never waited for.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use hone_core::{NamedTensor, Tensor};

use crate::error::SetupError;

const QUEUE: usize = 256;
/// Files the cap is spread over: the oldest file goes when the total passes it.
const FILES: u64 = 4;
const PREFIX: &str = "payloads-";

pub struct Sample {
    pub time: SystemTime,
    pub model: String,
    pub version: String,
    pub request_id: String,
    pub trace_id: Option<String>,
    pub inputs: Vec<NamedTensor>,
    pub outputs: Vec<(String, Tensor)>,
}

#[derive(Debug, Default)]
pub struct PayloadStats {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
}

pub struct PayloadLog {
    pub ratio: f64,
    tx: Option<flume::Sender<Sample>>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<PayloadStats>,
}

impl PayloadLog {
    /// Writes under `dir` (created if missing), keeping at most `max_bytes`.
    pub fn start(dir: &Path, ratio: f64, max_bytes: u64) -> Result<PayloadLog, SetupError> {
        std::fs::create_dir_all(dir).map_err(SetupError::io(format_args!(
            "--payload-log {}",
            dir.display()
        )))?;
        let probe = dir.join(".hone-write-test");
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(SetupError::io(format_args!(
                "--payload-log {}: not writable",
                dir.display()
            )))?;
        let (tx, rx) = flume::bounded::<Sample>(QUEUE);
        let stats = Arc::new(PayloadStats::default());
        let mut w = Writer {
            dir: dir.to_path_buf(),
            file_cap: (max_bytes / FILES).max(4096),
            max_bytes,
            current: None,
            seq: 0,
        };
        let st = stats.clone();
        let thread = std::thread::Builder::new()
            .name("payload-log".into())
            .spawn(move || {
                while let Ok(s) = rx.recv() {
                    match w.write(&s) {
                        Ok(true) => st.written.fetch_add(1, Relaxed),
                        Ok(false) => st.dropped.fetch_add(1, Relaxed),
                        Err(e) => {
                            tracing::warn!("payload log: {e}");
                            st.dropped.fetch_add(1, Relaxed)
                        }
                    };
                }
            })
            .map_err(SetupError::io("cannot start the payload log thread"))?;
        Ok(PayloadLog {
            ratio,
            tx: Some(tx),
            thread: Some(thread),
            stats,
        })
    }

    /// Whether this request is sampled.
    pub fn wants(&self) -> bool {
        self.ratio >= 1.0 || (self.ratio > 0.0 && super::context::unit() < self.ratio)
    }

    pub fn send(&self, s: Sample) {
        if let Some(tx) = &self.tx
            && tx.try_send(s).is_err()
        {
            self.stats.dropped.fetch_add(1, Relaxed);
        }
    }
}

impl Drop for PayloadLog {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Writer {
    dir: PathBuf,
    file_cap: u64,
    max_bytes: u64,
    current: Option<(PathBuf, std::fs::File, u64)>,
    seq: u64,
}

impl Writer {
    /// Ok(false): the line alone is larger than a file may be.
    fn write(&mut self, s: &Sample) -> std::io::Result<bool> {
        let line = line(s);
        if line.len() as u64 > self.file_cap {
            return Ok(false);
        }
        if self
            .current
            .as_ref()
            .is_none_or(|(_, _, n)| n + line.len() as u64 > self.file_cap)
        {
            self.rotate()?;
        }
        let Some((path, f, n)) = self.current.as_mut() else {
            return Err(std::io::Error::other("no open file"));
        };
        f.write_all(&line).map_err(|e| at(path, e))?;
        *n += line.len() as u64;
        Ok(true)
    }

    /// Starts a new file and removes the oldest ones past the cap.
    fn rotate(&mut self) -> std::io::Result<()> {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        self.seq += 1;
        let path = self
            .dir
            .join(format!("{PREFIX}{ms:013}-{:06}.jsonl", self.seq));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| at(&path, e))?;
        self.current = Some((path.clone(), f, 0));
        let mut files: Vec<(PathBuf, u64)> = std::fs::read_dir(&self.dir)
            .map_err(|e| at(&self.dir, e))?
            .filter_map(Result::ok)
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.starts_with(PREFIX) && n.ends_with(".jsonl")
            })
            .map(|e| (e.path(), e.metadata().map_or(0, |m| m.len())))
            .collect();
        // Names start with the zero-padded time: sorted is oldest first.
        files.sort();
        // The new file will fill to file_cap: make room for it.
        let mut total: u64 = files.iter().map(|(_, n)| n).sum::<u64>() + self.file_cap;
        for (p, n) in files {
            if total <= self.max_bytes || p == path {
                break;
            }
            if std::fs::remove_file(&p).is_ok() {
                total -= n;
            }
        }
        Ok(())
    }
}

fn line(s: &Sample) -> Vec<u8> {
    let time = s
        .time
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let ins: Vec<(&str, &Tensor)> = s.inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let outs: Vec<(&str, &Tensor)> = s.outputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = Vec::with_capacity(256);
    let head = serde_json::json!({
        "time": time,
        "model_name": s.model,
        "model_version": s.version,
        "request_id": s.request_id,
        "trace_id": s.trace_id,
    });
    let mut head = serde_json::to_vec(&head).unwrap_or_default();
    head.pop(); // the closing brace: the tensors follow
    out.extend_from_slice(&head);
    out.extend_from_slice(b",\"inputs\":");
    crate::codec::write_tensors(&mut out, &ins);
    out.extend_from_slice(b",\"outputs\":");
    crate::codec::write_tensors(&mut out, &outs);
    out.extend_from_slice(b"}\n");
    out
}

/// An I/O error that names its file.
fn at(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

//! A cheap fingerprint of a model directory, which tells a reload or a poll
//! whether a version's files or the config changed since it was loaded.

use std::path::Path;
use std::time::SystemTime;

/// The config text and, per version directory, the total size and newest
/// modification time of its files.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DirStamp {
    pub(crate) config: Option<String>,
    files: Vec<(i64, Option<(u64, SystemTime)>)>,
}

impl DirStamp {
    pub fn read(dir: &Path) -> DirStamp {
        let config = std::fs::read_to_string(dir.join("config.pbtxt")).ok();
        // The file name can be changed by the config; stamping every file in
        // the version directory covers that without parsing.
        let mut files: Vec<(i64, Option<(u64, SystemTime)>)> = Vec::new();
        if let Ok(d) = std::fs::read_dir(dir) {
            for e in d.filter_map(|e| e.ok()) {
                let Some(v) = e.file_name().to_str().and_then(|n| n.parse::<i64>().ok()) else {
                    continue;
                };
                if v <= 0 || !e.path().is_dir() {
                    continue;
                }
                let mut newest: Option<(u64, SystemTime)> = None;
                if let Ok(inner) = std::fs::read_dir(e.path()) {
                    for f in inner.filter_map(|f| f.ok()) {
                        if let Ok(m) = f.metadata() {
                            let t = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                            let (len, at) = newest.unwrap_or((0, SystemTime::UNIX_EPOCH));
                            newest = Some((len + m.len(), at.max(t)));
                        }
                    }
                }
                files.push((v, newest));
            }
        }
        files.sort_by_key(|f| f.0);
        DirStamp { config, files }
    }

    pub fn version(&self, v: i64) -> Option<(u64, SystemTime)> {
        self.files.iter().find(|f| f.0 == v).and_then(|f| f.1)
    }
}

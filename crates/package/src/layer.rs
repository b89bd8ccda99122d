//! One image layer: a file tree written as a reproducible tar (sorted
//! entries, owner 0, mtime 0, every parent directory present), gzipped
//! without a timestamp, and named by its digests.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use sha2::{Digest, Sha256};

use crate::error::{self, Result};

pub const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A file's content: in memory, or read from disk when the layer is built.
#[derive(Debug, Clone)]
pub enum Content {
    Bytes(Vec<u8>),
    Disk(PathBuf),
}

#[derive(Debug, Clone)]
enum Node {
    Dir { mode: u32 },
    File { content: Content, mode: u32 },
    Link { target: String },
}

/// The files of a layer, keyed by their absolute path in the image.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    pub fn dir(&mut self, path: &str, mode: u32) {
        self.parents(path);
        self.nodes.insert(clean(path), Node::Dir { mode });
    }

    pub fn file(&mut self, path: &str, content: Content, mode: u32) {
        self.parents(path);
        self.nodes.insert(clean(path), Node::File { content, mode });
    }

    pub fn link(&mut self, path: &str, target: &str) {
        self.parents(path);
        self.nodes.insert(
            clean(path),
            Node::Link {
                target: target.into(),
            },
        );
    }

    pub fn contains(&self, path: &str) -> bool {
        self.nodes.contains_key(&clean(path))
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every directory above `path`, 0755 unless already set.
    fn parents(&mut self, path: &str) {
        let p = clean(path);
        let mut at = String::new();
        let parts: Vec<&str> = p.split('/').collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            at = if at.is_empty() {
                (*part).to_string()
            } else {
                format!("{at}/{part}")
            };
            self.nodes
                .entry(at.clone())
                .or_insert(Node::Dir { mode: 0o755 });
        }
    }

    /// Adds a directory from disk under `at`, files keeping their
    /// executable bit.
    pub fn add_dir_from_disk(&mut self, src: &Path, at: &str) -> Result<()> {
        self.dir(at, 0o755);
        let mut entries: Vec<_> = std::fs::read_dir(src)
            .map_err(error::at(format_args!("cannot read {}", src.display())))?
            .filter_map(|e| e.ok())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let dest = format!("{}/{name}", at.trim_end_matches('/'));
            let meta = std::fs::metadata(&path)
                .map_err(error::at(format_args!("cannot read {}", path.display())))?;
            if meta.is_dir() {
                self.add_dir_from_disk(&path, &dest)?;
            } else if meta.is_file() {
                use std::os::unix::fs::PermissionsExt;
                let exec = meta.permissions().mode() & 0o111 != 0;
                self.file(&dest, Content::Disk(path), if exec { 0o755 } else { 0o644 });
            }
        }
        Ok(())
    }
}

/// Tar paths are relative, without a leading `/`.
fn clean(path: &str) -> String {
    path.trim_matches('/').to_string()
}

/// A built layer: the gzipped tar and its two digests.
#[derive(Debug, Clone)]
pub struct Layer {
    pub name: String,
    pub blob: Vec<u8>,
    pub media_type: String,
    /// sha256 of the blob as stored (the descriptor's digest).
    pub digest: String,
    /// sha256 of the uncompressed tar (the config's diff_id).
    pub diff_id: String,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes what passes through on its way to the gzip encoder.
struct Hashing<W: Write> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(buf.get(..n).unwrap_or(&[]));
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Builds the layer. The same tree always gives the same bytes.
pub fn build(name: &str, tree: &Tree) -> Result<Layer> {
    let io = |e: std::io::Error| error::at(format_args!("building layer {name}"))(e);
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::default());
    let mut tar = tar::Builder::new(Hashing {
        inner: gz,
        hash: Sha256::new(),
    });
    tar.mode(tar::HeaderMode::Deterministic);
    for (path, node) in &tree.nodes {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        match node {
            Node::Dir { mode } => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                tar.append_data(&mut h, format!("{path}/"), std::io::empty())
                    .map_err(io)?;
            }
            Node::File { content, mode } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                match content {
                    Content::Bytes(b) => {
                        h.set_size(b.len() as u64);
                        tar.append_data(&mut h, path, b.as_slice()).map_err(io)?;
                    }
                    Content::Disk(p) => {
                        let f = std::fs::File::open(p)
                            .map_err(error::at(format_args!("cannot read {}", p.display())))?;
                        let len = f.metadata().map_err(io)?.len();
                        h.set_size(len);
                        tar.append_data(&mut h, path, f).map_err(io)?;
                    }
                }
            }
            Node::Link { target } => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                tar.append_link(&mut h, path, target).map_err(io)?;
            }
        }
    }
    let hashing = tar.into_inner().map_err(io)?;
    let diff_id = hex(&hashing.hash.finalize());
    let blob = hashing.inner.finish().map_err(io)?;
    Ok(Layer {
        name: name.into(),
        digest: sha256_hex(&blob),
        blob,
        media_type: GZIP.into(),
        diff_id,
    })
}

/// A layer taken from elsewhere (a base image), kept byte for byte.
pub fn foreign(name: &str, blob: Vec<u8>, media_type: String, diff_id: String) -> Layer {
    Layer {
        name: name.into(),
        digest: sha256_hex(&blob),
        blob,
        media_type,
        diff_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_tree_gives_the_same_digests() {
        let mut t = Tree::default();
        t.file("/a/b/c.txt", Content::Bytes(b"hi".to_vec()), 0o644);
        t.link("/a/l", "b/c.txt");
        t.dir("/tmp", 0o1777);
        let (x, y) = (build("t", &t).unwrap(), build("t", &t).unwrap());
        assert_eq!(x.digest, y.digest);
        assert_eq!(x.diff_id, y.diff_id);
        assert_ne!(x.digest, x.diff_id);
        // Parents come first and exist.
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&x.blob[..]), &mut raw)
            .unwrap();
        assert_eq!(sha256_hex(&raw), x.diff_id);
        let mut ar = tar::Archive::new(&raw[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a/", "a/b/", "a/b/c.txt", "a/l", "tmp/"]);
    }
}

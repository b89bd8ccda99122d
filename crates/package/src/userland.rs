//! The minimal runtime userland, taken from the machine that packages: the
//! shared libraries hone and libonnxruntime load (as `ldd` resolves them,
//! dynamic loader included), the CA bundle, a numeric non-root user and a
//! world-writable /tmp.

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};
use crate::layer::{Content, Tree};
use crate::paths::UID;

const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// The libraries `binaries` need, as (path in the image, file on disk).
pub fn libraries(binaries: &[&Path]) -> Result<Vec<(String, std::path::PathBuf)>> {
    let mut out: Vec<(String, std::path::PathBuf)> = Vec::new();
    for b in binaries {
        let o = Command::new("ldd").arg(b).output().map_err(|e| {
            Error::Invalid(format!(
                "cannot run ldd (needed to find the libraries {} loads; or pass --base): {e}",
                b.display()
            ))
        })?;
        if !o.status.success() {
            return Err(Error::Invalid(format!(
                "ldd {}: {}",
                b.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            )));
        }
        for (name, path) in parse_ldd(&String::from_utf8_lossy(&o.stdout))? {
            if !out.iter().any(|(n, _)| *n == name) {
                out.push((name, path.into()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `ldd` lines: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x…)`; the vDSO has no file.
fn parse_ldd(text: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.contains("not found") {
            return Err(Error::Invalid(format!(
                "a library is missing on this machine: {line}"
            )));
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.trim().split(' ').next().unwrap_or(""),
            None => line.split(' ').next().unwrap_or(""),
        };
        if path.starts_with('/') {
            out.push((path.to_string(), path.to_string()));
        }
    }
    Ok(out)
}

/// The userland layer's tree.
pub fn tree(binaries: &[&Path]) -> Result<Tree> {
    let mut t = Tree::default();
    for (at, disk) in libraries(binaries)? {
        // The real file under the name the loader asks for: no symlink
        // chains into directories a merged-/usr host has and the image has not.
        let real = std::fs::canonicalize(&disk).map_err(crate::error::at(format_args!(
            "cannot resolve {}",
            disk.display()
        )))?;
        t.file(&at, Content::Disk(real), 0o755);
    }
    if let Some(ca) = CA_BUNDLES.iter().find(|p| Path::new(p).is_file()) {
        t.file(
            "/etc/ssl/certs/ca-certificates.crt",
            Content::Disk((*ca).into()),
            0o644,
        );
    }
    t.file(
        "/etc/passwd",
        Content::Bytes(
            format!("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{UID}:{UID}:nonroot:/home/nonroot:/sbin/nologin\n")
                .into_bytes(),
        ),
        0o644,
    );
    t.file(
        "/etc/group",
        Content::Bytes(format!("root:x:0:\nnonroot:x:{UID}:\n").into_bytes()),
        0o644,
    );
    t.dir("/tmp", 0o1777);
    t.dir("/home/nonroot", 0o755);
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_is_read() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f8)\n";
        let libs = parse_ldd(text).unwrap();
        assert_eq!(
            libs.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
            [
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
        assert!(parse_ldd("libfoo.so => not found").is_err());
    }
}

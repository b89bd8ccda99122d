//! Which framework wrote a model file, told from its name and first bytes.

use std::io::Read;
use std::path::Path;

use crate::ImportError;

/// A source format `hone import` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.keras` (Keras 3) or `.h5` (legacy HDF5).
    Keras,
    /// A TensorFlow SavedModel directory.
    SavedModel,
    /// scikit-learn from skops (`pickle: false`) or joblib/pickle (`true`).
    Sklearn { pickle: bool },
    /// XGBoost `.json` / `.ubj`.
    Xgboost,
    /// LightGBM's text model.
    Lightgbm,
    /// CatBoost `.cbm`.
    Catboost,
    /// TorchScript or `torch.export` (`.pt`, `.pt2`).
    Torch,
}

/// The Python packages a format's converter needs: one lock file each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    Keras,
    Sklearn,
    Xgboost,
    Lightgbm,
    Catboost,
}

impl Group {
    pub const ALL: [Group; 5] = [
        Group::Keras,
        Group::Sklearn,
        Group::Xgboost,
        Group::Lightgbm,
        Group::Catboost,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Group::Keras => "keras",
            Group::Sklearn => "sklearn",
            Group::Xgboost => "xgboost",
            Group::Lightgbm => "lightgbm",
            Group::Catboost => "catboost",
        }
    }

    pub fn parse(s: &str) -> Option<Group> {
        Group::ALL.into_iter().find(|g| g.name() == s)
    }

    /// The hash-pinned requirements (written by `python/lock.py`).
    pub(crate) fn lock(self) -> &'static str {
        match self {
            Group::Keras => include_str!("../python/locks/keras.txt"),
            Group::Sklearn => include_str!("../python/locks/sklearn.txt"),
            Group::Xgboost => include_str!("../python/locks/xgboost.txt"),
            Group::Lightgbm => include_str!("../python/locks/lightgbm.txt"),
            Group::Catboost => include_str!("../python/locks/catboost.txt"),
        }
    }
}

impl Format {
    /// The `--format` names, as the converter script spells them.
    pub const NAMES: [&'static str; 7] = [
        "keras",
        "savedmodel",
        "sklearn",
        "xgboost",
        "lightgbm",
        "catboost",
        "torch",
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::Keras => "keras",
            Format::SavedModel => "savedmodel",
            Format::Sklearn { .. } => "sklearn",
            Format::Xgboost => "xgboost",
            Format::Lightgbm => "lightgbm",
            Format::Catboost => "catboost",
            Format::Torch => "torch",
        }
    }

    /// The package group the managed environment needs; None for PyTorch,
    /// which runs only in the user's own Python (`--python`).
    pub fn group(self) -> Option<Group> {
        match self {
            Format::Keras | Format::SavedModel => Some(Group::Keras),
            Format::Sklearn { .. } => Some(Group::Sklearn),
            Format::Xgboost => Some(Group::Xgboost),
            Format::Lightgbm => Some(Group::Lightgbm),
            Format::Catboost => Some(Group::Catboost),
            Format::Torch => None,
        }
    }

    /// `--format NAME` for `path` (a pickle is told by its extension).
    pub fn named(name: &str, path: &Path) -> Option<Format> {
        Some(match name {
            "keras" => Format::Keras,
            "savedmodel" => Format::SavedModel,
            "sklearn" => Format::Sklearn {
                pickle: !ext(path).eq_ignore_ascii_case("skops"),
            },
            "xgboost" => Format::Xgboost,
            "lightgbm" => Format::Lightgbm,
            "catboost" => Format::Catboost,
            "torch" => Format::Torch,
            _ => return None,
        })
    }

    /// The format of `path`, from its extension and first bytes.
    pub fn detect(path: &Path) -> Result<Format, ImportError> {
        let unrecognised = |why: String| ImportError::Unrecognised {
            path: path.to_path_buf(),
            why,
        };
        let meta = std::fs::metadata(path).map_err(ImportError::io("read", path))?;
        if meta.is_dir() {
            if path.join("saved_model.pb").is_file() {
                return Ok(Format::SavedModel);
            }
            return Err(unrecognised(
                "a directory without saved_model.pb is not a TensorFlow SavedModel".into(),
            ));
        }
        let head = head(path)?;
        let e = ext(path).to_ascii_lowercase();
        Ok(match e.as_str() {
            "keras" | "h5" | "hdf5" => Format::Keras,
            "skops" => Format::Sklearn { pickle: false },
            "joblib" | "pkl" | "pickle" => Format::Sklearn { pickle: true },
            "ubj" => Format::Xgboost,
            "cbm" => Format::Catboost,
            "pt" | "pth" | "pt2" => Format::Torch,
            "onnx" => {
                return Err(unrecognised(
                    "already ONNX: serve, optimize or evaluate it as it is".into(),
                ));
            }
            "json" if contains(&head, b"\"learner\"") => Format::Xgboost,
            _ if head.starts_with(b"tree\n") || head.starts_with(b"tree\r\n") => Format::Lightgbm,
            _ if head.starts_with(b"CBM1") => Format::Catboost,
            _ if head.starts_with(b"\x89HDF") => Format::Keras,
            _ => {
                return Err(unrecognised(format!(
                    "not a model hone can import (Keras .keras/.h5, a SavedModel directory, scikit-learn .skops/.joblib/.pkl, XGBoost .json/.ubj, LightGBM text, CatBoost .cbm, PyTorch .pt/.pt2); name the format with --format {}",
                    Format::NAMES.join("|")
                )));
            }
        })
    }
}

fn ext(path: &Path) -> &str {
    path.extension().and_then(|e| e.to_str()).unwrap_or("")
}

fn head(path: &Path) -> Result<Vec<u8>, ImportError> {
    let mut buf = Vec::with_capacity(4096);
    std::fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_end(&mut buf))
        .map_err(ImportError::io("read", path))?;
    Ok(buf)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(name: &str, bytes: &[u8]) -> Result<Format, ImportError> {
        let dir = std::env::temp_dir().join(format!("hone-import-detect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        Format::detect(&p)
    }

    #[test]
    fn formats_by_name_and_content() {
        assert_eq!(detect("m.keras", b"PK").unwrap(), Format::Keras);
        assert_eq!(detect("m.bin", b"\x89HDF\r\n").unwrap(), Format::Keras);
        assert_eq!(
            detect("m.skops", b"PK").unwrap(),
            Format::Sklearn { pickle: false }
        );
        assert_eq!(
            detect("m.joblib", b"x").unwrap(),
            Format::Sklearn { pickle: true }
        );
        assert_eq!(
            detect("m.json", br#"{"learner": {}}"#).unwrap(),
            Format::Xgboost
        );
        assert_eq!(
            detect("model.txt", b"tree\nversion=v4\n").unwrap(),
            Format::Lightgbm
        );
        assert_eq!(detect("m.cbm", b"CBM1").unwrap(), Format::Catboost);
        let e = detect("m.json", br#"{"a": 1}"#).unwrap_err().to_string();
        assert!(e.contains("--format"), "{e}");
        let e = detect("m.onnx", b"\x08").unwrap_err().to_string();
        assert!(e.contains("already ONNX"), "{e}");
    }
}

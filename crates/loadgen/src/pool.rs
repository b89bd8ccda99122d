//! The request pool, from each source of data: seeded random values, a
//! CSV (positional, or records by feature name to a model whose metadata
//! lists its features), `.npy` files, and raw data as it comes: lines of
//! text, files (pictures).

use std::path::Path;

use bytes::Bytes;
use hone_core::{DataType, Error, Result, Tensor, TensorData};

use crate::target::{Data, POOL, Payload, Target, encode, from_csv, from_npy, one_input, random};

/// Requests whose inputs are named (features, not the model's inputs).
pub(crate) type NamedSets = Vec<Vec<(String, Tensor)>>;

/// The requests to send, from `data`.
pub fn pool(target: &Target, data: &Data, seed: u64) -> Result<Vec<Payload>> {
    let positional = |sets: Vec<Vec<Tensor>>| -> Vec<Vec<(String, Tensor)>> {
        sets.into_iter()
            .map(|set| {
                let names = target.inputs.iter().map(|i| i.name.clone());
                names.zip(set).collect()
            })
            .collect()
    };
    let sets = match data {
        Data::Random => {
            let mut rng = hone_data::rng::Rng::new(seed);
            positional(
                (0..POOL.min(8))
                    .map(|_| target.inputs.iter().map(|i| random(i, &mut rng)).collect())
                    .collect::<Result<_>>()?,
            )
        }
        Data::Csv(path) => match records(target, path)? {
            Some(records) => records,
            None => positional(from_csv(target, path)?),
        },
        Data::NpyDir(dir) => positional(from_npy(target, dir)?),
        Data::Lines(path) => positional(lines(target, path)?),
        Data::Files(dir) => positional(files(target, dir)?),
    };
    sets.iter().map(|set| encode(target, set)).collect()
}

/// Requests of `n` BYTES elements each from `items`, cycling through them.
fn requests(target: &Target, what: &str, items: Vec<Bytes>) -> Result<Vec<Vec<Tensor>>> {
    let input = one_input(target, what)?;
    if input.dtype != DataType::Bytes {
        return Err(Error::invalid(format!(
            "{what} feeds a BYTES input; '{}' takes {}",
            input.name, input.dtype
        )));
    }
    if items.is_empty() {
        return Err(Error::invalid(format!("{what}: nothing to send")));
    }
    let n = hone_core::element_count(&input.shape)?.max(1);
    let requests = items.len().div_ceil(n).clamp(1, POOL);
    (0..requests)
        .map(|p| {
            let v: Vec<Bytes> = (0..n)
                .filter_map(|k| items.get((p * n + k) % items.len()).cloned())
                .collect();
            Ok(vec![Tensor::new(
                DataType::Bytes,
                input.shape.clone(),
                TensorData::Strings(v),
            )?])
        })
        .collect()
}

/// Each non-empty line of a text file, one element per line.
pub(crate) fn lines(target: &Target, path: &Path) -> Result<Vec<Vec<Tensor>>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    let items = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Bytes::from(l.to_string()))
        .collect();
    requests(target, &format!("{}", path.display()), items)
}

/// Each file of a directory (in name order), its bytes one element.
pub(crate) fn files(target: &Target, dir: &Path) -> Result<Vec<Vec<Tensor>>> {
    let fail = |e: std::io::Error| Error::invalid(format!("{}: {e}", dir.display()));
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(fail)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let items = paths
        .iter()
        .take(POOL * 4)
        .map(|p| std::fs::read(p).map(Bytes::from).map_err(fail))
        .collect::<Result<Vec<_>>>()?;
    requests(target, &format!("{}", dir.display()), items)
}

/// A CSV whose header names every feature the model takes by name: one
/// input per feature, numbers as FP32 and categories as their text, a
/// request's batch of rows at a time. None when the model lists no
/// features or the CSV lacks one (it is then read as the positional input).
pub(crate) fn records(target: &Target, path: &Path) -> Result<Option<NamedSets>> {
    if target.features.is_empty() {
        return Ok(None);
    }
    let table = hone_data::Table::read_csv(path).map_err(|e| Error::invalid(e.to_string()))?;
    let mut columns = Vec::with_capacity(target.features.len());
    for (name, dtype) in &target.features {
        match table.names.iter().position(|n| n == name) {
            Some(c) => columns.push((name, *dtype, c)),
            None => return Ok(None),
        }
    }
    let rows = table.rows();
    if rows == 0 {
        return Err(Error::invalid(format!("{}: no rows", path.display())));
    }
    let batch = target.rows_per_request();
    let mut sets = Vec::new();
    for p in 0..rows.div_ceil(batch).min(POOL) {
        let mut set = Vec::with_capacity(columns.len());
        for &(name, dtype, c) in &columns {
            let cells: Vec<&str> = (0..batch)
                .map(|r| {
                    let row = (p * batch + r) % rows;
                    table
                        .columns
                        .get(c)
                        .and_then(|col| col.get(row))
                        .map_or("", String::as_str)
                })
                .collect();
            let shape = vec![batch as i64];
            let t = if dtype == DataType::Bytes {
                let v = cells.iter().map(|s| Bytes::from(s.to_string())).collect();
                Tensor::new(DataType::Bytes, shape, TensorData::Strings(v))?
            } else {
                let v = cells
                    .iter()
                    .map(|s| {
                        s.trim().parse::<f32>().map_err(|_| {
                            Error::invalid(format!(
                                "{} column {name}: '{s}' is not a number",
                                path.display()
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Tensor::from_f32(shape, &v)?
            };
            set.push((name.clone(), t));
        }
        sets.push(set);
    }
    Ok(Some(sets))
}

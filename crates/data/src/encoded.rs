//! Rows read straight into a model's input: the feature cells of a CSV or
//! Parquet file parsed and encoded as an [`Encoding`] says, a chunk at a
//! time, with the key columns kept as text. No table of text cells in
//! between (what [`crate::stream::Chunks`] gives): CSV fields are parsed
//! from the record's bytes, Parquet columns are read column-wise as typed
//! values. The values and errors are those of [`Encoding::apply`].

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use parquet::column::reader::ColumnReader;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::encode::{FeatureKind, categorical_hint, parse_number};
use crate::error::at;
use crate::stream::open_csv;
use crate::{DataError, Encoding, Result, err};

/// One chunk: `rows` rows of the features (row-major) and the key columns.
#[derive(Debug)]
pub struct Encoded {
    pub x: Vec<f32>,
    pub rows: usize,
    pub keys: Vec<Vec<String>>,
}

enum Kind {
    Numeric(String),
    Categorical(HashMap<String, f32>),
}

struct Feature {
    column: usize,
    name: String,
    kind: Kind,
}

enum Source {
    Csv(csv::Reader<BufReader<File>>, csv::ByteRecord),
    Parquet {
        reader: SerializedFileReader<File>,
        group: usize,
        left: usize,
        /// Per source column the plan reads: its reader in the row group.
        columns: Vec<(usize, Option<ColumnReader>)>,
        /// Per column of the file: whether it holds unsigned integers.
        unsigned: Vec<bool>,
    },
}

/// A file read as encoded chunks of at most `rows` rows.
pub struct EncodedChunks {
    source: Source,
    features: Vec<Feature>,
    keys: Vec<usize>,
    rows: usize,
    read: usize,
    /// Rows in the file when its format says (Parquet).
    pub total: Option<u64>,
    path: String,
}

/// A cell of one column of a chunk, as the file holds it.
#[derive(Clone, Copy)]
enum Cell<'a> {
    Text(&'a str),
    Int(i64),
    Uint(u64),
    F32(f32),
    F64(f64),
    Null,
}

impl Cell<'_> {
    /// The text the table path ([`crate::Table`]) makes of the cell.
    fn text(self) -> String {
        match self {
            Cell::Text(s) => s.to_string(),
            Cell::Int(v) => v.to_string(),
            Cell::Uint(v) => v.to_string(),
            Cell::F32(v) => v.to_string(),
            Cell::F64(v) => v.to_string(),
            Cell::Null => String::new(),
        }
    }
}

impl EncodedChunks {
    /// Opens `path` for `enc`'s features (by name) and the `keys` columns.
    pub fn open(
        path: &Path,
        enc: &Encoding,
        keys: &[String],
        rows: usize,
    ) -> Result<EncodedChunks> {
        let source_name = path.display().to_string();
        let file = File::open(path).map_err(at(format_args!("cannot read {source_name}")))?;
        let parquet = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("parquet") | Some("pq")
        );
        // Per Parquet column, the kind of values hone does not read.
        let mut refused: Vec<Option<&'static str>> = Vec::new();
        let (source, names, total) = if parquet {
            let reader = SerializedFileReader::new(file).map_err(at(&source_name))?;
            let meta = reader.metadata().file_metadata();
            let names: Vec<String> = meta
                .schema_descr()
                .root_schema()
                .get_fields()
                .iter()
                .map(|f| f.name().to_string())
                .collect();
            if meta.schema_descr().num_columns() != names.len() {
                return err(format!(
                    "{source_name}: nested columns; hone reads flat numbers, text and booleans"
                ));
            }
            let total = u64::try_from(meta.num_rows()).ok();
            // What the table path reads as numbers or text, and what it
            // refuses (dates, times, decimals), by the column's annotation.
            let kinds: Vec<std::result::Result<bool, &'static str>> = (0..names.len())
                .map(|i| column_kind(&meta.schema_descr().column(i)))
                .collect();
            refused = kinds.iter().map(|k| k.err()).collect();
            let src = Source::Parquet {
                reader,
                group: 0,
                left: 0,
                columns: Vec::new(),
                unsigned: kinds.iter().map(|k| matches!(k, Ok(true))).collect(),
            };
            (src, names, total)
        } else {
            let (r, names) = open_csv(file, &source_name)?;
            (Source::Csv(r, csv::ByteRecord::new()), names, None)
        };
        let column = |name: &str| {
            names.iter().position(|n| n == name).ok_or_else(|| {
                DataError::Invalid(format!(
                    "{source_name}: the model needs column {name:?}, which is missing"
                ))
            })
        };
        let mut features = Vec::with_capacity(enc.features.len());
        for f in &enc.features {
            features.push(Feature {
                column: column(&f.name)?,
                name: f.name.clone(),
                kind: match &f.kind {
                    FeatureKind::Numeric => Kind::Numeric(categorical_hint(&f.name)),
                    FeatureKind::Categorical { categories } => Kind::Categorical(
                        categories
                            .iter()
                            .enumerate()
                            .map(|(i, c)| (c.clone(), i as f32))
                            .collect(),
                    ),
                },
            });
        }
        let keys = keys.iter().map(|k| column(k)).collect::<Result<Vec<_>>>()?;
        for c in features
            .iter()
            .map(|f| f.column)
            .chain(keys.iter().copied())
        {
            if let (Some(Some(kind)), Some(name)) = (refused.get(c), names.get(c)) {
                return err(format!(
                    "{source_name}: column {name:?} holds {kind} values; hone reads numbers, text and booleans"
                ));
            }
        }
        Ok(EncodedChunks {
            source,
            features,
            keys,
            rows: rows.max(1),
            read: 0,
            total,
            path: source_name,
        })
    }

    /// The next chunk, or None at the end of the file.
    pub fn next_chunk(&mut self) -> Result<Option<Encoded>> {
        let chunk = match &mut self.source {
            Source::Csv(..) => self.next_csv()?,
            Source::Parquet { .. } => self.next_parquet()?,
        };
        Ok(chunk.filter(|c| c.rows > 0))
    }

    fn next_csv(&mut self) -> Result<Option<Encoded>> {
        let EncodedChunks {
            source,
            features,
            keys: key_cols,
            rows,
            read,
            path,
            ..
        } = self;
        let Source::Csv(reader, rec) = source else {
            return Ok(None);
        };
        let mut x = Vec::with_capacity(*rows * features.len());
        let mut keys: Vec<Vec<String>> = (0..key_cols.len())
            .map(|_| Vec::with_capacity(*rows))
            .collect();
        let mut n = 0;
        while n < *rows {
            let line = *read + 2;
            if !reader
                .read_byte_record(rec)
                .map_err(at(format_args!("{path}: line {line}")))?
            {
                break;
            }
            let text = |c: usize| -> Result<&str> {
                std::str::from_utf8(rec.get(c).unwrap_or_default())
                    .map_err(|_| DataError::Invalid(format!("{path}: line {line}: not UTF-8 text")))
            };
            for f in features.iter() {
                x.push(encode(path, f, Cell::Text(text(f.column)?), line)?);
            }
            for (col, &c) in keys.iter_mut().zip(key_cols.iter()) {
                col.push(text(c)?.to_string());
            }
            *read += 1;
            n += 1;
        }
        Ok(Some(Encoded { x, rows: n, keys }))
    }

    fn next_parquet(&mut self) -> Result<Option<Encoded>> {
        let path = self.path.clone();
        let Source::Parquet {
            reader,
            group,
            left,
            columns,
            unsigned,
        } = &mut self.source
        else {
            return Ok(None);
        };
        // Into the next row group with rows.
        while *left == 0 {
            if *group >= reader.num_row_groups() {
                return Ok(None);
            }
            let rg = reader.get_row_group(*group).map_err(at(&path))?;
            *left = usize::try_from(rg.metadata().num_rows()).unwrap_or(0);
            let mut wanted: Vec<usize> = self.features.iter().map(|f| f.column).collect();
            wanted.extend(&self.keys);
            wanted.sort_unstable();
            wanted.dedup();
            *columns = wanted
                .into_iter()
                .map(|c| Ok((c, Some(rg.get_column_reader(c).map_err(at(&path))?))))
                .collect::<Result<Vec<_>>>()?;
            *group += 1;
        }
        let n = (*left).min(self.rows);
        *left -= n;
        // Every column this plan reads, as cells of `n` rows.
        let mut read: HashMap<usize, Values> = HashMap::with_capacity(columns.len());
        for (c, r) in columns.iter_mut() {
            let Some(r) = r.as_mut() else { continue };
            let unsigned = unsigned.get(*c).copied().unwrap_or(false);
            read.insert(
                *c,
                Values::read(r, n, unsigned)
                    .map_err(|e| DataError::Invalid(format!("{path}: {e}")))?,
            );
        }
        let first = self.read;
        let width = self.features.len();
        let mut x = Vec::with_capacity(n * width);
        let empty = Values::Null;
        for r in 0..n {
            let line = first + r + 2;
            for f in &self.features {
                let v = read.get(&f.column).unwrap_or(&empty);
                x.push(encode(&path, f, v.cell(r), line)?);
            }
        }
        let keys = self
            .keys
            .iter()
            .map(|c| {
                let v = read.get(c).unwrap_or(&empty);
                (0..n).map(|r| v.cell(r).text()).collect()
            })
            .collect();
        self.read += n;
        Ok(Some(Encoded { x, rows: n, keys }))
    }
}

/// One cell as the model's input value, with `Encoding::apply`'s errors.
fn encode(path: &str, f: &Feature, cell: Cell<'_>, line: usize) -> Result<f32> {
    let number = |s: &str, hint: &str| parse_number(s, path, line, &f.name, hint).map(|v| v as f32);
    Ok(match (&f.kind, cell) {
        (Kind::Numeric(hint), Cell::Text(s)) => number(s, hint)?,
        (Kind::Numeric(_), Cell::Int(v)) => v as f64 as f32,
        (Kind::Numeric(_), Cell::Uint(v)) => v as f64 as f32,
        (Kind::Numeric(_), Cell::F32(v)) if v.is_finite() => v,
        (Kind::Numeric(_), Cell::F64(v)) if v.is_finite() => v as f32,
        // Not finite, or null: the table path's message for its text.
        (Kind::Numeric(hint), c) => number(&c.text(), hint)?,
        // An unseen category is -1, as in training's encoding.
        (Kind::Categorical(m), Cell::Text(s)) => m.get(s).copied().unwrap_or(-1.0),
        (Kind::Categorical(m), c) => m.get(&c.text()).copied().unwrap_or(-1.0),
    })
}

/// One column's values for a chunk, nulls placed by row.
enum Values {
    Ints(Vec<Option<i64>>),
    Uints(Vec<Option<u64>>),
    F32s(Vec<Option<f32>>),
    F64s(Vec<Option<f64>>),
    Texts(Vec<Option<String>>),
    Null,
}

impl Values {
    fn cell(&self, r: usize) -> Cell<'_> {
        fn at<T: Copy>(v: Option<&Option<T>>) -> Option<T> {
            v.copied().flatten()
        }
        match self {
            Values::Ints(v) => at(v.get(r)).map_or(Cell::Null, Cell::Int),
            Values::Uints(v) => at(v.get(r)).map_or(Cell::Null, Cell::Uint),
            Values::F32s(v) => at(v.get(r)).map_or(Cell::Null, Cell::F32),
            Values::F64s(v) => at(v.get(r)).map_or(Cell::Null, Cell::F64),
            Values::Texts(v) => v
                .get(r)
                .and_then(Option::as_deref)
                .map_or(Cell::Null, Cell::Text),
            Values::Null => Cell::Null,
        }
    }

    /// `n` rows of one column; `unsigned` for UINT columns.
    fn read(r: &mut ColumnReader, n: usize, unsigned: bool) -> std::result::Result<Values, String> {
        macro_rules! column {
            ($r:expr, $variant:ident, $conv:expr) => {{
                let mut vals = Vec::with_capacity(n);
                let mut defs = Vec::with_capacity(n);
                let (records, _, levels) = $r
                    .read_records(n, Some(&mut defs), None, &mut vals)
                    .map_err(|e| e.to_string())?;
                if records != n {
                    return Err(format!("a column chunk ended after {records} of {n} rows"));
                }
                Values::$variant(place(vals.into_iter().map($conv), &defs, levels, n))
            }};
        }
        Ok(match r {
            ColumnReader::BoolColumnReader(r) => column!(r, Ints, |v: bool| i64::from(v)),
            ColumnReader::Int32ColumnReader(r) if unsigned => column!(r, Uints, |v: i32| u64::from(v as u32)),
            ColumnReader::Int32ColumnReader(r) => column!(r, Ints, i64::from),
            ColumnReader::Int64ColumnReader(r) if unsigned => column!(r, Uints, |v: i64| v as u64),
            ColumnReader::Int64ColumnReader(r) => column!(r, Ints, |v: i64| v),
            ColumnReader::FloatColumnReader(r) => column!(r, F32s, |v: f32| v),
            ColumnReader::DoubleColumnReader(r) => column!(r, F64s, |v: f64| v),
            ColumnReader::ByteArrayColumnReader(r) => {
                let mut vals = Vec::with_capacity(n);
                let mut defs = Vec::with_capacity(n);
                let (records, _, levels) = r
                    .read_records(n, Some(&mut defs), None, &mut vals)
                    .map_err(|e| e.to_string())?;
                if records != n {
                    return Err(format!("a column chunk ended after {records} of {n} rows"));
                }
                let texts = vals
                    .iter()
                    .map(|b| b.as_utf8().map(str::to_string).map_err(|_| "a column holds binary values; hone reads numbers, text and booleans".to_string()))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                Values::Texts(place(texts.into_iter(), &defs, levels, n))
            }
            _ => return Err("a column holds date/time, decimal or fixed-length values; hone reads numbers, text and booleans".into()),
        })
    }
}

/// Whether a Parquet column holds unsigned integers, or the kind of values
/// the table path refuses (as [`crate::table`] reads them through the row
/// API: dates, times and decimals are refused).
fn column_kind(
    c: &parquet::schema::types::ColumnDescriptor,
) -> std::result::Result<bool, &'static str> {
    use parquet::basic::{ConvertedType as C, LogicalType as L};
    match c.logical_type_ref() {
        Some(L::Date | L::Time(_) | L::Timestamp(_)) => return Err("date/time"),
        Some(L::Decimal(_)) => return Err("decimal"),
        Some(L::Integer(int)) => return Ok(!int.is_signed),
        _ => {}
    }
    match c.converted_type() {
        C::DATE
        | C::TIME_MILLIS
        | C::TIME_MICROS
        | C::TIMESTAMP_MILLIS
        | C::TIMESTAMP_MICROS
        | C::INTERVAL => Err("date/time"),
        C::DECIMAL => Err("decimal"),
        C::UINT_8 | C::UINT_16 | C::UINT_32 | C::UINT_64 => Ok(true),
        _ => Ok(false),
    }
}

/// Non-null `values` put at their rows: with definition levels, a row is
/// null where its level is below the column's maximum (1 for a flat
/// optional column); without, every row has a value.
fn place<T>(
    values: impl Iterator<Item = T>,
    defs: &[i16],
    levels: usize,
    n: usize,
) -> Vec<Option<T>> {
    let mut values = values;
    if defs.is_empty() || defs.len() < levels {
        return values.map(Some).take(n).collect();
    }
    defs.iter()
        .take(n)
        .map(|&d| if d > 0 { values.next() } else { None })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{Column, Sink};
    use crate::{Table, Target, Task};

    #[test]
    fn encodes_as_apply_does_from_csv_and_parquet() {
        let dir = std::env::temp_dir().join(format!("hone-encoded-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let enc = Encoding {
            features: vec![
                crate::Feature {
                    name: "x".into(),
                    kind: FeatureKind::Numeric,
                },
                crate::Feature {
                    name: "color".into(),
                    kind: FeatureKind::Categorical {
                        categories: vec!["red".into(), "blue".into()],
                    },
                },
            ],
            target: Target {
                name: "y".into(),
                task: Task::Binary,
                classes: vec!["0".into(), "1".into()],
            },
        };
        let csv = dir.join("t.csv");
        std::fs::write(&csv, "id,color,x\na,blue,1.5\nb,green,-2\nc,red,3.25\n").unwrap();
        let pq = dir.join("t.parquet");
        let mut s = Sink::create(&pq, vec!["id".into(), "color".into(), "x".into()]).unwrap();
        s.write(&[
            Column::Text(vec!["a".into(), "b".into(), "c".into()]),
            Column::Text(vec!["blue".into(), "green".into(), "red".into()]),
            Column::Number(vec![1.5, -2.0, 3.25]),
        ])
        .unwrap();
        s.finish().unwrap();
        let want = enc.apply(&Table::read(&csv).unwrap(), false).unwrap();
        for p in [&csv, &pq] {
            let mut c = EncodedChunks::open(p, &enc, &["id".into()], 2).unwrap();
            let a = c.next_chunk().unwrap().unwrap();
            let b = c.next_chunk().unwrap().unwrap();
            assert!(c.next_chunk().unwrap().is_none());
            assert_eq!((a.rows, b.rows), (2, 1));
            let x: Vec<f32> = a.x.iter().chain(&b.x).copied().collect();
            assert_eq!(x, want.x, "{}", p.display());
            assert_eq!(a.keys[0], ["a", "b"]);
        }
        std::fs::write(&csv, "id,color,x\na,blue,oops\n").unwrap();
        let mut c = EncodedChunks::open(&csv, &enc, &[], 2).unwrap();
        let e = c.next_chunk().unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("\"x\""), "{e}");
        let e = EncodedChunks::open(&csv, &enc, &["nope".into()], 2)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("nope"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

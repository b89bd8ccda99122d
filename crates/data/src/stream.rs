//! Tables too large for memory: a CSV or Parquet file read as a sequence
//! of [`Table`] chunks of bounded rows, and a CSV or Parquet file written
//! chunk by chunk (one Parquet row group per chunk).

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::{LogicalType, Repetition, Type as Physical};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::reader::RowIter;
use parquet::schema::types::Type;

use crate::error::at;
use crate::table::parquet_input::cell;
use crate::{DataError, Result, Table, err};

fn is_parquet(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("parquet") | Some("pq")
    )
}

enum Source {
    Csv(csv::Reader<BufReader<File>>, csv::StringRecord),
    Parquet(RowIter<'static>),
}

/// A CSV file's reader past its header (trimmed cells, a 1 MiB buffer)
/// and the header's names.
pub(crate) fn open_csv(
    file: File,
    source_name: &str,
) -> Result<(csv::Reader<BufReader<File>>, Vec<String>)> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(BufReader::with_capacity(1 << 20, file));
    let names: Vec<String> = r
        .headers()
        .map_err(at(format_args!(
            "{source_name}: cannot read the header row"
        )))?
        .iter()
        .map(str::to_string)
        .collect();
    Ok((r, names))
}

/// A CSV or Parquet file read `rows` at a time.
pub struct Chunks {
    source: Source,
    names: Vec<String>,
    rows: usize,
    /// Data rows read so far (for messages and progress).
    read: usize,
    /// Rows in the file when its format says (Parquet).
    pub total: Option<u64>,
    path: String,
}

impl Chunks {
    pub fn open(path: &Path, rows: usize) -> Result<Chunks> {
        let source_name = path.display().to_string();
        let file = File::open(path).map_err(at(format_args!("cannot read {source_name}")))?;
        let (source, names, total) = if is_parquet(path) {
            let reader = SerializedFileReader::new(file).map_err(at(&source_name))?;
            let meta = reader.metadata().file_metadata();
            let names: Vec<String> = meta
                .schema_descr()
                .root_schema()
                .get_fields()
                .iter()
                .map(|f| f.name().to_string())
                .collect();
            let total = u64::try_from(meta.num_rows()).ok();
            (Source::Parquet(reader.into_iter()), names, total)
        } else {
            let (r, names) = open_csv(file, &source_name)?;
            (Source::Csv(r, csv::StringRecord::new()), names, None)
        };
        if names.is_empty() || names.iter().any(String::is_empty) {
            return err(format!("{source_name}: a column has no name"));
        }
        Ok(Chunks {
            source,
            names,
            rows: rows.max(1),
            read: 0,
            total,
            path: source_name,
        })
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Rows read so far.
    pub fn read(&self) -> usize {
        self.read
    }

    /// The next chunk, or None at the end of the file.
    pub fn next_chunk(&mut self) -> Result<Option<Table>> {
        let mut columns: Vec<Vec<String>> = vec![Vec::with_capacity(self.rows); self.names.len()];
        let mut n = 0;
        while n < self.rows {
            let line = self.read + 2;
            match &mut self.source {
                Source::Csv(r, rec) => {
                    let more = r
                        .read_record(rec)
                        .map_err(at(format_args!("{}: line {line}", self.path)))?;
                    if !more {
                        break;
                    }
                    if rec.len() != self.names.len() {
                        return err(format!(
                            "{}: line {line} has {} fields but the header has {}",
                            self.path,
                            rec.len(),
                            self.names.len()
                        ));
                    }
                    for (c, field) in rec.iter().enumerate() {
                        if let Some(col) = columns.get_mut(c) {
                            col.push(field.to_string());
                        }
                    }
                }
                Source::Parquet(rows) => {
                    let Some(row) = rows.next() else { break };
                    let row =
                        row.map_err(at(format_args!("{}: row {}", self.path, self.read + 1)))?;
                    for (c, (name, field)) in row.get_column_iter().enumerate() {
                        let text = cell(field).map_err(|kind| {
                            DataError::Invalid(format!(
                                "{}: column {name:?} holds {kind} values; hone reads numbers, text and booleans",
                                self.path
                            ))
                        })?;
                        if let Some(col) = columns.get_mut(c) {
                            col.push(text);
                        }
                    }
                }
            }
            self.read += 1;
            n += 1;
        }
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(Table {
            names: self.names.clone(),
            columns,
            source: self.path.clone(),
        }))
    }
}

/// One output column of a chunk.
pub enum Column {
    Text(Vec<String>),
    Number(Vec<f64>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::Text(v) => v.len(),
            Column::Number(v) => v.len(),
        }
    }
}

enum Writer {
    Csv(csv::Writer<BufWriter<File>>),
    Parquet(Option<SerializedFileWriter<File>>),
}

/// A CSV or (by extension) Parquet file written chunk by chunk; every chunk
/// has the same columns, of the same kinds, as the first.
pub struct Sink {
    writer: Writer,
    names: Vec<String>,
    kinds: Vec<bool>,
    path: PathBuf,
    started: bool,
}

impl Sink {
    pub fn create(path: &Path, names: Vec<String>) -> Result<Sink> {
        let file =
            File::create(path).map_err(at(format_args!("cannot write {}", path.display())))?;
        let writer = if is_parquet(path) {
            Writer::Parquet(None)
        } else {
            Writer::Csv(csv::Writer::from_writer(BufWriter::with_capacity(
                1 << 20,
                file,
            )))
        };
        Ok(Sink {
            writer,
            names,
            kinds: Vec::new(),
            path: path.to_path_buf(),
            started: false,
        })
    }

    pub fn write(&mut self, columns: &[Column]) -> Result<()> {
        let rows = columns.first().map_or(0, Column::len);
        if columns.len() != self.names.len() || columns.iter().any(|c| c.len() != rows) {
            return err(format!(
                "{}: internal error: a chunk of {} columns for {} names",
                self.path.display(),
                columns.len(),
                self.names.len()
            ));
        }
        let kinds: Vec<bool> = columns
            .iter()
            .map(|c| matches!(c, Column::Number(_)))
            .collect();
        if !self.started {
            self.kinds = kinds.clone();
            self.start()?;
            self.started = true;
        } else if kinds != self.kinds {
            return err(format!(
                "{}: internal error: column kinds changed between chunks",
                self.path.display()
            ));
        }
        let path = self.path.clone();
        match &mut self.writer {
            Writer::Csv(w) => {
                use std::fmt::Write as _;
                let mut num = String::new();
                for r in 0..rows {
                    for c in columns {
                        let field = match c {
                            Column::Text(v) => v.get(r).map_or("", String::as_str),
                            // Display is the shortest text that reads back
                            // as the same number.
                            Column::Number(v) => {
                                num.clear();
                                if let Some(x) = v.get(r) {
                                    let _ = write!(num, "{x}");
                                }
                                &num
                            }
                        };
                        w.write_field(field).map_err(at(path.display()))?;
                    }
                    w.write_record(None::<&[u8]>).map_err(at(path.display()))?;
                }
                Ok(())
            }
            Writer::Parquet(w) => {
                let Some(w) = w.as_mut() else {
                    return err(format!("{}: writer closed", path.display()));
                };
                let mut rg = w.next_row_group().map_err(at(path.display()))?;
                for c in columns {
                    let Some(mut col) = rg.next_column().map_err(at(path.display()))? else {
                        return err(format!(
                            "{}: internal error: too few columns",
                            path.display()
                        ));
                    };
                    match c {
                        Column::Text(v) => {
                            let bytes: Vec<ByteArray> =
                                v.iter().map(|s| ByteArray::from(s.as_str())).collect();
                            col.typed::<ByteArrayType>()
                                .write_batch(&bytes, None, None)
                                .map_err(at(path.display()))?;
                        }
                        Column::Number(v) => {
                            col.typed::<DoubleType>()
                                .write_batch(v, None, None)
                                .map_err(at(path.display()))?;
                        }
                    }
                    col.close().map_err(at(path.display()))?;
                }
                rg.close().map_err(at(path.display()))?;
                Ok(())
            }
        }
    }

    fn start(&mut self) -> Result<()> {
        let Writer::Parquet(slot) = &mut self.writer else {
            let names = self.names.clone();
            if let Writer::Csv(w) = &mut self.writer {
                w.write_record(&names).map_err(at(self.path.display()))?;
            }
            return Ok(());
        };
        let mut fields = Vec::with_capacity(self.names.len());
        for (name, number) in self.names.iter().zip(&self.kinds) {
            let t = if *number {
                Type::primitive_type_builder(name, Physical::DOUBLE)
            } else {
                Type::primitive_type_builder(name, Physical::BYTE_ARRAY)
                    .with_logical_type(Some(LogicalType::String))
            }
            .with_repetition(Repetition::REQUIRED)
            .build()
            .map_err(at(self.path.display()))?;
            fields.push(Arc::new(t));
        }
        let schema = Type::group_type_builder("schema")
            .with_fields(fields)
            .build()
            .map_err(at(self.path.display()))?;
        let props = WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let file = File::create(&self.path)
            .map_err(at(format_args!("cannot write {}", self.path.display())))?;
        *slot = Some(
            SerializedFileWriter::new(file, Arc::new(schema), Arc::new(props))
                .map_err(at(self.path.display()))?,
        );
        Ok(())
    }

    /// Flushes and closes the file (a Parquet file's footer).
    pub fn finish(mut self) -> Result<()> {
        if !self.started {
            // No rows: still a file with the header (CSV) or schema.
            self.kinds = vec![false; self.names.len()];
            self.start()?;
        }
        let path = self.path.clone();
        match &mut self.writer {
            Writer::Csv(w) => w.flush().map_err(at(path.display())),
            Writer::Parquet(w) => match w.take() {
                Some(w) => w.close().map(|_| ()).map_err(at(path.display())),
                None => Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_through_csv_and_parquet() {
        let dir = std::env::temp_dir().join(format!("hone-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for ext in ["csv", "parquet"] {
            let p = dir.join(format!("t.{ext}"));
            let mut s = Sink::create(&p, vec!["id".into(), "x".into()]).unwrap();
            for k in 0..3 {
                let ids: Vec<String> = (0..4).map(|i| format!("r{}", k * 4 + i)).collect();
                let xs: Vec<f64> = (0..4).map(|i| f64::from(k * 4 + i) / 2.0).collect();
                s.write(&[Column::Text(ids), Column::Number(xs)]).unwrap();
            }
            s.finish().unwrap();
            let mut c = Chunks::open(&p, 5).unwrap();
            assert_eq!(c.names(), ["id", "x"]);
            let mut sizes = Vec::new();
            let mut last = None;
            while let Some(t) = c.next_chunk().unwrap() {
                sizes.push(t.rows());
                last = Some(t);
            }
            assert_eq!(sizes, [5, 5, 2], "{ext}");
            let t = last.unwrap();
            assert_eq!(t.columns[0], ["r10", "r11"], "{ext}");
            assert_eq!(t.columns[1], ["5", "5.5"], "{ext}");
            assert_eq!(c.read(), 12);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

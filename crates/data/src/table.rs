//! A CSV file read into memory as text cells, column by column. Parsing into
//! numbers happens later, once it is known which column is the target and
//! which are categorical, so errors can name the column's role.

use std::path::Path;

use crate::error::at;
use crate::{Result, err};

#[derive(Debug, Clone)]
pub struct Table {
    pub names: Vec<String>,
    /// `columns[c][r]`: the text of row `r` (0-based, header excluded) of column `c`.
    pub columns: Vec<Vec<String>>,
    /// Where the data came from, for messages.
    pub source: String,
}

impl Table {
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, Vec::len)
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    pub fn read_csv(path: &Path) -> Result<Table> {
        let bytes =
            std::fs::read(path).map_err(at(format_args!("cannot read {}", path.display())))?;
        Table::parse_csv(&bytes, &path.display().to_string())
    }

    pub fn parse_csv(bytes: &[u8], source: &str) -> Result<Table> {
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return err(format!(
                "{source}: the file is empty (a header row and data rows are needed)"
            ));
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_reader(bytes);
        let names: Vec<String> = reader
            .headers()
            .map_err(at(format_args!("{source}: cannot read the header row")))?
            .iter()
            .map(str::to_string)
            .collect();
        for (i, n) in names.iter().enumerate() {
            if n.is_empty() {
                return err(format!("{source}: header column {} has no name", i + 1));
            }
            if names[..i].contains(n) {
                return err(format!("{source}: the header names column {n:?} twice"));
            }
        }
        let mut columns: Vec<Vec<String>> = vec![Vec::new(); names.len()];
        for (r, record) in reader.records().enumerate() {
            // Line numbers count the header as line 1.
            let line = r + 2;
            let record = record.map_err(at(format_args!("{source}: line {line}")))?;
            if record.len() != names.len() {
                return err(format!(
                    "{source}: line {line} has {} fields but the header has {}",
                    record.len(),
                    names.len()
                ));
            }
            for (c, field) in record.iter().enumerate() {
                columns[c].push(field.to_string());
            }
        }
        if columns.first().is_none_or(Vec::is_empty) {
            return err(format!("{source}: the file has a header but no data rows"));
        }
        Ok(Table {
            names,
            columns,
            source: source.to_string(),
        })
    }

    /// Writes the table as CSV (header first; fields quoted where needed).
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let here = path.display();
        let mut w = csv::Writer::from_path(path).map_err(at(&here))?;
        w.write_record(&self.names).map_err(at(&here))?;
        for r in 0..self.rows() {
            w.write_record(self.columns.iter().map(|c| c[r].as_str()))
                .map_err(at(&here))?;
        }
        w.flush().map_err(at(&here))
    }

    /// Keeps only the given rows, in the given order.
    pub fn select(&self, rows: &[usize]) -> Table {
        Table {
            names: self.names.clone(),
            columns: self
                .columns
                .iter()
                .map(|col| rows.iter().map(|&r| col[r].clone()).collect())
                .collect(),
            source: self.source.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_rejects() {
        let t = Table::parse_csv(b"a,b\n1,2\n3,4\n", "t.csv").unwrap();
        assert_eq!(t.names, vec!["a", "b"]);
        assert_eq!(t.rows(), 2);
        assert_eq!(t.columns[1], vec!["2", "4"]);
        let e = Table::parse_csv(b"", "t.csv").unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = Table::parse_csv(b"a,b\n", "t.csv").unwrap_err();
        assert!(e.to_string().contains("no data rows"), "{e}");
        let e = Table::parse_csv(b"a,b\n1,2\n3\n", "t.csv").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        let e = Table::parse_csv(b"a,a\n1,2\n", "t.csv").unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }
}

pub(crate) mod parquet_input {
    //! Parquet files through the `parquet` crate's row API, turned into the
    //! same text cells as CSV so both formats share one set of checks and
    //! messages. Nulls become missing values.

    use std::path::Path;

    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    use super::Table;
    use crate::error::at;
    use crate::{DataError, Result, err};

    pub(crate) fn cell(f: &Field) -> std::result::Result<String, &'static str> {
        Ok(match f {
            Field::Null => String::new(),
            Field::Bool(b) => (*b as u8).to_string(),
            Field::Byte(v) => v.to_string(),
            Field::Short(v) => v.to_string(),
            Field::Int(v) => v.to_string(),
            Field::Long(v) => v.to_string(),
            Field::UByte(v) => v.to_string(),
            Field::UShort(v) => v.to_string(),
            Field::UInt(v) => v.to_string(),
            Field::ULong(v) => v.to_string(),
            Field::Float16(v) => f32::from(*v).to_string(),
            Field::Float(v) => v.to_string(),
            Field::Double(v) => v.to_string(),
            Field::Str(s) => s.clone(),
            Field::Bytes(b) => match b.as_utf8() {
                Ok(s) => s.to_string(),
                Err(_) => return Err("binary"),
            },
            Field::Decimal(_) => return Err("decimal"),
            Field::Date(_)
            | Field::TimeMillis(_)
            | Field::TimeMicros(_)
            | Field::TimestampMillis(_)
            | Field::TimestampMicros(_) => return Err("date/time"),
            Field::Group(_) | Field::ListInternal(_) | Field::MapInternal(_) => {
                return Err("nested");
            }
        })
    }

    pub fn read(path: &Path) -> Result<Table> {
        let source = path.display().to_string();
        let file = std::fs::File::open(path).map_err(at(&source))?;
        let reader = SerializedFileReader::new(file).map_err(at(&source))?;
        let names: Vec<String> = reader
            .metadata()
            .file_metadata()
            .schema_descr()
            .root_schema()
            .get_fields()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        if names.is_empty() {
            return err(format!("{source}: the file has no columns"));
        }
        let mut columns: Vec<Vec<String>> = vec![Vec::new(); names.len()];
        let rows = reader.get_row_iter(None).map_err(at(&source))?;
        for (r, row) in rows.enumerate() {
            let row = row.map_err(at(format_args!("{source}: row {}", r + 1)))?;
            for (c, (name, field)) in row.get_column_iter().enumerate() {
                let text = cell(field).map_err(|kind| {
                    DataError::Invalid(format!(
                        "{source}: column {name:?} holds {kind} values; hone reads numbers, text and booleans"
                    ))
                })?;
                if let Some(col) = columns.get_mut(c) {
                    col.push(text);
                }
            }
        }
        if columns[0].is_empty() {
            return err(format!("{source}: the file has no rows"));
        }
        Ok(Table {
            names,
            columns,
            source,
        })
    }
}

impl Table {
    /// Reads a CSV or, by extension, a Parquet file. Messages count CSV lines
    /// from the header (line 1); for Parquet, "line N" is data row N - 1.
    pub fn read(path: &Path) -> Result<Table> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("parquet") | Some("pq") => parquet_input::read(path),
            _ => Table::read_csv(path),
        }
    }
}

#[cfg(test)]
mod parquet_tests {
    use std::sync::Arc;

    use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    use super::Table;

    /// Writes a small Parquet file (snappy) with a double, a nullable string
    /// and an int64 column.
    pub fn write_sample(path: &std::path::Path) {
        let schema = Arc::new(
            parse_message_type(
                "message m { REQUIRED DOUBLE x; OPTIONAL BYTE_ARRAY color (UTF8); REQUIRED INT64 label; }",
            )
            .unwrap(),
        );
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(parquet::basic::Compression::SNAPPY)
                .build(),
        );
        let file = std::fs::File::create(path).unwrap();
        let mut w = SerializedFileWriter::new(file, schema, props).unwrap();
        let mut rg = w.next_row_group().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<DoubleType>()
            .write_batch(&[1.5, -2.0, 3.25], None, None)
            .unwrap();
        col.close().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<ByteArrayType>()
            .write_batch(
                &[ByteArray::from("red"), ByteArray::from("blue")],
                Some(&[1, 0, 1]),
                None,
            )
            .unwrap();
        col.close().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<Int64Type>()
            .write_batch(&[0, 1, 0], None, None)
            .unwrap();
        col.close().unwrap();
        rg.close().unwrap();
        w.close().unwrap();
    }

    #[test]
    fn reads_parquet_like_csv() {
        let dir = std::env::temp_dir().join(format!("hone-pq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.parquet");
        write_sample(&p);
        let t = Table::read(&p).unwrap();
        assert_eq!(t.names, vec!["x", "color", "label"]);
        assert_eq!(t.columns[0], vec!["1.5", "-2", "3.25"]);
        // The null is a missing value, reported like an empty CSV cell.
        assert_eq!(t.columns[1], vec!["red", "", "blue"]);
        assert_eq!(t.columns[2], vec!["0", "1", "0"]);
        std::fs::write(dir.join("bad.parquet"), b"PAR1 not really").unwrap();
        assert!(Table::read(&dir.join("bad.parquet")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! A CSV file read into memory as text cells, column by column. Parsing into
//! numbers happens later, once it is known which column is the target and
//! which are categorical, so errors can name the column's role.

use std::path::Path;

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
        let bytes = std::fs::read(path)
            .map_err(|e| crate::DataError(format!("cannot read {}: {e}", path.display())))?;
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
            .map_err(|e| crate::DataError(format!("{source}: cannot read the header row: {e}")))?
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
            let record =
                record.map_err(|e| crate::DataError(format!("{source}: line {line}: {e}")))?;
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
        assert!(e.0.contains("empty"), "{e}");
        let e = Table::parse_csv(b"a,b\n", "t.csv").unwrap_err();
        assert!(e.0.contains("no data rows"), "{e}");
        let e = Table::parse_csv(b"a,b\n1,2\n3\n", "t.csv").unwrap_err();
        assert!(e.0.contains("line 3"), "{e}");
        let e = Table::parse_csv(b"a,a\n1,2\n", "t.csv").unwrap_err();
        assert!(e.0.contains("twice"), "{e}");
    }
}

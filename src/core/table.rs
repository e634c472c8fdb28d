//! Spreadsheet-edited CSV tables (roster, agenda): read whole or not at all.
//!
//! Every error names the file, the line and the reason, so that the person who
//! edited the sheet can fix it without reading code.

use std::collections::HashMap;
use std::fmt;

/// A rejected table: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableError {
    pub file: String,
    /// 1-based line in the file; 0 when the problem is the file as a whole.
    pub line: u64,
    pub reason: String,
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.reason)
        }
    }
}

impl std::error::Error for TableError {}

/// One data row, with its line number for later error messages.
pub struct Row<'t> {
    pub line: u64,
    columns: &'t HashMap<String, usize>,
    fields: Vec<String>,
}

impl Row<'_> {
    /// The trimmed field of a column, `None` when the column is absent or the cell empty.
    pub fn get(&self, column: &str) -> Option<&str> {
        let index = *self.columns.get(column)?;
        let value = self.fields.get(index)?.trim();
        (!value.is_empty()).then_some(value)
    }
}

/// A parsed table, header checked against the columns the caller knows.
pub struct Table {
    pub file: String,
    columns: HashMap<String, usize>,
    records: Vec<(u64, Vec<String>)>,
}

impl Table {
    /// Parses `bytes` as CSV with a header line. `required` columns must be present;
    /// any column outside `required` and `optional` is refused (a typo in a header
    /// would otherwise silently drop a whole column).
    pub fn parse(
        file: &str,
        bytes: &[u8],
        required: &[&str],
        optional: &[&str],
    ) -> Result<Table, TableError> {
        let error = |line: u64, reason: String| TableError {
            file: file.to_string(),
            line,
            reason,
        };
        // Excel writes a byte-order mark at the start of UTF-8 CSV files.
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(bytes);
        let mut lines = reader.byte_records();

        let header = match lines.next() {
            None => {
                return Err(error(
                    0,
                    "the file is empty: a header line is needed".into(),
                ));
            }
            Some(Err(e)) => return Err(error(1, format!("unreadable CSV: {e}"))),
            Some(Ok(record)) => to_strings(&record).map_err(|reason| error(1, reason))?,
        };
        let mut columns = HashMap::new();
        for (index, name) in header.iter().enumerate() {
            let name = name.trim().to_lowercase();
            if !required.contains(&name.as_str()) && !optional.contains(&name.as_str()) {
                let mut known: Vec<&str> = required.to_vec();
                known.extend_from_slice(optional);
                return Err(error(
                    1,
                    format!(
                        "unknown column `{name}` (known columns: {})",
                        known.join(", ")
                    ),
                ));
            }
            if columns.insert(name.clone(), index).is_some() {
                return Err(error(1, format!("column `{name}` appears twice")));
            }
        }
        if let Some(missing) = required.iter().find(|c| !columns.contains_key(**c)) {
            return Err(error(1, format!("missing column `{missing}`")));
        }

        // The csv crate does not count skipped blank lines; count newlines ourselves.
        let line_at = |position: Option<&csv::Position>| {
            position.map_or(0, |p| {
                let mut end = (p.byte() as usize).min(bytes.len());
                // A record's position can point at blank lines before it.
                while end < bytes.len() && matches!(bytes[end], b'\n' | b'\r') {
                    end += 1;
                }
                1 + bytes[..end].iter().filter(|b| **b == b'\n').count() as u64
            })
        };
        let mut records = Vec::new();
        for record in lines {
            let record =
                record.map_err(|e| error(line_at(e.position()), format!("unreadable CSV: {e}")))?;
            let line = line_at(record.position());
            if record
                .iter()
                .all(|field| field.iter().all(u8::is_ascii_whitespace))
            {
                continue; // blank line left by a spreadsheet
            }
            if record.len() != header.len() {
                return Err(error(
                    line,
                    format!(
                        "wrong number of columns: {} instead of {} (a comma inside a name needs quotes)",
                        record.len(),
                        header.len()
                    ),
                ));
            }
            let fields = to_strings(&record).map_err(|reason| error(line, reason))?;
            records.push((line, fields));
        }
        Ok(Table {
            file: file.to_string(),
            columns,
            records,
        })
    }

    pub fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        self.records.iter().map(|(line, fields)| Row {
            line: *line,
            columns: &self.columns,
            fields: fields.clone(),
        })
    }

    pub fn error(&self, line: u64, reason: impl Into<String>) -> TableError {
        TableError {
            file: self.file.clone(),
            line,
            reason: reason.into(),
        }
    }
}

/// No cell of a roster or agenda is longer: a commune name, a presentation topic.
pub const MAX_CELL_CHARS: usize = 300;

fn to_strings(record: &csv::ByteRecord) -> Result<Vec<String>, String> {
    record
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let text = String::from_utf8(field.to_vec()).map_err(|_| {
                format!(
                    "column {} is not valid UTF-8 (save the sheet as \"CSV UTF-8\")",
                    i + 1
                )
            })?;
            if text.chars().count() > MAX_CELL_CHARS {
                return Err(format!(
                    "column {} is longer than {MAX_CELL_CHARS} characters",
                    i + 1
                ));
            }
            Ok(text)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8]) -> Result<Table, TableError> {
        Table::parse("t.csv", text, &["a", "b"], &["c"])
    }

    #[test]
    fn reads_rows_with_bom_blank_lines_and_optional_columns() {
        let table = parse("\u{feff}a,b,c\n1, x ,\n\n2,y,z\n".as_bytes()).unwrap();
        let rows: Vec<_> = table.rows().collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].get("b"), Some("x"));
        assert_eq!(rows[0].get("c"), None);
        assert_eq!(rows[1].line, 4);
        assert_eq!(rows[1].get("c"), Some("z"));
    }

    #[test]
    fn wrong_column_count_names_the_line() {
        let err = parse(b"a,b\n1,2\n3,4,5\n").err().unwrap();
        assert_eq!(err.line, 3);
        assert!(err.reason.contains("wrong number of columns"), "{err}");
        assert!(err.to_string().starts_with("t.csv:3: "));
    }

    #[test]
    fn a_cell_over_the_length_cap_names_the_line_and_column() {
        let long = "x".repeat(MAX_CELL_CHARS + 1);
        let text = format!("a,b\n1,A\n2,{long}\n");
        let err = parse(text.as_bytes()).err().unwrap();
        assert_eq!(err.line, 3, "{err}");
        assert!(err.reason.contains("column 2 is longer than 300"), "{err}");
        let fits = format!("a,b\n1,{}\n", "ư".repeat(MAX_CELL_CHARS));
        assert!(parse(fits.as_bytes()).is_ok(), "characters, not bytes");
    }

    #[test]
    fn bad_utf8_names_the_line() {
        let err = parse(b"a,b\n1,2\n3,\xff\n").err().unwrap();
        assert_eq!((err.line, err.reason.contains("UTF-8")), (3, true), "{err}");
    }

    #[test]
    fn unknown_and_missing_columns_are_refused() {
        assert!(
            parse(b"a,b,kinds\n")
                .err()
                .unwrap()
                .reason
                .contains("unknown column `kinds`")
        );
        assert!(
            parse(b"a\n")
                .err()
                .unwrap()
                .reason
                .contains("missing column `b`")
        );
        assert!(parse(b"").err().unwrap().reason.contains("empty"));
    }
}

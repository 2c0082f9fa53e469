//! CSV records as RFC 4180 writes them (quoted fields may hold commas, quotes as `""` and line
//! breaks, as Dreaddit's `text` column does), each with the line it starts on. Fields stay
//! bytes: the post reader checks UTF-8 per record, so one bad record is skipped, not the file.

/// One record: its fields and the 1-based line of the file it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvRecord {
    pub line: usize,
    pub fields: Vec<Vec<u8>>,
    /// A quoted field was still open at the end of the file.
    pub unterminated: bool,
}

/// Splits `data` into records. Blank lines between records are skipped; `\r\n` ends a record
/// like `\n`.
pub fn records(data: &[u8]) -> Vec<CsvRecord> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\n' || (data[i] == b'\r' && data.get(i + 1) == Some(&b'\n')) {
            i += if data[i] == b'\r' { 2 } else { 1 };
            line += 1;
            continue;
        }
        let start_line = line;
        let mut fields = Vec::new();
        let mut field = Vec::new();
        let mut quoted = false;
        let mut unterminated = false;
        loop {
            let Some(&b) = data.get(i) else {
                unterminated = quoted;
                break;
            };
            if quoted {
                match b {
                    b'"' if data.get(i + 1) == Some(&b'"') => {
                        field.push(b'"');
                        i += 2;
                    }
                    b'"' => {
                        quoted = false;
                        i += 1;
                    }
                    _ => {
                        line += usize::from(b == b'\n');
                        field.push(b);
                        i += 1;
                    }
                }
                continue;
            }
            match b {
                b'"' if field.is_empty() => {
                    quoted = true;
                    i += 1;
                }
                b',' => {
                    fields.push(std::mem::take(&mut field));
                    i += 1;
                }
                b'\n' => {
                    i += 1;
                    line += 1;
                    break;
                }
                b'\r' if data.get(i + 1) == Some(&b'\n') => {
                    i += 2;
                    line += 1;
                    break;
                }
                _ => {
                    field.push(b);
                    i += 1;
                }
            }
        }
        fields.push(field);
        out.push(CsvRecord {
            line: start_line,
            fields,
            unterminated,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(r: &CsvRecord) -> Vec<String> {
        r.fields
            .iter()
            .map(|f| String::from_utf8(f.clone()).unwrap())
            .collect()
    }

    #[test]
    fn quoted_fields_hold_commas_quotes_and_line_breaks() {
        let data = b"id,text\r\n1,\"a, \"\"b\"\"\nc\"\n\n2,plain\n3,\"open";
        let r = records(data);
        assert_eq!(r.len(), 4);
        assert_eq!(texts(&r[0]), ["id", "text"]);
        assert_eq!(
            (r[1].line, texts(&r[1])),
            (2, vec!["1".into(), "a, \"b\"\nc".into()])
        );
        assert_eq!(
            (r[2].line, texts(&r[2])),
            (5, vec!["2".into(), "plain".into()])
        );
        assert_eq!(r[3].line, 6);
        assert!(r[3].unterminated && !r[2].unterminated);
    }
}

//! Import files: CSV or NDJSON whose rows become events. Parsing is pure and streaming: it reads
//! from any `Read` positioned at a byte offset, so a resumed import starts where the last
//! committed step ended, without reading what came before (except a CSV's header row).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::Invalid;
use super::event::{EventType, NewEvent, SourceId, insert_dotted};
use super::task::TaskError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportFormat {
    Csv,
    Ndjson,
}

/// An import as read: its stored file and its row counts so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub id: String,
    pub task_id: String,
    pub file_id: String,
    pub file_name: String,
    /// As declared by the upload (the format's own type when it declared none).
    pub content_type: String,
    pub size_bytes: i64,
    /// Hex SHA-256 of the bytes as uploaded.
    pub sha256: String,
    pub format: ImportFormat,
    pub rows_total: i64,
    pub rows_imported: i64,
    pub rows_failed: i64,
    pub created_at_ms: i64,
}

impl ImportFormat {
    /// From a MIME type such as `text/csv; charset=utf-8`.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match essence.as_str() {
            "text/csv" | "application/csv" => Some(Self::Csv),
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/x-jsonlines" => {
                Some(Self::Ndjson)
            }
            _ => None,
        }
    }

    pub fn from_file_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            Some(Self::Csv)
        } else if lower.ends_with(".ndjson") || lower.ends_with(".jsonl") {
            Some(Self::Ndjson)
        } else {
            None
        }
    }

    /// An upload's format: its declared content type, else its file name's extension, else a
    /// guess from its first bytes.
    pub fn decide(declared_type: Option<&str>, file_name: Option<&str>, head: &[u8]) -> Self {
        declared_type
            .and_then(Self::from_content_type)
            .or_else(|| file_name.and_then(Self::from_file_name))
            .unwrap_or_else(|| Self::sniff(head))
    }

    /// The name an upload gets when it brings none.
    pub fn default_file_name(self) -> &'static str {
        match self {
            Self::Csv => "import.csv",
            Self::Ndjson => "import.ndjson",
        }
    }

    /// A last guess from the first bytes: NDJSON lines open with `{`.
    pub fn sniff(head: &[u8]) -> Self {
        let first = head.iter().find(|b| !b.is_ascii_whitespace() && **b != 0xEF && **b != 0xBB && **b != 0xBF);
        if first == Some(&b'{') { Self::Ndjson } else { Self::Csv }
    }

    /// From its wire name (`csv`, `ndjson`), as stored on an import.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "csv" => Some(Self::Csv),
            "ndjson" => Some(Self::Ndjson),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv",
            Self::Ndjson => "application/x-ndjson",
        }
    }
}

/// Why a whole file cannot be imported; the task fails with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FileError(pub String);

/// Where parsing stands: the byte offset of the next row and its line number (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub offset: u64,
    pub line: u64,
}

impl Position {
    pub const START: Position = Position { offset: 0, line: 1 };
}

/// One parsed row: an event to publish, or the reason it was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    Event(NewEvent),
    Bad(TaskError),
}

/// Rows read together, and where the next read starts.
#[derive(Debug, Default)]
pub struct Batch {
    pub rows: Vec<Row>,
    pub end: Option<Position>,
}

#[derive(Debug, Clone, PartialEq)]
enum Column {
    Type,
    SourceId,
    Data(String),
}

/// A CSV header: which column is `type`, `source_id`, or a (dotted) data field.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvHeader {
    columns: Vec<Column>,
}

const BOM: &str = "\u{feff}";
/// A row longer than this is refused rather than held in memory.
const MAX_ROW_BYTES: usize = 1 << 20;

/// Reads the header row from the start of a CSV file; returns it with the position of the first
/// data row.
pub fn read_csv_header(reader: impl Read) -> Result<(CsvHeader, Position), FileError> {
    let mut csv = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(reader);
    let mut record = csv::ByteRecord::new();
    let found = csv.read_byte_record(&mut record).map_err(|e| FileError(format!("the file is not readable as CSV: {e}")))?;
    if !found {
        return Err(FileError("the file is empty: a CSV import needs a header row with a `type` column".into()));
    }
    let mut names = Vec::with_capacity(record.len());
    for (i, field) in record.iter().enumerate() {
        let name = std::str::from_utf8(field)
            .map_err(|_| FileError("the file is not UTF-8 text: CSV and NDJSON imports must be UTF-8".into()))?;
        let name = if i == 0 { name.trim_start_matches(BOM) } else { name }.trim();
        names.push(name.to_owned());
    }
    let header = CsvHeader::new(names)?;
    let pos = csv.position();
    Ok((header, Position { offset: pos.byte(), line: pos.line() }))
}

impl CsvHeader {
    fn new(names: Vec<String>) -> Result<Self, FileError> {
        if !names.iter().any(|n| n == "type") {
            let shown: Vec<&str> = names.iter().map(String::as_str).take(20).collect();
            return Err(FileError(format!(
                "the header row has no `type` column (found: {}); is this a CSV file with a header row?",
                shown.join(", ")
            )));
        }
        let mut columns = Vec::with_capacity(names.len());
        let mut probe = Map::new();
        for name in names {
            match name.as_str() {
                "" => return Err(FileError("the header row has an empty column name".into())),
                "type" if columns.contains(&Column::Type) => return Err(FileError("the header row names `type` twice".into())),
                "type" => columns.push(Column::Type),
                "source_id" if columns.contains(&Column::SourceId) => {
                    return Err(FileError("the header row names `source_id` twice".into()));
                }
                "source_id" => columns.push(Column::SourceId),
                _ => {
                    // Checks once, on the header, that the dotted names nest without collisions.
                    insert_dotted(&mut probe, &name, Value::Null).map_err(|e| FileError(format!("the header row is invalid: {e}")))?;
                    columns.push(Column::Data(name));
                }
            }
        }
        Ok(Self { columns })
    }

    fn row(&self, fields: &csv::ByteRecord, line: i64) -> Row {
        let bad = |message: String| Row::Bad(TaskError { line: Some(line), message });
        if fields.len() != self.columns.len() {
            return bad(format!("has {} fields, the header has {}", fields.len(), self.columns.len()));
        }
        let (mut event_type, mut source_id, mut data) = (None, None, Map::new());
        for (column, raw) in self.columns.iter().zip(fields.iter()) {
            let Ok(text) = std::str::from_utf8(raw) else { return bad("is not UTF-8 text".into()) };
            match column {
                Column::Type => event_type = Some(text.trim().to_owned()),
                Column::SourceId if text.is_empty() => {}
                Column::SourceId => source_id = Some(text.to_owned()),
                // An empty cell is an absent field, not an empty string.
                Column::Data(_) if text.is_empty() => {}
                Column::Data(path) => {
                    // The header check guarantees the paths nest.
                    let _ = insert_dotted(&mut data, path, Value::String(text.to_owned()));
                }
            }
        }
        match new_event(event_type.unwrap_or_default(), source_id, data) {
            Ok(event) => Row::Event(event),
            Err(message) => bad(message),
        }
    }
}

fn new_event(event_type: String, source_id: Option<String>, data: Map<String, Value>) -> Result<NewEvent, String> {
    if event_type.is_empty() {
        return Err("type: is empty".into());
    }
    let event_type = EventType::try_from(event_type).map_err(|e| format!("type: {e}"))?;
    let source_id = source_id.map(SourceId::try_from).transpose().map_err(|e| format!("source_id: {e}"))?;
    Ok(NewEvent { event_type, source_id, data })
}

/// Reads data rows from `reader`, which starts at `start` in the file.
pub struct RowReader<R: Read> {
    inner: Inner<R>,
    base: Position,
}

enum Inner<R: Read> {
    Csv { csv: csv::Reader<LineIndex<R>>, lines: Rc<RefCell<Lines>>, header: CsvHeader, record: csv::ByteRecord },
    Ndjson { lines: BufReader<R>, offset: u64, line: u64, buf: Vec<u8>, seen_row: bool },
}

impl<R: Read> RowReader<R> {
    pub fn csv(reader: R, header: CsvHeader, start: Position) -> Self {
        let lines = Rc::new(RefCell::new(Lines { pending: VecDeque::new(), line: start.line, read: start.offset }));
        let indexed = LineIndex { inner: reader, lines: lines.clone() };
        let csv = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(indexed);
        Self { inner: Inner::Csv { csv, lines, header, record: csv::ByteRecord::new() }, base: start }
    }

    pub fn ndjson(reader: R, start: Position) -> Self {
        let lines = BufReader::with_capacity(256 * 1024, reader);
        Self { inner: Inner::Ndjson { lines, offset: start.offset, line: start.line, buf: Vec::new(), seen_row: start.offset > 0 }, base: start }
    }

    /// Up to `max_rows` rows, stopping early once `max_bytes` of the file are read; `end` is
    /// `None` once the file is exhausted and nothing was read.
    pub fn next_batch(&mut self, max_rows: usize, max_bytes: u64) -> Result<Batch, FileError> {
        let mut batch = Batch::default();
        let from = self.position().offset;
        while batch.rows.len() < max_rows {
            match self.next_row()? {
                Some(row) => batch.rows.push(row),
                None => break,
            }
            if self.position().offset - from >= max_bytes {
                break;
            }
        }
        if !batch.rows.is_empty() {
            batch.end = Some(self.position());
        }
        Ok(batch)
    }

    fn position(&self) -> Position {
        match &self.inner {
            Inner::Csv { csv, lines, .. } => {
                let offset = self.base.offset + csv.position().byte();
                Position { offset, line: lines.borrow_mut().line_at(offset) }
            }
            Inner::Ndjson { offset, line, .. } => Position { offset: *offset, line: *line },
        }
    }

    fn next_row(&mut self) -> Result<Option<Row>, FileError> {
        let (base_line, base_offset) = (self.base.line as i64, self.base.offset);
        match &mut self.inner {
            Inner::Csv { csv, lines, header, record } => loop {
                match csv.read_byte_record(record) {
                    Ok(false) => return Ok(None),
                    Ok(true) => {
                        // Counted back from the record's end: its start may sit before blank lines the
                        // csv crate skipped.
                        let end = base_offset + csv.position().byte();
                        let inside = record.as_slice().iter().filter(|b| **b == b'\n').count() as u64;
                        let line = lines.borrow_mut().record_line(end, inside) as i64;
                        // A lone empty line is no row.
                        if record.len() == 1 && record.get(0).is_some_and(<[u8]>::is_empty) {
                            continue;
                        }
                        if record.as_slice().len() > MAX_ROW_BYTES {
                            return Ok(Some(Row::Bad(TaskError { line: Some(line), message: "is longer than 1 MiB".into() })));
                        }
                        return Ok(Some(header.row(record, line)));
                    }
                    Err(e) if e.is_io_error() => return Err(FileError(format!("the file could not be read: {e}"))),
                    Err(e) => {
                        let line = match e.position() {
                            Some(p) => lines.borrow_mut().line_at(base_offset + p.byte()) as i64,
                            None => base_line,
                        };
                        return Ok(Some(Row::Bad(TaskError { line: Some(line), message: format!("is not valid CSV: {e}") })));
                    }
                }
            },
            Inner::Ndjson { lines, offset, line, buf, seen_row } => loop {
                buf.clear();
                let read = lines
                    .by_ref()
                    .take(MAX_ROW_BYTES as u64 + 1)
                    .read_until(b'\n', buf)
                    .map_err(|e| FileError(format!("the file could not be read: {e}")))?;
                if read == 0 {
                    return Ok(None);
                }
                let this_line = *line as i64;
                *offset += read as u64;
                if buf.len() > MAX_ROW_BYTES && buf.last() != Some(&b'\n') {
                    // Skip the rest of the over-long line.
                    let rest = skip_line(lines).map_err(|e| FileError(format!("the file could not be read: {e}")))?;
                    *offset += rest;
                    *line += 1;
                    return Ok(Some(Row::Bad(TaskError { line: Some(this_line), message: "is longer than 1 MiB".into() })));
                }
                *line += 1;
                let text = if this_line == 1 { buf.strip_prefix(BOM.as_bytes()).unwrap_or(buf) } else { buf.as_slice() };
                if text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let first = !*seen_row;
                *seen_row = true;
                return match ndjson_row(text) {
                    Ok(event) => Ok(Some(Row::Event(event))),
                    Err(NdjsonError::NotJson) if first => Err(FileError(format!(
                        "line {this_line} is not a JSON object: is this an NDJSON file (one JSON object a line)?"
                    ))),
                    Err(NdjsonError::NotJson) => Ok(Some(Row::Bad(TaskError { line: Some(this_line), message: "is not a JSON object".into() }))),
                    Err(NdjsonError::Invalid(message)) => Ok(Some(Row::Bad(TaskError { line: Some(this_line), message }))),
                };
            },
        }
    }
}

/// Line numbers by byte offset. The csv crate does not count blank lines it skips, so the reader
/// below notes where each newline is as bytes go by; the queue holds only those not yet passed,
/// a read-ahead buffer's worth.
struct Lines {
    pending: VecDeque<u64>,
    /// The line at the last offset asked for.
    line: u64,
    /// Bytes read so far, as an offset in the file.
    read: u64,
}

impl Lines {
    /// The line that `offset` lies on; offsets must not go backwards.
    fn line_at(&mut self, offset: u64) -> u64 {
        self.pass(offset);
        self.line
    }

    /// Moves past the newlines before `offset`; returns the offset of the last one passed.
    fn pass(&mut self, offset: u64) -> Option<u64> {
        let mut last = None;
        while self.pending.front().is_some_and(|nl| *nl < offset) {
            last = self.pending.pop_front();
            self.line += 1;
        }
        last
    }

    /// The first line of a record that ends at `end` (after its terminator, if any) and holds
    /// `inside` newlines in quoted fields.
    fn record_line(&mut self, end: u64, inside: u64) -> u64 {
        let terminated = self.pass(end).is_some_and(|nl| nl + 1 == end);
        self.line - inside - u64::from(terminated)
    }
}

struct LineIndex<R> {
    inner: R,
    lines: Rc<RefCell<Lines>>,
}

impl<R: Read> Read for LineIndex<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut lines = self.lines.borrow_mut();
        let at = lines.read;
        lines.pending.extend(buf[..n].iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| at + i as u64));
        lines.read += n as u64;
        Ok(n)
    }
}

fn skip_line(reader: &mut impl BufRead) -> std::io::Result<u64> {
    let mut skipped = 0;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(skipped);
        }
        if let Some(i) = buf.iter().position(|b| *b == b'\n') {
            reader.consume(i + 1);
            return Ok(skipped + i as u64 + 1);
        }
        let n = buf.len();
        reader.consume(n);
        skipped += n as u64;
    }
}

enum NdjsonError {
    NotJson,
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NdjsonLine {
    #[serde(rename = "type")]
    event_type: Option<Value>,
    source_id: Option<Value>,
    data: Option<Value>,
}

fn ndjson_row(text: &[u8]) -> Result<NewEvent, NdjsonError> {
    let value: Value = serde_json::from_slice(text).map_err(|_| NdjsonError::NotJson)?;
    if !value.is_object() {
        return Err(NdjsonError::NotJson);
    }
    let line: NdjsonLine = serde_json::from_value(value).map_err(|e| NdjsonError::Invalid(e.to_string()))?;
    let invalid = |m: &str| NdjsonError::Invalid(m.to_owned());
    let event_type = match line.event_type {
        Some(Value::String(t)) => t,
        Some(_) => return Err(invalid("type: must be a string")),
        None => return Err(invalid("type: is missing")),
    };
    let source_id = match line.source_id {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err(invalid("source_id: must be a string")),
    };
    let data = match line.data {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(invalid("data: must be an object")),
    };
    new_event(event_type, source_id, data).map_err(NdjsonError::Invalid)
}

/// Keeps `Invalid` in reach for callers that validate one value at a time.
impl From<Invalid> for FileError {
    fn from(e: Invalid) -> Self {
        FileError(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_uploads_format_comes_from_its_type_then_its_name_then_its_first_bytes() {
        assert_eq!(ImportFormat::decide(Some("application/x-ndjson"), Some("a.csv"), b"a,b"), ImportFormat::Ndjson);
        assert_eq!(ImportFormat::decide(Some("application/octet-stream"), Some("rows.jsonl"), b"a,b"), ImportFormat::Ndjson);
        assert_eq!(ImportFormat::decide(None, Some("upload"), b"  {\"type\": \"x\"}"), ImportFormat::Ndjson);
        assert_eq!(ImportFormat::decide(None, None, b"type,source_id"), ImportFormat::Csv);
        assert_eq!(ImportFormat::Ndjson.default_file_name(), "import.ndjson");
    }

    fn csv_rows(text: &str) -> Result<Vec<Row>, FileError> {
        let (header, start) = read_csv_header(text.as_bytes())?;
        let mut reader = RowReader::csv(&text.as_bytes()[start.offset as usize..], header, start);
        Ok(reader.next_batch(usize::MAX, u64::MAX)?.rows)
    }

    fn event(row: &Row) -> &NewEvent {
        match row {
            Row::Event(e) => e,
            Row::Bad(e) => panic!("unexpected bad row {e:?}"),
        }
    }

    fn bad_lines(rows: &[Row]) -> Vec<(i64, String)> {
        rows.iter()
            .filter_map(|r| match r {
                Row::Bad(e) => Some((e.line.unwrap_or(0), e.message.clone())),
                Row::Event(_) => None,
            })
            .collect()
    }

    #[test]
    fn csv_rows_become_events_with_nested_data_and_bad_rows_keep_their_line() {
        let text = "\u{feff}type,source_id,customer.email,total\norder.created,o1,a@b.c,12\nBad Type,o2,x,1\norder.paid,,\"multi\nline\",\n\norder.x,o4,only-three\n";
        let rows = csv_rows(text).unwrap();
        assert_eq!(rows.len(), 4);
        let first = event(&rows[0]);
        assert_eq!(first.event_type.as_str(), "order.created");
        assert_eq!(first.source_id.as_ref().map(SourceId::as_str), Some("o1"));
        assert_eq!(Value::Object(first.data.clone()), json!({"customer": {"email": "a@b.c"}, "total": "12"}));
        let third = event(&rows[2]);
        assert_eq!(third.source_id, None);
        assert_eq!(Value::Object(third.data.clone()), json!({"customer": {"email": "multi\nline"}}));
        let bad = bad_lines(&rows);
        assert_eq!(bad[0].0, 3);
        assert!(bad[0].1.starts_with("type:"), "{}", bad[0].1);
        assert_eq!(bad[1], (7, "has 3 fields, the header has 4".to_owned()));
    }

    #[test]
    fn csv_resumes_from_a_position_with_the_same_rows_and_lines() {
        let text = "type,n\na.b,1\na.b,2\na.b,3\na.b,4\nBAD,5\n";
        let (header, start) = read_csv_header(text.as_bytes()).unwrap();
        let mut reader = RowReader::csv(&text.as_bytes()[start.offset as usize..], header.clone(), start);
        let first = reader.next_batch(2, u64::MAX).unwrap();
        assert_eq!(first.rows.len(), 2);
        let resume = first.end.unwrap();
        assert_eq!(resume.line, 4);
        let mut resumed = RowReader::csv(&text.as_bytes()[resume.offset as usize..], header, resume);
        let rest = resumed.next_batch(100, u64::MAX).unwrap();
        assert_eq!(rest.rows.len(), 3);
        assert_eq!(event(&rest.rows[0]).data["n"], "3");
        assert_eq!(bad_lines(&rest.rows)[0].0, 6);
        assert!(resumed.next_batch(100, u64::MAX).unwrap().end.is_none());
        // A byte budget ends a batch early: the row that crosses it is the last.
        let (header, start) = read_csv_header(text.as_bytes()).unwrap();
        let mut budgeted = RowReader::csv(&text.as_bytes()[start.offset as usize..], header, start);
        assert_eq!(budgeted.next_batch(100, 1).unwrap().rows.len(), 1);
    }

    #[test]
    fn unreadable_csv_files_fail_as_a_whole() {
        assert!(csv_rows("").unwrap_err().0.contains("empty"));
        assert!(csv_rows("name,email\nann,a@b\n").unwrap_err().0.contains("no `type` column"));
        assert!(csv_rows("type,a,a.b\nx,1,2\n").unwrap_err().0.contains("collides"));
        assert!(csv_rows("type,type\n").unwrap_err().0.contains("twice"));
        let binary = [0xff, 0xfe, 0x00, 0x01, b'\n'];
        let (header, _) = read_csv_header(&binary[..]).map(|h| (Some(h), ())).unwrap_or((None, ()));
        assert!(header.is_none());
        assert!(csv_rows("type\n").unwrap().is_empty(), "a header alone is an empty import, not a broken file");
    }

    #[test]
    fn ndjson_lines_become_events_and_bad_lines_are_recorded() {
        let text = "{\"type\":\"user.signed_up\",\"data\":{\"plan\":\"pro\"},\"source_id\":\"u1\"}\n\n{\"type\":\"x\"}\nnot json\n{\"type\":\"x\",\"data\":[1]}\n{\"type\":\"x\",\"extra\":1}\n{\"type\":\"y\"}";
        let mut reader = RowReader::ndjson(text.as_bytes(), Position::START);
        let batch = reader.next_batch(100, u64::MAX).unwrap();
        assert_eq!(batch.rows.len(), 6);
        assert_eq!(event(&batch.rows[0]).data["plan"], "pro");
        assert_eq!(event(&batch.rows[1]).data, Map::new());
        let bad = bad_lines(&batch.rows);
        assert_eq!(bad.iter().map(|b| b.0).collect::<Vec<_>>(), vec![4, 5, 6]);
        assert_eq!(batch.end.unwrap(), Position { offset: text.len() as u64, line: 8 });
    }

    #[test]
    fn ndjson_that_is_not_json_at_all_fails_the_file() {
        let mut reader = RowReader::ndjson("type,name\nx,y\n".as_bytes(), Position::START);
        assert!(reader.next_batch(10, u64::MAX).unwrap_err().0.contains("not a JSON object"));
    }

    #[test]
    fn formats_are_told_from_type_name_or_content() {
        assert_eq!(ImportFormat::from_content_type("text/csv; charset=utf-8"), Some(ImportFormat::Csv));
        assert_eq!(ImportFormat::from_content_type("application/x-ndjson"), Some(ImportFormat::Ndjson));
        assert_eq!(ImportFormat::from_content_type("application/pdf"), None);
        assert_eq!(ImportFormat::from_file_name("Orders.CSV"), Some(ImportFormat::Csv));
        assert_eq!(ImportFormat::sniff(b"  {\"type\":1}"), ImportFormat::Ndjson);
        assert_eq!(ImportFormat::sniff(b"type,a"), ImportFormat::Csv);
    }
}

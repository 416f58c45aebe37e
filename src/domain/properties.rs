//! Property tests of every parser of outside input: whatever the bytes, each one answers (a
//! value or an error, never a panic), what it accepts obeys its documented rules, and what the
//! server writes reads back the same.

use std::io::Cursor as Bytes;

use proptest::prelude::*;
use serde_json::json;

use super::event::EventType;
use super::export::{ExportFilter, ExportResource, Fields, inert};
use super::filter::{Context, Filter};
use super::import::{ImportFormat, Position, Row, RowReader, read_csv_header};
use super::log::LogFilter;
use super::pagination::Cursor;
use super::params::Params;
use super::sendout::SendoutFilter;
use super::task::TaskFilter;
use super::time::{ProjectTimeZone, format_in_zone, parse_filter, parse_instant};
use super::webhook::WebhookUrl;

const NOW: i64 = 1_795_000_000_000;

/// Every row of a CSV file (header included), or the header's refusal.
fn csv_rows(file: &[u8]) -> Result<Vec<Row>, String> {
    let (header, start) = read_csv_header(Bytes::new(file)).map_err(|e| e.0)?;
    let rest = &file[start.offset as usize..];
    read_all(RowReader::csv(Bytes::new(rest), header, start))
}

fn ndjson_rows(file: &[u8]) -> Result<Vec<Row>, String> {
    read_all(RowReader::ndjson(Bytes::new(file), Position::START))
}

fn read_all<R: std::io::Read>(mut reader: RowReader<R>) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    loop {
        let batch = reader.next_batch(7, 1 << 20).map_err(|e| e.0)?;
        if batch.rows.is_empty() {
            return Ok(rows);
        }
        rows.extend(batch.rows);
    }
}

fn event_type() -> impl Strategy<Value = String> {
    "[a-z0-9_]{1,12}(\\.[a-z0-9_]{1,12}){0,3}"
}

/// Text a cell or a JSON string may hold (NUL and other controls included).
fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 1..40).prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_as_a_csv_or_ndjson_file_give_rows_or_an_error(file in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(rows) = csv_rows(&file) {
            let lines = file.iter().filter(|b| **b == b'\n').count() as i64 + 1;
            for row in rows {
                if let Row::Bad(error) = row {
                    prop_assert!(error.line.is_some_and(|l| (2..=lines).contains(&l)), "{error:?} of {lines} lines");
                    prop_assert!(!error.message.is_empty());
                }
            }
        }
        let _ = ndjson_rows(&file);
        let _ = ImportFormat::decide(None, None, &file);
    }

    #[test]
    fn csv_rows_the_server_could_write_read_back_as_the_same_events(
        rows in proptest::collection::vec((event_type(), "[A-Za-z0-9_-]{0,20}", text()), 1..12)
    ) {
        let mut out = csv::Writer::from_writer(Vec::new());
        out.write_record(["type", "source_id", "customer.note"]).unwrap();
        for (kind, source, note) in &rows {
            out.write_record([kind.as_str(), source.as_str(), note.as_str()]).unwrap();
        }
        let parsed = csv_rows(&out.into_inner().unwrap()).unwrap();
        prop_assert_eq!(parsed.len(), rows.len());
        for (row, (kind, source, note)) in parsed.iter().zip(&rows) {
            let Row::Event(event) = row else { return Err(TestCaseError::fail(format!("{row:?}"))) };
            prop_assert_eq!(event.event_type.as_str(), kind.as_str());
            prop_assert_eq!(event.source_id.as_ref().map(|s| s.as_str().to_owned()), (!source.is_empty()).then(|| source.clone()));
            prop_assert_eq!(&event.data["customer"]["note"], &json!(note));
        }
    }

    #[test]
    fn ndjson_objects_read_back_as_the_same_events(
        rows in proptest::collection::vec((event_type(), text(), any::<i64>()), 1..12)
    ) {
        let mut file = String::new();
        for (kind, note, n) in &rows {
            file.push_str(&json!({"type": kind, "data": {"note": note, "n": n}}).to_string());
            file.push('\n');
        }
        let parsed = ndjson_rows(file.as_bytes()).unwrap();
        prop_assert_eq!(parsed.len(), rows.len());
        for (row, (kind, note, n)) in parsed.iter().zip(&rows) {
            let Row::Event(event) = row else { return Err(TestCaseError::fail(format!("{row:?}"))) };
            prop_assert_eq!(event.event_type.as_str(), kind.as_str());
            prop_assert_eq!(&event.data["note"], &json!(note));
            prop_assert_eq!(&event.data["n"], &json!(n));
        }
    }

    #[test]
    fn any_query_string_gives_each_filter_or_errors_naming_its_parameters(query in "([a-z_]{1,16}=[^&]{0,12}&){0,6}") {
        let params = Params::parse(&query);
        let zone = ProjectTimeZone::try_from("Europe/Berlin".to_owned()).unwrap();
        let cx = || Context { zone: &zone, now_ms: NOW };
        let given: Vec<&str> = params.pairs().iter().map(|(k, _)| k.as_str()).collect();
        let named = |errors: Vec<(String, String)>| errors.iter().all(|(field, _)| given.iter().any(|g| field.starts_with(g)));
        if let Err(errors) = LogFilter::from_params(&params, cx()) { prop_assert!(named(errors), "{query}"); }
        if let Err(errors) = SendoutFilter::from_params(&params, cx()) { prop_assert!(named(errors), "{query}"); }
        if let Err(errors) = TaskFilter::from_params(&params, cx()) { prop_assert!(named(errors), "{query}"); }
        if let Err(errors) = ExportFilter::from_params(&params, cx()) { prop_assert!(named(errors), "{query}"); }
    }

    #[test]
    fn any_text_as_an_instant_or_a_zone_gives_a_value_or_an_error(value in "\\PC{0,40}", zone in "\\PC{0,30}") {
        let berlin = ProjectTimeZone::try_from("Europe/Berlin".to_owned()).unwrap();
        if let Ok(ms) = parse_filter(&value, &berlin) {
            // Whatever was accepted names one instant, which reads back the same in the zone.
            prop_assert_eq!(parse_filter(&format_in_zone(ms, &berlin), &berlin), Ok(ms));
        }
        let _ = parse_instant(&value);
        if let Ok(parsed) = ProjectTimeZone::try_from(zone.clone()) {
            prop_assert_eq!(parsed.name(), zone.as_str());
        }
    }

    #[test]
    fn cursors_read_back_and_any_other_text_is_refused(time_ms in any::<i64>(), id in "[a-z0-9_|]{1,40}", junk in "\\PC{0,60}") {
        let cursor = Cursor { time_ms, id: id.clone() };
        let read = Cursor::decode(&cursor.encode()).unwrap();
        prop_assert_eq!((read.time_ms, read.id), (time_ms, id));
        if let Ok(read) = Cursor::decode(&junk) {
            prop_assert!(!read.id.is_empty());
        }
    }

    #[test]
    fn event_types_are_accepted_exactly_by_their_grammar(value in "\\PC{0,30}", valid in event_type()) {
        let grammar = !value.is_empty() && value.len() <= 200
            && value.split('.').all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        prop_assert_eq!(EventType::try_from(value.clone()).is_ok(), grammar, "{}", value);
        prop_assert!(EventType::try_from(valid).is_ok());
    }

    #[test]
    fn an_accepted_webhook_url_is_http_with_a_host_and_no_credentials(value in "(https?|ftp|)(://)?[a-z0-9@:./%-]{0,40}") {
        if let Ok(url) = WebhookUrl::try_from(value.clone()) {
            let parsed = url.parsed();
            prop_assert!(matches!(parsed.scheme(), "http" | "https"), "{}", value);
            prop_assert!(parsed.host().is_some());
            prop_assert!(parsed.username().is_empty() && parsed.password().is_none());
            // What is stored parses to itself.
            prop_assert_eq!(WebhookUrl::try_from(url.as_str().to_owned()).unwrap(), url);
        }
    }

    #[test]
    fn export_fields_are_accepted_when_all_are_known_and_none_repeats(picks in proptest::collection::vec((0usize..30, "[a-z_]{1,12}"), 1..8)) {
        let known = ExportResource::Logs.fields();
        let names: Vec<String> = picks.iter().map(|(i, other)| known.get(*i).map_or(other.clone(), |k| (*k).to_owned())).collect();
        let valid = names.iter().all(|n| known.contains(&n.as_str()))
            && names.iter().enumerate().all(|(i, n)| !names[..i].contains(n));
        prop_assert_eq!(Fields::new(ExportResource::Logs, Some(names.clone())).is_ok(), valid, "{:?}", names);
    }

    #[test]
    fn no_exported_cell_starts_like_a_formula(cell in "\\PC{0,20}") {
        let written = inert(&cell);
        prop_assert!(!matches!(written.as_bytes().first(), Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')));
    }

    #[test]
    fn stored_bodies_hold_no_nul_and_keep_everything_else(body in proptest::collection::vec(any::<u8>(), 0..200), note in text()) {
        let keys = super::redact::RedactKeys::new(["password"]);
        let (stored, _) = super::redact::stored_body(&body, true, &keys);
        prop_assert!(!stored.to_string().contains("\\u0000"));
        let (stored, _) = super::redact::stored_json(json!({"note": note}), &keys);
        prop_assert_eq!(stored["note"].as_str().unwrap().chars().count(), note.chars().count());
        prop_assert!(!stored["note"].as_str().unwrap().contains('\0'));
    }
}

//! What of a request or response may be stored: secrets out, size bounded.

use serde_json::{Map, Value};

pub const REDACTED: &str = "[redacted]";

/// Bodies above this are cut and flagged as truncated.
pub const MAX_STORED_BODY: usize = 256 * 1024;

/// Headers whose values are credentials, whatever the request.
const SECRET_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie", "set-cookie"];
/// Header name fragments that mark key-like values (`X-Api-Key`, `X-Auth-Token`, `X-Webhook-Secret`).
const SECRET_HEADER_PARTS: &[&str] = &["token", "secret", "password", "api-key", "apikey", "auth", "session", "signature"];

pub fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_HEADERS.contains(&name.as_str()) || SECRET_HEADER_PARTS.iter().any(|p| name.contains(p))
}

/// Names of JSON keys whose values are never stored, compared case-insensitively with `-` read as `_`.
#[derive(Debug, Clone)]
pub struct RedactKeys(Vec<String>);

impl RedactKeys {
    pub const DEFAULT: &'static str =
        "password,passwd,secret,client_secret,token,access_token,refresh_token,id_token,api_key,apikey,authorization,card_number,cvv,cvc,ssn";

    pub fn new<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        Self(keys.into_iter().map(normalize).filter(|k| !k.is_empty()).collect())
    }

    fn matches(&self, key: &str) -> bool {
        let key = normalize(key);
        self.0.contains(&key)
    }
}

impl Default for RedactKeys {
    fn default() -> Self {
        Self::new(Self::DEFAULT.split(','))
    }
}

fn normalize(key: &str) -> String {
    key.trim().to_ascii_lowercase().replace('-', "_")
}

/// Replaces the value of every matching key, at any depth, with `"[redacted]"`.
pub fn redact_json(value: &mut Value, keys: &RedactKeys) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if keys.matches(k) {
                    *v = Value::String(REDACTED.into());
                } else {
                    redact_json(v, keys);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_json(v, keys)),
        _ => {}
    }
}

/// Prefixes of the credentials this server issues: tokens (`adm_`, `sk_`, `pk_`, `ut_`) and webhook
/// signing secrets (`whsec_`).
const CREDENTIAL_PREFIXES: &[&str] = &["adm_", "sk_", "pk_", "ut_", "whsec_"];
/// A credential is its prefix and at least this many token characters: short enough for every
/// issued form (32 characters, an admin token of 24 in all), long enough to pass over `sk_id`.
const MIN_CREDENTIAL_TAIL: usize = 16;

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_-+/=.~".contains(&b)
}

/// Replaces every credential this server issues, wherever it stands in `text`, with `"[redacted]"`.
///
/// Matched by form, not by key, so a credential is kept out of storage whatever
/// `LOGBOOK_REDACT_KEYS` holds and wherever it appears: a creation response, a query string, a
/// header, a free-text body.
pub fn scrub_credentials(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let (mut copied, mut i) = (0, 0);
    while i < bytes.len() {
        let at_boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let prefix = if at_boundary { CREDENTIAL_PREFIXES.iter().find(|p| bytes[i..].starts_with(p.as_bytes())) } else { None };
        if let Some(prefix) = prefix {
            let start = i + prefix.len();
            let end = start + bytes[start..].iter().take_while(|b| is_token_char(**b)).count();
            if end - start >= MIN_CREDENTIAL_TAIL {
                let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
                buf.push_str(&text[copied..i]);
                buf.push_str(REDACTED);
                copied = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    match out {
        Some(mut buf) => {
            buf.push_str(&text[copied..]);
            std::borrow::Cow::Owned(buf)
        }
        None => std::borrow::Cow::Borrowed(text),
    }
}

/// [`scrub_credentials`] on every string of a JSON value, keys included.
pub fn scrub_json(value: &mut Value) {
    match value {
        Value::String(text) => {
            if let std::borrow::Cow::Owned(clean) = scrub_credentials(text) {
                *text = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(scrub_json),
        Value::Object(map) => {
            if map.keys().any(|k| matches!(scrub_credentials(k), std::borrow::Cow::Owned(_))) {
                *map = std::mem::take(map).into_iter().map(|(k, v)| (scrub_credentials(&k).into_owned(), v)).collect();
            }
            map.values_mut().for_each(scrub_json);
        }
        _ => {}
    }
}

/// A stored body: JSON when it parses (redacted), otherwise text; cut to [`MAX_STORED_BODY`].
/// `complete` says whether `bytes` is the whole body (an upload may be captured only in part).
pub fn stored_body(bytes: &[u8], complete: bool, keys: &RedactKeys) -> (Value, bool) {
    if bytes.is_empty() {
        return (Value::Null, !complete);
    }
    if complete && let Ok(json) = serde_json::from_slice::<Value>(bytes) {
        return stored_json(json, keys);
    }
    // Scrubbed before it is cut, so no credential survives as a prefix at the cut.
    let text = String::from_utf8_lossy(bytes).replace('\0', NUL_STAND_IN);
    let text = scrub_credentials(&text);
    let truncated = !complete || text.len() > MAX_STORED_BODY;
    (Value::String(cut(&text).to_owned()), truncated)
}

/// A stored JSON body: redacted, and cut to [`MAX_STORED_BODY`] as text when larger.
pub fn stored_json(mut json: Value, keys: &RedactKeys) -> (Value, bool) {
    redact_json(&mut json, keys);
    scrub_json(&mut json);
    replace_nul(&mut json);
    let text = json.to_string();
    if text.len() <= MAX_STORED_BODY {
        return (json, false);
    }
    // Cut the redacted text, never the raw one, so no secret survives in the prefix.
    (Value::String(cut(&text).to_owned()), true)
}

/// What a NUL character in a stored body becomes: PostgreSQL's text (the search index, JSON read
/// as text) cannot hold one, and both backends store the same.
const NUL_STAND_IN: &str = "\u{FFFD}";

/// Replaces every NUL character in `value`'s strings and keys (see [`NUL_STAND_IN`]).
pub fn replace_nul(value: &mut Value) {
    match value {
        Value::String(s) if s.contains('\0') => *s = s.replace('\0', NUL_STAND_IN),
        Value::Array(items) => items.iter_mut().for_each(replace_nul),
        Value::Object(map) => replace_nul_in(map),
        _ => {}
    }
}

/// [`replace_nul`] for an object's keys and values.
pub fn replace_nul_in(map: &mut Map<String, Value>) {
    if map.keys().any(|k| k.contains('\0')) {
        for (k, mut v) in std::mem::take(map) {
            replace_nul(&mut v);
            map.insert(k.replace('\0', NUL_STAND_IN), v);
        }
    } else {
        map.values_mut().for_each(replace_nul);
    }
}

/// The longest prefix of `text` within [`MAX_STORED_BODY`] bytes that ends on a character boundary.
fn cut(text: &str) -> &str {
    let mut end = text.len().min(MAX_STORED_BODY);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Redacts an ingested headers object (`{"name": "value"}`).
pub fn redact_header_map(headers: &mut Map<String, Value>) {
    for (name, value) in headers.iter_mut() {
        if is_secret_header(name) {
            *value = Value::String(REDACTED.into());
        } else {
            scrub_json(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credentials_and_key_like_headers_are_secret() {
        for h in ["Authorization", "Cookie", "X-Api-Key", "X-Auth-Token", "x-webhook-secret", "Webhook-Signature"] {
            assert!(is_secret_header(h), "{h}");
        }
        for h in ["Content-Type", "User-Agent", "Logbook-Customer-Id", "Idempotency-Key"] {
            assert!(!is_secret_header(h), "{h}");
        }
    }

    #[test]
    fn secret_json_keys_are_redacted_at_any_depth_and_in_any_case() {
        let mut body = json!({"user": {"Password": "p", "name": "ada"}, "cards": [{"card-number": "4111", "cvv": 123}], "token_count": 3});
        redact_json(&mut body, &RedactKeys::default());
        assert_eq!(body, json!({"user": {"Password": REDACTED, "name": "ada"}, "cards": [{"card-number": REDACTED, "cvv": REDACTED}], "token_count": 3}));
    }

    #[test]
    fn a_configured_key_list_replaces_the_default() {
        let mut body = json!({"password": "p", "pin": "1234"});
        redact_json(&mut body, &RedactKeys::new(["PIN"]));
        assert_eq!(body, json!({"password": "p", "pin": REDACTED}));
    }

    #[test]
    fn a_large_json_body_is_redacted_before_it_is_cut() {
        let body = json!({"password": "hunter2", "blob": "x".repeat(MAX_STORED_BODY)});
        let (stored, truncated) = stored_body(body.to_string().as_bytes(), true, &RedactKeys::default());
        assert!(truncated);
        let text = stored.as_str().unwrap();
        assert!(text.len() <= MAX_STORED_BODY);
        assert!(!text.contains("hunter2"));
    }

    #[test]
    fn issued_credentials_are_scrubbed_wherever_they_stand_whatever_the_key() {
        let token = "sk_0123456789ABCDEFabcdef0123456789";
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw+/==";
        let mut body = json!({"server_key": token, "note": format!("use {token}, or ut_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"), "list": [secret]});
        let (stored, _) = stored_json(body.take(), &RedactKeys::new(["nothing"]));
        assert_eq!(stored, json!({"server_key": REDACTED, "note": format!("use {REDACTED}, or {REDACTED}"), "list": [REDACTED]}));
        let (text, _) = stored_body(format!("token={token}&x=1").as_bytes(), true, &RedactKeys::default());
        assert_eq!(text, json!(format!("token={REDACTED}&x=1")));
    }

    #[test]
    fn ids_and_words_that_only_start_like_a_credential_are_kept() {
        for text in ["sk_id", "key_01JABCDEFGHJKMNPQRSTVWXYZ0", "ask_0123456789ABCDEFGHIJ", "pk_short", "task_01JABCDEFGHJKMNPQRSTVWXYZ"] {
            assert_eq!(scrub_credentials(text), text);
        }
    }

    #[test]
    fn a_text_body_is_kept_as_text_and_an_empty_one_as_null() {
        assert_eq!(stored_body(b"hello", true, &RedactKeys::default()), (json!("hello"), false));
        assert_eq!(stored_body(b"", true, &RedactKeys::default()), (Value::Null, false));
        assert_eq!(stored_body(b"partial", false, &RedactKeys::default()), (json!("partial"), true));
    }

    #[test]
    fn a_nul_character_is_stored_as_a_replacement_character_in_text_and_json() {
        let keys = RedactKeys::default();
        assert_eq!(stored_body(b"a\0b", true, &keys), (json!("a\u{FFFD}b"), false));
        let (json, _) = stored_body(br#"{"k\u0000":["x\u0000"],"n":{"m":"\u0000"}}"#, true, &keys);
        assert_eq!(json, json!({"k\u{FFFD}": ["x\u{FFFD}"], "n": {"m": "\u{FFFD}"}}));
    }
}

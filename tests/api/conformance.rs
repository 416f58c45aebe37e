//! Every response a test receives is checked against the OpenAPI document: the operation exists, the
//! status is documented, the content type is one of the documented ones, and a JSON body matches its
//! schema. Objects are read as closed (no field the document does not name), so the document says
//! exactly what the server sends. Requests go through [`Conform::checked`] instead of `send`.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use reqwest::{RequestBuilder, Response};
use serde_json::{Map, Value};

struct Spec {
    doc: Value,
    /// `(method, template segments, template)` of every documented operation.
    operations: Vec<(String, Vec<String>, String)>,
    validators: Mutex<HashMap<String, std::sync::Arc<jsonschema::Validator>>>,
}

static SPEC: LazyLock<Spec> = LazyLock::new(|| {
    let doc = serde_json::to_value(logbook::api::openapi()).expect("the document serialises");
    let mut operations = Vec::new();
    for (template, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            let segments = template.trim_start_matches('/').split('/').map(str::to_owned).collect();
            operations.push((method.to_ascii_uppercase(), segments, template.clone()));
        }
    }
    Spec { doc, operations, validators: Mutex::new(HashMap::new()) }
});

/// Sends the request and checks its response against the document; panics on a mismatch.
pub trait Conform {
    fn checked(self) -> impl Future<Output = reqwest::Result<Response>>;
}

impl Conform for RequestBuilder {
    async fn checked(self) -> reqwest::Result<Response> {
        let (client, request) = self.build_split();
        let request = request?;
        let (method, path) = (request.method().as_str().to_owned(), request.url().path().to_owned());
        let response = client.execute(request).await?;
        Ok(check(&method, &path, response).await)
    }
}

/// Reads the whole response, checks it, and hands back an equal response.
pub async fn check(method: &str, path: &str, response: Response) -> Response {
    let status = response.status();
    let headers = response.headers().clone();
    let version = response.version();
    let bytes = response.bytes().await.expect("response body");
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if let Err(problem) = conforms(method, path, status.as_u16(), &content_type, &bytes) {
        panic!(
            "{method} {path} -> {status} does not match openapi.json: {problem}\nbody: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(2000)])
        );
    }
    let mut rebuilt = http::Response::new(bytes);
    *rebuilt.status_mut() = status;
    *rebuilt.headers_mut() = headers;
    *rebuilt.version_mut() = version;
    Response::from(rebuilt)
}

fn conforms(method: &str, path: &str, status: u16, content_type: &str, body: &[u8]) -> Result<(), String> {
    let Some(template) = operation(method, path) else {
        // An undocumented path may only be refused, with the contract's error body.
        if [404, 405].contains(&status) {
            return validate_json(&Value::Object(reference("ErrorBody")), body, "ErrorBody");
        }
        if !path.starts_with("/v1") {
            return Ok(()); // `/docs/…`: Swagger UI's own assets.
        }
        return Err("no such operation in the document".into());
    };
    let op = &SPEC.doc["paths"][template.as_str()][method.to_ascii_lowercase()];
    let responses = &op["responses"];
    let documented = responses.get(status.to_string()).or_else(|| responses.get("default"));
    let Some(documented) = documented else {
        return Err(format!("status {status} is not documented for {method} {template}"));
    };
    let documented = resolve(documented);
    let content = documented.get("content").and_then(Value::as_object);
    let Some(content) = content.filter(|c| !c.is_empty()) else {
        return if body.is_empty() { Ok(()) } else { Err("a body where the document has none".into()) };
    };
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let Some(media_doc) = content.get(media) else {
        return Err(format!("content type {content_type:?}; documented: {:?}", content.keys().collect::<Vec<_>>()));
    };
    let Some(schema) = media_doc.get("schema") else { return Ok(()) };
    if media == "application/json" || media.ends_with("+json") {
        validate_json(schema, body, &format!("{method} {template} {status}"))
    } else if schema["type"] == "string" && schema["format"] != "binary" {
        std::str::from_utf8(body).map(|_| ()).map_err(|_| "a text body that is not UTF-8".into())
    } else {
        Ok(())
    }
}

/// The documented template that `path` matches, literal segments preferred over parameters.
fn operation(method: &str, path: &str) -> Option<String> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    SPEC.operations
        .iter()
        .filter(|(m, segments, _)| m == method && segments.len() == parts.len())
        .filter(|(_, segments, _)| {
            segments.iter().zip(&parts).all(|(s, p)| (s.starts_with('{') && !p.is_empty()) || s == p)
        })
        .max_by_key(|(_, segments, _)| segments.iter().filter(|s| !s.starts_with('{')).count())
        .map(|(_, _, template)| template.clone())
}

fn validate_json(schema: &Value, body: &[u8], what: &str) -> Result<(), String> {
    let instance: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let validator = validator(schema, what);
    let errors: Vec<String> = validator.iter_errors(&instance).map(|e| format!("at {}: {e}", e.instance_path())).collect();
    if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
}

fn validator(schema: &Value, what: &str) -> std::sync::Arc<jsonschema::Validator> {
    let key = format!("{what}|{schema}");
    let mut cache = SPEC.validators.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(v) = cache.get(&key) {
        return v.clone();
    }
    let mut root = closed(schema.clone());
    let components = closed(SPEC.doc["components"].clone());
    let Value::Object(map) = &mut root else { panic!("a schema is an object: {schema}") };
    map.insert("components".into(), components);
    let built = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&root)
        .unwrap_or_else(|e| panic!("schema of {what} does not compile: {e}"));
    let built = std::sync::Arc::new(built);
    cache.insert(key, built.clone());
    built
}

/// Marks every object schema that lists its properties as closed, unless it says otherwise. An
/// `allOf` of objects (serde's `flatten`) is merged into one object first, since closing each part
/// would refuse the other parts' fields.
fn closed(mut schema: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if let Some(merged) = map.get("allOf").and_then(Value::as_array).and_then(|parts| merge(parts)) {
                    map.remove("allOf");
                    map.extend(merged);
                }
                if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                    map.insert("additionalProperties".into(), Value::Bool(false));
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut schema);
    schema
}

/// One object schema with every part's properties and required names, if every part is an object.
fn merge(parts: &[Value]) -> Option<Map<String, Value>> {
    let (mut properties, mut required) = (Map::new(), Vec::new());
    for part in parts {
        let part = match part.get("$ref").and_then(Value::as_str) {
            Some(r) => SPEC.doc.pointer(r.trim_start_matches('#'))?,
            None => part,
        };
        if part.get("allOf").is_some() || part.get("properties").is_none() {
            return None;
        }
        properties.extend(part["properties"].as_object()?.clone());
        required.extend(part.get("required").and_then(Value::as_array).cloned().unwrap_or_default());
    }
    let mut merged = Map::new();
    merged.insert("type".into(), "object".into());
    merged.insert("properties".into(), Value::Object(properties));
    merged.insert("required".into(), Value::Array(required));
    Some(merged)
}

fn reference(name: &str) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("$ref".into(), Value::String(format!("#/components/schemas/{name}")));
    map
}

/// A response object may itself be a `$ref` to `#/components/responses/…`.
fn resolve(value: &Value) -> &Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.trim_start_matches('#');
            SPEC.doc.pointer(pointer).unwrap_or(value)
        }
        None => value,
    }
}

#[test]
fn a_response_the_document_does_not_describe_is_refused() {
    // An undocumented field, a wrong enum spelling and a wrong content type are all caught.
    let body = br#"{"status":"ok","extra":1}"#;
    assert!(conforms("GET", "/healthz", 200, "application/json", body).is_err());
    assert!(conforms("GET", "/healthz", 200, "application/json", br#"{"status":"ok"}"#).is_ok());
    assert!(conforms("GET", "/healthz", 200, "text/html", br#"{"status":"ok"}"#).is_err());
    assert!(conforms("GET", "/healthz", 299, "application/json", br#"{"status":"ok"}"#).is_err());
    let error = br#"{"error":{"code":"NotFound","message":"m","details":[]}}"#;
    assert!(conforms("GET", "/v1/nope", 404, "application/json", error).is_err());
}

/// The committed `openapi/openapi.json` must be what the code generates.
#[test]
fn the_committed_openapi_document_is_current() {
    let generated = logbook::api::openapi().to_pretty_json().unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi/openapi.json is stale; regenerate it with:\n    cargo run -q -- openapi > openapi/openapi.json"
    );
}

#[test]
fn every_operation_has_an_id_a_tag_and_error_responses() {
    let api = serde_json::to_value(logbook::api::openapi()).unwrap();
    for (path, item) in api["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(op["operationId"].is_string(), "{method} {path} has no operationId");
            assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()), "{method} {path} has no tag");
            if path.starts_with("/v1") {
                assert!(op["responses"].get("401").is_some(), "{method} {path} documents no 401");
                assert!(op["security"].is_array(), "{method} {path} has no security");
            }
        }
    }
}

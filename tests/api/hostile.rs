//! Hostile input found by the fuzzer (tests/fuzz), kept as tests: each is refused with the
//! contract's error, or stored safely, on both backends; nothing answers 5xx.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::conformance::Conform;
use crate::helpers::{assert_error, entry, json_of, spawn_app};

#[tokio::test]
async fn empty_and_nul_query_values_are_refused_not_ignored() {
    let app = spawn_app().await;
    for query in ["status=", "limit=", "status=success&status=", "user_id=%00", "customer_id=a%00b", "%00=x"] {
        let response = app.get(&format!("/v1/logs?{query}"), &app.server_key).await;
        let body = assert_error(response, StatusCode::BAD_REQUEST, "invalid_query").await;
        let message = body["error"]["details"][0]["message"].as_str().unwrap();
        assert!(message.contains("empty") || message.contains("NUL"), "{query}: {body}");
    }
}

#[tokio::test]
async fn nul_characters_are_refused_in_names_and_replaced_in_bodies() {
    let app = spawn_app().await;
    let mut named = entry("2026-11-20T10:00:00Z");
    named["path"] = json!("/orders\u{0}");
    named["customer_id"] = json!("c\u{0}");
    let body = assert_error(app.post("/v1/logs", &app.server_key, json!({"logs": [named]})).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let fields: Vec<&str> = body["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["logs[0].path", "logs[0].customer_id"], "{body}");

    // Free-form content keeps everything but the NUL, on both backends, and stays searchable.
    let mut free = entry("2026-11-20T10:00:00Z");
    free["channel"] = json!("nul");
    free["request_body"] = json!({"note\u{0}": "before\u{0}after"});
    free["response_body"] = json!("plain\u{0}text");
    free["query"] = json!({"q": "a\u{0}b"});
    free["request_headers"] = json!({"x-note": "h\u{0}"});
    let id = app.ingest(vec![free]).await.remove(0);
    let log = app.get_ok(&format!("/v1/logs/{id}"), &app.server_key).await;
    assert_eq!(log["request_body"], json!({"note\u{FFFD}": "before\u{FFFD}after"}));
    assert_eq!(log["response_body"], "plain\u{FFFD}text");
    assert_eq!(log["query"]["q"], "a\u{FFFD}b");
    assert_eq!(log["request_headers"]["x-note"], "h\u{FFFD}");
    // The server's own request with a NUL in its query is refused, and logged without breaking
    // later body searches.
    let refused = app.get("/v1/logs?channel=nul%00", &app.server_key).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    for side in ["request", "response"] {
        app.wait_for_search_index().await;
        let found = app.get_ok(&format!("/v1/logs?occurred_after=2026-11-01&{side}_body_contains=after&{side}_body_contains=plain"), &app.server_key).await;
        assert_eq!(found["data"].as_array().unwrap().len(), 1, "{side}: {found}");
    }
}

#[tokio::test]
async fn search_strings_are_literals_with_wildcards_quotes_and_backslashes() {
    let app = spawn_app().await;
    let bodies = [r"100% sure", r"under_score", r#"say "hi""#, r"C:\path\to", r"it's", r"plain text"];
    let logs = bodies
        .iter()
        .map(|b| {
            let mut e = entry("2026-11-20T10:00:00Z");
            e["channel"] = json!("literal");
            e["request_body"] = json!(b);
            e
        })
        .collect();
    let ids = app.ingest(logs).await;
    let search = |needle: &str| {
        let app = &app;
        let url = format!("{}/v1/logs?occurred_after=2026-11-01&channel=literal&request_body_contains={}", app.address, urlencode(needle));
        async move {
            let found = json_of(app.client.get(url).bearer_auth(&app.server_key).checked().await.unwrap(), StatusCode::OK).await;
            found["data"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    for round in ["tail", "indexed"] {
        assert_eq!(search("0% s").await, [ids[0].clone()], "{round}: % is a literal");
        assert_eq!(search("%").await, [ids[0].clone()], "{round}");
        assert_eq!(search("r_s").await, [ids[1].clone()], "{round}: _ is a literal");
        assert!(search("r_x").await.is_empty(), "{round}");
        assert_eq!(search(r#""hi""#).await, [ids[2].clone()], "{round}: quotes");
        assert_eq!(search(r"\path\").await, [ids[3].clone()], "{round}: backslashes");
        assert_eq!(search("it's").await, [ids[4].clone()], "{round}: an apostrophe");
        assert!(search("'; DROP TABLE logs; --").await.is_empty(), "{round}");
        app.wait_for_search_index().await;
    }
    assert_eq!(app.get_ok("/v1/logs?occurred_after=2026-11-01&channel=literal", &app.server_key).await["data"].as_array().unwrap().len(), 6);
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn a_documented_path_asked_with_another_method_answers_405_with_allow() {
    let app = spawn_app().await;
    for (method, path, allow) in [(Method::PUT, "/v1/logs/histogram", "GET"), (Method::DELETE, "/healthz", "GET"), (Method::PATCH, "/v1/events", "GET, POST")] {
        let response = app.request(method.clone(), path, Some(&app.server_key), None).await;
        assert_eq!(response.headers().get("allow").and_then(|v| v.to_str().ok()), Some(allow), "{method} {path}");
        assert_error(response, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    }
    assert_error(app.request(Method::GET, "/v1/nothing-here", Some(&app.server_key), None).await, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn an_unknown_token_is_refused_before_the_body_is_read() {
    let app = spawn_app().await;
    for token in ["sk_unknown00000000000000000000000", "garbage"] {
        let bad_body = app.client.post(format!("{}/v1/logs", app.address)).bearer_auth(token).header("content-type", "application/json").body("{not json");
        assert_error(bad_body.checked().await.unwrap(), StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    // A known key without the role is refused before its body is judged too.
    let bad_body = app.client.post(format!("{}/v1/logs", app.address)).bearer_auth(&app.client_key).header("content-type", "application/json").body("{not json");
    assert_error(bad_body.checked().await.unwrap(), StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn oversized_queries_headers_bodies_and_repeated_values_get_the_contract_error() {
    let app = spawn_app().await;
    let long = format!("/v1/logs?user_id={}", "u".repeat(9000));
    assert_error(app.get(&long, &app.server_key).await, StatusCode::URI_TOO_LONG, "uri_too_long").await;
    let many: Vec<String> = (0..101).map(|i| format!("user_id=u{i}")).collect();
    let body = assert_error(app.get(&format!("/v1/logs?{}", many.join("&")), &app.server_key).await, StatusCode::BAD_REQUEST, "invalid_query").await;
    assert!(body["error"]["details"][0]["message"].as_str().unwrap().contains("at most 100"), "{body}");
    let hundred: Vec<String> = (0..100).map(|i| format!("user_id=u{i}")).collect();
    assert_eq!(app.get(&format!("/v1/logs?{}", hundred.join("&")), &app.server_key).await.status(), StatusCode::OK);

    let big_header = app.client.get(format!("{}/v1/logs", app.address)).bearer_auth(&app.server_key).header("x-big", "a".repeat(9000));
    assert_error(big_header.checked().await.unwrap(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large").await;
    let mut many_headers = app.client.get(format!("{}/v1/logs", app.address)).bearer_auth(&app.server_key);
    for i in 0..5 {
        many_headers = many_headers.header(format!("x-part-{i}"), "b".repeat(7000));
    }
    assert_error(many_headers.checked().await.unwrap(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large").await;

    // JSON nested past 64 levels is refused whole; 64 levels are stored.
    let nested = |levels: usize| format!(r#"{{"type":"order.created","data":{}1{}}}"#, r#"{"a":"#.repeat(levels - 1), "}".repeat(levels - 1));
    let deep = app.client.post(format!("{}/v1/events", app.address)).bearer_auth(&app.server_key).header("content-type", "application/json").body(nested(65));
    let body = assert_error(deep.checked().await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert!(body["error"]["details"][0]["message"].as_str().unwrap().contains("64 levels"), "{body}");
    let fine = app.client.post(format!("{}/v1/events", app.address)).bearer_auth(&app.server_key).header("content-type", "application/json").body(nested(64));
    assert_eq!(fine.checked().await.unwrap().status(), StatusCode::ACCEPTED);
    let far = app.client.post(format!("{}/v1/events", app.address)).bearer_auth(&app.server_key).header("content-type", "application/json").body(nested(5000));
    assert_error(far.checked().await.unwrap(), StatusCode::BAD_REQUEST, "malformed_request").await;
}

/// Sends `head` and the start of a body, then stalls; returns the answer and how long it took.
async fn stall(address: &str, head: String) -> (String, std::time::Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address.trim_start_matches("http://")).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(60), stream.read(&mut answer)).await.expect("answered").unwrap();
    (String::from_utf8_lossy(&answer[..n]).into_owned(), started.elapsed())
}

#[tokio::test]
async fn a_json_body_or_an_upload_that_stalls_is_answered_408() {
    let app = spawn_app().await;
    let key = &app.server_key;
    let json = format!("POST /v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"type\":");
    let upload = format!("POST /v1/imports HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: text/csv\r\ncontent-length: 1000\r\n\r\ntype,source_id\n");
    let ((json, json_took), (upload, upload_took)) = tokio::join!(stall(&app.address, json), stall(&app.address, upload));
    for (answer, took) in [(json, json_took), (upload, upload_took)] {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("request_timeout"), "{answer}");
        assert!(took >= std::time::Duration::from_secs(29), "{took:?}");
    }
    // The stalled upload left no file or import behind.
    assert!(app.get_ok("/v1/tasks?type=import", &app.server_key).await["data"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn json_filters_follow_the_rules_of_query_parameters() {
    let app = spawn_app().await;
    let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    for (filters, message) in [
        (json!({"user_id": "a\u{0}"}), "NUL"),
        (json!({"channel": ""}), "empty"),
        (json!({"user_id": many}), "at most 100"),
    ] {
        let body = assert_error(app.post("/v1/exports", &app.server_key, json!({"resource": "logs", "filters": filters})).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        let detail = &body["error"]["details"][0];
        assert!(detail["field"].as_str().unwrap().starts_with("filters."), "{body}");
        assert!(detail["message"].as_str().unwrap().contains(message), "{body}");
    }
    assert!(app.get_ok("/v1/exports", &app.server_key).await["data"].as_array().unwrap().is_empty(), "nothing was made");
}

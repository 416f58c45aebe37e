//! Bad input of any kind answers a clear 4xx in the contract's error body and changes nothing.

use crate::conformance::Conform;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_error, spawn_app, spawn_with};

#[tokio::test]
async fn malformed_requests_answer_in_the_error_body_and_change_nothing() {
    let app = spawn_app().await;
    let before = app.get_ok("/v1/projects?limit=1000", &app.admin).await["data"].as_array().unwrap().len();
    let url = |p: &str| format!("{}{p}", app.address);
    let raw = |body: &'static str, content_type: &'static str| {
        app.client.post(url("/v1/projects")).bearer_auth(&app.admin).header("content-type", content_type).body(body)
    };
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (raw("{\"name\": ", "application/json"), StatusCode::BAD_REQUEST, "malformed_request"),
        (raw("", "application/json"), StatusCode::BAD_REQUEST, "malformed_request"),
        (raw("[1,2]", "application/json"), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (raw("name=x", "application/x-www-form-urlencoded"), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        (raw("{\"name\": 5}", "application/json"), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (raw("{}", "application/json"), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (raw("{\"name\": \"  \"}", "application/json"), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (raw("{\"name\": \"x\", \"time_zone\": \"Mars/Base\"}", "application/json"), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (raw("{\"name\": \"x\", \"plan\": \"gold\"}", "application/json"), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (raw("{\"name\": \"x\", \"retention_days\": 99999}", "application/json"), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (raw("{\"name\": \"x\", \"extra\": 1}", "application/json"), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (app.client.get(url("/v1/projects?limit=0")).bearer_auth(&app.admin), StatusCode::BAD_REQUEST, "invalid_query"),
        (app.client.get(url("/v1/projects?limit=5&limit=6")).bearer_auth(&app.admin), StatusCode::BAD_REQUEST, "invalid_query"),
        (app.client.get(url("/v1/projects?cursor=bogus")).bearer_auth(&app.admin), StatusCode::BAD_REQUEST, "invalid_query"),
        (app.client.get(url("/v1/projects?colour=red")).bearer_auth(&app.admin), StatusCode::BAD_REQUEST, "invalid_query"),
        (app.client.get(url("/v1/logs?status=maybe")).bearer_auth(&app.server_key), StatusCode::BAD_REQUEST, "invalid_query"),
        (app.client.get(url("/v1/logs?occurred_after=last-week")).bearer_auth(&app.server_key), StatusCode::BAD_REQUEST, "invalid_query"),
        (app.client.get(url("/v1/logs?channel=NOT%20OK")).bearer_auth(&app.server_key), StatusCode::BAD_REQUEST, "invalid_query"),
        (app.client.get(url("/v1/logs")).bearer_auth(&app.server_key).header("Logbook-Channel", "Bad Channel"), StatusCode::BAD_REQUEST, "malformed_request"),
        (app.client.get(url("/v1/no-such-thing")).bearer_auth(&app.server_key), StatusCode::NOT_FOUND, "not_found"),
        (app.client.delete(url("/v1/projects")).bearer_auth(&app.admin), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
    ];
    for (request, status, code) in cases {
        let response = request.checked().await.unwrap();
        assert!(response.headers().contains_key("logbook-log-id"), "every /v1 response names its log entry");
        assert_error(response, status, code).await;
    }
    let after = app.get_ok("/v1/projects?limit=1000", &app.admin).await["data"].as_array().unwrap().len();
    assert_eq!(before, after, "no bad request created anything");
}

#[tokio::test]
async fn a_422_names_the_failing_field() {
    let app = spawn_app().await;
    let res = app.post("/v1/projects", &app.admin, json!({"name": "x", "time_zone": "Nowhere/City"})).await;
    let body = assert_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["error"]["details"][0]["field"], "time_zone");
    let res = app.post("/v1/projects", &app.admin, json!({"time_zone": "UTC"})).await;
    let body = assert_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["error"]["details"][0]["field"], "name");
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let app = spawn_with(|s| s.max_body_bytes = 1024).await;
    let big = json!({"name": "x".repeat(4096)});
    assert_error(app.post("/v1/projects", &app.admin, big).await, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

#[tokio::test]
async fn operations_endpoints_answer_without_auth() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz", "/metrics", "/", "/openapi.json", "/docs/"] {
        let res = app.request(Method::GET, path, None, None).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    let metrics = app.request(Method::GET, "/metrics", None, None).await.text().await.unwrap();
    assert!(metrics.contains("logbook_http_requests_total"), "{metrics}");
    assert!(metrics.contains("logbook_http_request_duration_seconds_bucket"));
    assert!(metrics.contains("logbook_db_pool_connections"));
    let docs = app.request(Method::GET, "/docs/", None, None).await.text().await.unwrap();
    assert!(docs.contains("swagger"), "the interactive docs are served from embedded assets");
    let redirect = app.client.get(format!("{}/docs", app.address)).checked().await.unwrap();
    assert_eq!(redirect.status(), StatusCode::OK, "/docs redirects to /docs/");
}

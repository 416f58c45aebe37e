use crate::conformance::Conform;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_error, json_of, restart, spawn_app};

#[tokio::test]
async fn an_admin_creates_a_project_with_plan_defaults_and_two_working_keys() {
    let app = spawn_app().await;
    let shared = app.create_project("Shop", "Europe/Berlin").await;
    assert_eq!(shared["time_zone"], "Europe/Berlin");
    assert_eq!(shared["plan"], "shared");
    assert_eq!(shared["retention_days"], 183);
    assert!(shared["id"].as_str().unwrap().starts_with("prj_"));
    assert!(shared["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(shared["created_at_project"].as_str().unwrap().ends_with("+01:00"));
    let sk = shared["server_key"].as_str().unwrap();
    assert!(sk.starts_with("sk_") && shared["client_key"].as_str().unwrap().starts_with("pk_"));
    app.get_ok("/v1/logs", sk).await;

    let body = json!({"name": "Big", "plan": "dedicated"});
    let dedicated = json_of(app.post("/v1/projects", &app.admin, body).await, StatusCode::CREATED).await;
    assert_eq!((dedicated["retention_days"].as_i64(), dedicated["time_zone"].as_str()), (Some(365), Some("UTC")));
    let body = json!({"name": "Custom", "retention_days": 30});
    let custom = json_of(app.post("/v1/projects", &app.admin, body).await, StatusCode::CREATED).await;
    assert_eq!(custom["retention_days"], 30);
}

#[tokio::test]
async fn projects_are_listed_newest_first_in_pages_and_can_be_patched() {
    let app = spawn_app().await;
    let mut created = vec![app.project_id.clone()];
    for i in 0..4 {
        created.push(app.create_project(&format!("P{i}"), "UTC").await["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut path = "/v1/projects?limit=2".to_owned();
    loop {
        let page = app.get_ok(&path, &app.admin).await;
        seen.extend(page["data"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/projects?limit=2&cursor={c}"),
            None => break,
        }
    }
    created.reverse();
    assert_eq!(seen, created);

    let id = &created[0];
    let patch = json!({"name": "Renamed", "time_zone": "Asia/Tokyo", "plan": "dedicated", "retention_days": 400});
    let patched = json_of(app.request(Method::PATCH, &format!("/v1/projects/{id}"), Some(&app.admin), Some(patch)).await, StatusCode::OK).await;
    assert_eq!((patched["name"].as_str(), patched["time_zone"].as_str()), (Some("Renamed"), Some("Asia/Tokyo")));
    assert_eq!((patched["plan"].as_str(), patched["retention_days"].as_i64()), (Some("dedicated"), Some(400)));
    assert!(patched["updated_at_project"].as_str().unwrap().ends_with("+09:00"));
    let fetched = app.get_ok(&format!("/v1/projects/{id}"), &app.admin).await;
    assert_eq!(fetched, patched);

    let bad = json!({"retention_days": 0});
    assert_error(app.request(Method::PATCH, &format!("/v1/projects/{id}"), Some(&app.admin), Some(bad)).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_error(app.get("/v1/projects/prj_01jd000000000000000000000", &app.admin).await, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn api_keys_are_created_listed_without_tokens_and_revoked() {
    let app = spawn_app().await;
    let path = format!("/v1/projects/{}/api-keys", app.project_id);
    let key = json_of(app.post(&path, &app.admin, json!({"kind": "server", "name": "CI"})).await, StatusCode::CREATED).await;
    let token = key["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("sk_"));
    app.get_ok("/v1/logs", &token).await;

    let list = app.get_ok(&path, &app.admin).await;
    let keys = list["data"].as_array().unwrap();
    assert_eq!(keys.len(), 3, "default server, default client and CI");
    assert!(keys.iter().all(|k| k.get("token").is_none()), "tokens are never listed");

    let key_id = key["id"].as_str().unwrap();
    let revoke = app.request(Method::DELETE, &format!("{path}/{key_id}"), Some(&app.admin), None).await;
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    assert_error(app.get("/v1/logs", &token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let again = app.request(Method::DELETE, &format!("{path}/{key_id}"), Some(&app.admin), None).await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT, "revoking twice changes nothing");
    let listed = app.get_ok(&path, &app.admin).await;
    let revoked = listed["data"].as_array().unwrap().iter().find(|k| k["id"] == key_id).unwrap().clone();
    assert!(revoked["revoked_at"].is_string());

    let client = json_of(app.post(&path, &app.admin, json!({"kind": "client", "name": "Web"})).await, StatusCode::CREATED).await;
    assert!(client["token"].as_str().unwrap().starts_with("pk_"));
    assert_error(app.post(&path, &app.admin, json!({"kind": "root", "name": "x"})).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test]
async fn users_get_a_token_with_full_project_access_and_unique_emails() {
    let app = spawn_app().await;
    let path = format!("/v1/projects/{}/users", app.project_id);
    let user = json_of(app.post(&path, &app.admin, json!({"name": "Ada", "email": "Ada@Example.com"})).await, StatusCode::CREATED).await;
    assert_eq!(user["email"], "ada@example.com");
    let token = user["token"].as_str().unwrap();
    assert!(token.starts_with("ut_"));
    let project = app.get_ok("/v1/project", token).await;
    assert_eq!(project["id"], app.project_id.as_str());

    let dup = app.post(&path, &app.admin, json!({"name": "Ada 2", "email": "ada@example.COM"})).await;
    assert_error(dup, StatusCode::CONFLICT, "conflict").await;
    let list = app.get_ok(&path, &app.admin).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "the bootstrap user and Ada");
    let bad = app.post(&path, &app.admin, json!({"name": "Bob", "email": "bob"})).await;
    let body = assert_error(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["error"]["details"][0]["field"], "email");
}

#[tokio::test]
async fn each_token_kind_reaches_only_what_it_may() {
    let app = spawn_app().await;
    // Client keys: nothing but events.
    assert_error(app.get("/v1/logs", &app.client_key).await, StatusCode::FORBIDDEN, "forbidden").await;
    // Project credentials: no admin endpoints.
    for token in [&app.server_key, &app.user_token, &app.client_key] {
        assert_error(app.get("/v1/projects", token).await, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // The admin token manages projects but reads no project data.
    assert_error(app.get("/v1/logs", &app.admin).await, StatusCode::FORBIDDEN, "forbidden").await;
    // Missing, malformed and unknown tokens.
    assert_error(app.request(Method::GET, "/v1/logs", None, None).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    for token in ["sk_doesnotexist", "garbage", "adm_wrongwrongwrongwrongwrong"] {
        assert_error(app.get("/v1/logs", token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    let basic = app.client.get(format!("{}/v1/logs", app.address)).header("Authorization", "Basic abc").checked().await.unwrap();
    assert_error(basic, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn a_project_never_sees_another_projects_data() {
    let app = spawn_app().await;
    let other = app.create_project("Other", "UTC").await;
    let other_key = other["server_key"].as_str().unwrap();
    let ids = app.ingest(vec![crate::helpers::entry("2026-11-20T10:00:00Z")]).await;
    assert_error(app.get(&format!("/v1/logs/{}", ids[0]), other_key).await, StatusCode::NOT_FOUND, "not_found").await;
    let theirs = app.get_ok("/v1/logs?occurred_after=2020-01-01", other_key).await;
    assert!(theirs["data"].as_array().unwrap().iter().all(|l| l["id"] != ids[0].as_str()));
    assert!(app.get_ok("/v1/logs/endpoints", other_key).await.as_array().unwrap().iter().all(|e| e != "GET /orders"));
}

#[tokio::test]
async fn a_restart_keeps_all_data_and_does_not_bootstrap_again() {
    let app = spawn_app().await;
    let created = app.create_project("Kept", "UTC").await;
    let (again, port) = restart(&app).await;
    assert!(again.first_start.is_none(), "credentials are printed on the first start only");
    let _server = again.spawn();
    let url = format!("http://127.0.0.1:{port}/v1/projects/{}", created["id"].as_str().unwrap());
    let fetched = app.client.get(url).bearer_auth(&app.admin).checked().await.unwrap();
    let fetched = json_of(fetched, StatusCode::OK).await;
    assert_eq!(fetched["name"], "Kept");
    let key = created["server_key"].as_str().unwrap();
    let logs = app.client.get(format!("http://127.0.0.1:{port}/v1/logs")).bearer_auth(key).checked().await.unwrap();
    assert_eq!(logs.status(), StatusCode::OK);
}

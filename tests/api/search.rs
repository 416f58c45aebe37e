//! Body-text search answers completely whether or not the asynchronous index has caught up.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, entry, spawn_app, spawn_without_workers};

async fn ingest_bodies(app: &TestApp, bodies: &[(&str, &str)]) -> Vec<String> {
    let logs = bodies
        .iter()
        .map(|(req, res)| {
            let mut e = entry("2026-11-20T10:00:00Z");
            e["channel"] = json!("search");
            e["request_body"] = json!({"note": req});
            e["response_body"] = json!(res);
            e
        })
        .collect();
    app.ingest(logs).await
}

async fn search(app: &TestApp, query: &str) -> Vec<String> {
    let mut ids = app.log_ids(&format!("occurred_after=2026-11-01&channel=search&{query}")).await;
    ids.sort();
    ids
}

async fn assert_searches(app: &TestApp, indexed: &[String], tail: &[String]) {
    let mut both = vec![indexed[0].clone(), tail[0].clone()];
    both.sort();
    assert_eq!(search(app, "request_body_contains=BLUE%20suede").await, both);
    assert_eq!(search(app, "response_body_contains=declined").await, vec![indexed[1].clone()].into_iter().chain([tail[1].clone()]).collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>());
    assert_eq!(search(app, "request_body_contains=50%25_off").await, vec![indexed[2].clone()]);
    assert_eq!(search(app, "request_body_contains=zz").await, Vec::<String>::new());
    assert_eq!(search(app, "request_body_contains=%22note%22:%22gift").await, vec![tail[2].clone()]);
    // Short needles cannot use trigrams and still find everything.
    let mut short = indexed.to_vec();
    short.extend_from_slice(tail);
    short.sort();
    assert_eq!(search(app, "request_body_contains=e").await, short);
    // A search in one body does not match the other.
    assert!(search(app, "response_body_contains=suede").await.is_empty());
    // Several values are OR-ed.
    let mut either = vec![indexed[2].clone(), tail[2].clone()];
    either.sort();
    assert_eq!(search(app, "request_body_contains=50%25_off&request_body_contains=gift%20wrap").await, either);
}

#[tokio::test]
async fn search_covers_the_index_and_the_not_yet_indexed_tail() {
    let app = spawn_app().await;
    let indexed = ingest_bodies(&app, &[("Blue Suede shoes", "ok"), ("x", "card DECLINED"), ("50%_off sale", "ok")]).await;
    app.wait_for_search_index().await;
    let tail = ingest_bodies(&app, &[("blue suede again", "fine"), ("y", "Declined again"), ("gift wrap", "ok")]).await;
    assert_searches(&app, &indexed, &tail).await;
    app.wait_for_search_index().await;
    assert_searches(&app, &indexed, &tail).await;
}

#[tokio::test]
async fn without_an_indexer_search_is_still_complete_and_the_lag_is_exported() {
    let app = spawn_without_workers().await;
    let indexed = ingest_bodies(&app, &[("Blue Suede shoes", "ok"), ("x", "card DECLINED"), ("50%_off sale", "ok")]).await;
    let tail = ingest_bodies(&app, &[("blue suede again", "fine"), ("y", "Declined again"), ("gift wrap", "ok")]).await;
    assert_searches(&app, &indexed, &tail).await;
    let metrics = app.request(Method::GET, "/metrics", None, None).await.text().await.unwrap();
    let lag_line = metrics.lines().find(|l| l.starts_with("logbook_search_index_lag_events ")).expect("lag exported");
    let lag: i64 = lag_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(lag >= 6, "{lag_line}");
}

#[tokio::test]
async fn a_search_matching_thousands_of_logs_pages_through_all_of_them() {
    let app = spawn_app().await;
    let mut expected = Vec::new();
    for batch in 0..3 {
        let logs: Vec<_> = (0..700)
            .map(|i| {
                let mut e = entry(&format!("2026-11-20T10:{:02}:{:02}Z", batch * 10 + i / 60, i % 60));
                e["channel"] = json!("search");
                e["request_body"] = json!({"note": format!("a Common phrase #{i}")});
                e
            })
            .collect();
        expected.extend(app.ingest(logs).await);
    }
    ingest_bodies(&app, &[("rare", "ok"), ("other", "ok")]).await;
    app.wait_for_search_index().await;
    let mut found = search(&app, "request_body_contains=common%20PHRASE").await;
    found.sort();
    expected.sort();
    assert_eq!(found.len(), 2100);
    assert_eq!(found, expected);
}

#[tokio::test]
async fn phrases_of_common_trigrams_are_found_exactly_whether_dense_or_sparse() {
    // Over 20,000 bodies hold every trigram of "gamma alpha" but only 25 hold the phrase, and
    // "xalpha" is in all the others: whether listed from the index or checked row by row in time
    // order, both are found exactly.
    let app = spawn_app().await;
    let (mut sparse, mut dense) = (Vec::new(), Vec::new());
    for batch in 0..21 {
        let notes: Vec<String> = (0..1000)
            .map(|i| match batch * 1000 + i {
                n if n % 840 == 0 => format!("gamma alpha #{n}"),
                n => format!("gamma xalpha ma al #{n}"),
            })
            .collect();
        let logs: Vec<_> = notes
            .iter()
            .enumerate()
            .map(|(i, note)| {
                let mut e = entry(&format!("2026-11-{:02}T{:02}:{:02}:{:02}Z", 2 + batch, i / 3600, i / 60 % 60, i % 60));
                e["channel"] = json!("search");
                e["request_body"] = json!({ "note": note });
                e
            })
            .collect();
        let ids = app.ingest(logs).await;
        for (id, note) in ids.into_iter().zip(&notes) {
            if note.contains("xalpha") { dense.push(id) } else { sparse.push(id) }
        }
    }
    app.wait_for_search_index().await;
    sparse.sort();
    dense.sort();
    assert_eq!(sparse.len(), 25);
    assert_eq!(search(&app, "request_body_contains=Gamma%20Alpha").await, sparse);
    assert_eq!(search(&app, "request_body_contains=XALPHA").await, dense);
}

#[tokio::test]
async fn an_index_whose_checkpoint_is_gone_is_rebuilt_and_search_stays_complete() {
    // PostgreSQL's crash recovery empties the unlogged index and its checkpoint together. Here only
    // the checkpoint goes, the harder case: the rows left behind must not be indexed twice.
    use sea_orm::{ConnectionTrait, DbBackend};
    let app = spawn_app().await;
    let indexed = ingest_bodies(&app, &[("Blue Suede shoes", "ok"), ("x", "card DECLINED"), ("50%_off sale", "ok")]).await;
    app.wait_for_search_index().await;
    let tail = ingest_bodies(&app, &[("blue suede again", "fine"), ("y", "Declined again"), ("gift wrap", "ok")]).await;
    let index = app.store.search();
    let table = if index.db().get_database_backend() == DbBackend::Postgres { "projection_checkpoints" } else { "main.projection_checkpoints" };
    index.db().execute_unprepared(&format!("DELETE FROM {table}")).await.unwrap();
    assert_eq!(index.checkpoint().await.unwrap(), 0, "a missing checkpoint covers nothing");
    assert_searches(&app, &indexed, &tail).await;
    app.wait_for_search_index().await;
    assert!(index.checkpoint().await.unwrap() > 0);
    assert_searches(&app, &indexed, &tail).await;
}

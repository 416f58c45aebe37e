//! Live subscribers wake on every commit: on this node at once, and on PostgreSQL on every other
//! node through the event log's NOTIFY.

use std::time::Duration;

use serde_json::json;

use crate::helpers::spawn_app;

async fn woken(rx: &mut tokio::sync::watch::Receiver<u64>) -> bool {
    tokio::time::timeout(Duration::from_secs(10), rx.changed()).await.is_ok_and(|r| r.is_ok())
}

#[tokio::test]
async fn a_commit_wakes_subscribers_here_and_on_another_node() {
    let app = spawn_app().await;
    // A second node on the same database, with no workers, so nothing of its own commits.
    let other = logbook::startup::Application::build(app.settings.clone(), "127.0.0.1:0", false).await.expect("second node");
    let mut here = app.store.commits().subscribe();
    let mut there = other.store().commits().subscribe();
    tokio::time::sleep(Duration::from_secs(1)).await; // the listener is up (it wakes once on connecting)
    here.mark_unchanged();
    there.mark_unchanged();

    app.publish("order.created", json!({"n": 1})).await;
    assert!(woken(&mut here).await, "this node's subscriber was not woken");
    let postgres = app.settings.database_url.as_deref().is_some_and(|u| u.starts_with("postgres"));
    if postgres {
        assert!(woken(&mut there).await, "the other node's subscriber was not woken through PostgreSQL");
    } else {
        // One SQLite file has one process; a second node is not a deployment it supports.
        assert!(!there.has_changed().unwrap(), "nothing was committed through the other node");
    }
}

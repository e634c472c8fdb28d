//! Key rotation without a restart: the old key stops at once, its page sessions and
//! open sockets end; everyone else is untouched. Page sessions are HttpOnly,
//! SameSite=Strict cookies and pages send a strict Content-Security-Policy.

use std::time::{Duration, Instant};

use diemcau::auth::{Caller, Role, Secrets};
use reqwest::header;

use crate::helpers::*;

/// Opens `page` with `key` as a browser would; returns the session cookie it set.
async fn page_session(app: &TestApp, page: &str, key: &str) -> String {
    let response = app
        .http
        .get(app.url(&format!("{page}?key={key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let policy = response.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    for rule in [
        "default-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(rule), "{policy}");
    }
    let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_string()
}

async fn whoami(app: &TestApp, cookie: &str) -> u16 {
    app.http
        .get(app.url("/api/whoami"))
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_rotated_site_key_stops_at_once_and_its_socket_and_page_session_end() {
    let app = spawn_app(steady).await;
    let old = app.key(SITE).to_string();
    let bridge = EchoingBridge::join(&app, SITE).await;
    let other = EchoingBridge::join(&app, OTHER_SITE).await;
    let cookie = page_session(&app, "/bridge", &old).await;
    let other_cookie = page_session(&app, "/bridge", app.key(OTHER_SITE)).await;
    assert_eq!(whoami(&app, &cookie).await, 200);

    let rotated = Instant::now();
    let new = Secrets::rotate(&app.data_dir, Caller::Site(SITE.parse().unwrap())).unwrap();
    assert_eq!(bridge.closed_by_server().await, Some(4401));
    assert!(
        rotated.elapsed() < Duration::from_millis(1500),
        "{:?}",
        rotated.elapsed()
    );

    let mut refused = Client::connect(&app, "/ws/bridge").await;
    refused.hello(SITE, &old).await;
    assert_eq!(refused.expect_close().await, 4401, "the old key is refused");
    assert_eq!(whoami(&app, &cookie).await, 401, "the page session ended");
    let fresh = EchoingBridge::join_at(app.addr, SITE, new.expose()).await;
    app.wait_for_state(SITE, "online", WAIT).await;

    assert_eq!(
        whoami(&app, &other_cookie).await,
        200,
        "other sites keep their sessions"
    );
    assert_eq!(app.state_of(OTHER_SITE).await, "online");
    fresh.close().await;
    other.close().await;
}

#[tokio::test]
async fn a_rotated_role_key_stops_at_once_and_its_live_feed_closes() {
    let app = spawn_app(steady).await;
    let old = app.key("operator").to_string();
    let mut feed = Client::connect(&app, &format!("/ws/live?key={old}")).await;
    assert_eq!(feed.recv().await["type"], "snapshot");
    let mut display = Client::connect(&app, &format!("/ws/live?key={}", app.key("display"))).await;
    assert_eq!(display.recv().await["type"], "snapshot");

    let new = Secrets::rotate(&app.data_dir, Caller::Role(Role::Operator)).unwrap();
    assert_eq!(feed.expect_close().await, 4401);
    let (status, _) = app.get("/api/status", Some(&old)).await;
    assert_eq!(status, 401, "the old operator key");
    let (status, _) = app.get("/api/status", Some(new.expose())).await;
    assert_eq!(status, 200, "the new operator key");

    // The display's feed is untouched: it still gets the next timer change.
    app.start_slot(1).await;
    assert_eq!(display.recv_type("timer").await["state"], "running");
}

#[tokio::test]
async fn a_damaged_keys_file_changes_nothing_until_it_is_fixed() {
    let app = spawn_app(steady).await;
    let path = app.data_dir.join("secrets.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, "[roles\nadmin = ").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = app.get("/api/status", Some(app.key("operator"))).await;
    assert_eq!(status, 200, "the keys in force stay");
    std::fs::write(&path, good).unwrap();
    let new = Secrets::rotate(&app.data_dir, Caller::Role(Role::Operator)).unwrap();
    let deadline = Instant::now() + WAIT;
    while app.get("/api/status", Some(new.expose())).await.0 != 200 {
        assert!(Instant::now() < deadline, "the repaired file is taken");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_rotation_ends_every_socket_of_the_old_key_however_many() {
    let app = spawn_app(steady).await;
    let old = app.key("operator").to_string();
    let mut feeds = Vec::new();
    for _ in 0..120 {
        let mut feed = Client::connect(&app, &format!("/ws/live?key={old}")).await;
        assert_eq!(feed.recv().await["type"], "snapshot");
        feeds.push(feed);
    }
    // Half of them behind on their frames: a page busy drawing still gets the close.
    for _ in 0..20 {
        app.start_slot(1).await;
        app.post(
            "/api/timer/stop",
            Some(app.key("secretary")),
            serde_json::json!({}),
        )
        .await;
        app.post(
            "/api/timer/reset",
            Some(app.key("secretary")),
            serde_json::json!({"slot": 1}),
        )
        .await;
    }
    // Every site's key and the operator's at once: more holders than one notice
    // channel holds, all seen in one look at the file.
    for site in app
        .keys
        .keys()
        .filter(|k| k.chars().all(|c| c.is_ascii_digit()))
    {
        Secrets::rotate(&app.data_dir, Caller::Site(site.parse().unwrap())).unwrap();
    }
    Secrets::rotate(&app.data_dir, Caller::Role(Role::Operator)).unwrap();
    let codes = futures_util::future::join_all(feeds.iter_mut().map(|f| f.expect_close())).await;
    assert!(codes.iter().all(|c| *c == 4401), "{codes:?}");
}

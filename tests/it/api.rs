//! The JSON API: role checks, shapes, errors.

use crate::helpers::*;

#[tokio::test]
async fn status_and_sites_answer_staff_keys_only() {
    let app = spawn_app(fast).await;
    for path in ["/api/status", "/api/sites", "/api/sites/05443"] {
        for role in ["admin", "operator", "secretary"] {
            let (status, _) = app.get(path, Some(app.key(role))).await;
            assert_eq!(status, 200, "{role} on {path}");
        }
        let (status, body) = app.get(path, None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("unauthorized")),
            "no key on {path}"
        );
        let (status, _) = app.get(path, Some("not-a-key")).await;
        assert_eq!(status, 401, "wrong key on {path}");
        let (status, body) = app.get(path, Some(app.key("display"))).await;
        assert_eq!(status, 403, "display on {path}");
        assert!(body["message"].as_str().unwrap().contains("display"));
    }
    let (status, _) = app.get("/api/status", Some(app.key(SITE))).await;
    assert_eq!(status, 403, "a site key does not see everyone");
    let (status, _) = app.get("/api/sites", Some(app.key(SITE))).await;
    assert_eq!(status, 403);
    let (status, body) = app
        .get(&format!("/api/sites/{SITE}"), Some(app.key(SITE)))
        .await;
    assert_eq!(
        (status, body["id"].as_str()),
        (200, Some(SITE)),
        "a site sees itself"
    );
    let (status, _) = app
        .get(&format!("/api/sites/{OTHER_SITE}"), Some(app.key(SITE)))
        .await;
    assert_eq!(status, 403, "a site key acts only as its own site");
}

#[tokio::test]
async fn status_counts_sites_by_state() {
    let app = spawn_app(fast).await;
    let bridge = EchoingBridge::join(&app, SITE).await;
    app.wait_for_state(SITE, "online", WAIT).await;
    let (_, body) = app.get("/api/status", Some(app.key("operator"))).await;
    assert_eq!(body["sites"]["total"], 92);
    assert_eq!(body["sites"]["online"], 1);
    assert_eq!(body["sites"]["never_seen"], 91);
    assert!(body["server_ms"].as_i64().unwrap() > 0);
    bridge.close().await;
}

#[tokio::test]
async fn site_list_has_the_documented_fields_for_all_92_sites() {
    let app = spawn_app(fast).await;
    let (_, body) = app.get("/api/sites", Some(app.key("operator"))).await;
    let sites = body["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 92);
    let phan_dinh_phung = sites.iter().find(|s| s["id"] == SITE).unwrap();
    assert_eq!(phan_dinh_phung["name"], "Phường Phan Đình Phùng");
    for field in [
        "state",
        "since_ms",
        "last_seen_ms",
        "rtt_ms",
        "jitter_ms",
        "stalled_probes",
        "reconnects",
        "uptime",
        "flapping",
        "former_district",
        "kind",
    ] {
        assert!(phan_dinh_phung.get(field).is_some(), "missing {field}");
    }
}

#[tokio::test]
async fn one_site_lists_its_transitions_newest_first() {
    let app = spawn_app(fast).await;
    let bridge = EchoingBridge::join(&app, SITE).await;
    app.wait_for_state(SITE, "online", WAIT).await;
    bridge.close().await;
    app.wait_for_state(SITE, "offline", WAIT).await;

    let site = app.site(SITE).await;
    let transitions = site["transitions"].as_array().unwrap();
    assert_eq!(transitions.len(), 2, "{transitions:?}");
    assert_eq!(
        (&transitions[0]["from"], &transitions[0]["to"]),
        (&"online".into(), &"offline".into())
    );
    assert_eq!(
        (&transitions[1]["from"], &transitions[1]["to"]),
        (&"never_seen".into(), &"online".into())
    );
    assert!(
        transitions[0]["reason"]
            .as_str()
            .unwrap()
            .contains("closed")
    );
    for field in ["at_ms", "detected_at_ms"] {
        assert!(transitions[0][field].as_i64().unwrap() >= transitions[1][field].as_i64().unwrap());
    }
    let uptime = site["uptime"].as_f64().unwrap();
    assert!(uptime > 0.0 && uptime < 1.0, "{uptime}");
}

#[tokio::test]
async fn unknown_sites_and_routes_are_json_404s() {
    let app = spawn_app(fast).await;
    let (status, body) = app.get("/api/sites/99999", Some(app.key("operator"))).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, body) = app
        .get("/api/sites/..%2F..%2Fetc", Some(app.key("operator")))
        .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, body) = app.get("/nowhere", None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn health_and_readiness_are_open() {
    let app = spawn_app(fast).await;
    let (status, body) = app.get("/healthz", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
}

#[tokio::test]
async fn the_call_list_csv_has_each_site_state_contact_and_latest_verdict() {
    let roster = "code,name,kind,former_district,contact_name,contact_phone\n\
        05443,Phường Phan Đình Phùng,phuong,TP Thái Nguyên,Chị Lan,0912 345 678\n\
        05710,Phường Linh Sơn,phuong,TP Thái Nguyên,,\n";
    let app = spawn_app_with_roster(roster, fast).await;
    let _bridge = EchoingBridge::join(&app, SITE).await;
    app.wait_for_state(SITE, "online", WAIT).await;
    // A stored rehearsal, written beside the running service as a check would leave it.
    let db = rusqlite::Connection::open(app.data_dir.join("diemcau.sqlite3")).unwrap();
    db.busy_timeout(WAIT).unwrap();
    for (id, started_ms, verdict) in [("a", 1, "fail"), ("b", 2, "pass")] {
        db.execute(
            "INSERT INTO rehearsals (id, site, started_ms, finished_ms, technician, checklist, figures, rows, verdict)
             VALUES (?1, '05443', ?2, ?2, 'An', '{}', '{}', '[]', ?3)",
            rusqlite::params![id, started_ms, verdict],
        )
        .unwrap();
    }

    let text = app.get_csv("/api/sites.csv", app.key("operator")).await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("Mã,Điểm cầu,Huyện cũ,Trạng thái"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("05443,Phường Phan Đình Phùng,TP Thái Nguyên,Trực tuyến,"),
        "{text}"
    );
    assert!(
        lines[1].ends_with(",Chị Lan,0912 345 678,Đạt"),
        "the latest verdict: {text}"
    );
    assert!(
        lines[2].starts_with("05710,Phường Linh Sơn,TP Thái Nguyên,Chưa kết nối,,,"),
        "{text}"
    );
    assert!(lines[2].ends_with(",,,Chưa kiểm tra"), "{text}");

    for key in ["display", SITE] {
        let (status, _) = app.get("/api/sites.csv", Some(app.key(key))).await;
        assert_eq!(status, 403, "{key}");
    }
}

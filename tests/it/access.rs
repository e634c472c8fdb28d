//! Every route × every kind of caller: the status the server gives, in one table.

use crate::helpers::*;

/// Columns of the table, in this order.
const CALLERS: [&str; 8] = [
    "admin",
    "operator",
    "secretary",
    "display",
    "site",
    "other_site",
    "none",
    "wrong",
];

/// (method, path, expected status per caller). A 409/400 means the role passed and
/// the request itself was refused; the table is about who gets past the door.
const MATRIX: &[(&str, &str, [u16; 8])] = &[
    ("GET", "/healthz", [200, 200, 200, 200, 200, 200, 200, 200]),
    ("GET", "/metrics", [200, 200, 200, 200, 200, 200, 200, 200]),
    (
        "GET",
        "/api/status",
        [200, 200, 200, 403, 403, 403, 401, 401],
    ),
    (
        "GET",
        "/api/sites",
        [200, 200, 200, 403, 403, 403, 401, 401],
    ),
    (
        "GET",
        "/api/sites.csv",
        [200, 200, 200, 403, 403, 403, 401, 401],
    ),
    (
        "GET",
        "/api/sites/05443",
        [200, 200, 200, 403, 200, 403, 401, 401],
    ),
    (
        "GET",
        "/api/timer",
        [200, 200, 200, 200, 200, 200, 401, 401],
    ),
    (
        "GET",
        "/api/agenda",
        [200, 200, 200, 200, 200, 200, 401, 401],
    ),
    (
        "GET",
        "/api/agenda.csv",
        [200, 200, 200, 200, 200, 200, 401, 401],
    ),
    (
        "POST",
        "/api/timer/pause",
        [409, 403, 409, 403, 403, 403, 401, 401],
    ),
    (
        "GET",
        "/api/rehearsals",
        [200, 200, 200, 403, 200, 200, 401, 401],
    ),
    (
        "GET",
        "/api/rehearsals.csv",
        [200, 200, 200, 403, 403, 403, 401, 401],
    ),
    (
        "POST",
        "/api/rehearsals/schedule",
        [400, 400, 403, 403, 403, 403, 401, 401],
    ),
    (
        "GET",
        "/api/rollcall",
        [200, 200, 200, 403, 403, 403, 401, 401],
    ),
    (
        "POST",
        "/api/rollcall",
        [200, 200, 403, 403, 403, 403, 401, 401],
    ),
    (
        "GET",
        "/api/messages",
        [200, 200, 200, 403, 403, 403, 401, 401],
    ),
    (
        "POST",
        "/api/messages",
        [200, 200, 200, 403, 403, 403, 401, 401],
    ),
    (
        "GET",
        "/api/report",
        [200, 200, 200, 403, 200, 200, 401, 401],
    ),
    (
        "GET",
        "/api/report.csv",
        [200, 200, 200, 403, 200, 200, 401, 401],
    ),
    (
        "GET",
        "/api/whoami",
        [200, 200, 200, 200, 200, 200, 401, 401],
    ),
    ("PAGE", "/", [200, 200, 200, 200, 200, 200, 200, 401]),
    ("PAGE", "/wall", [200, 200, 200, 403, 403, 403, 401, 401]),
    ("PAGE", "/console", [200, 403, 200, 403, 403, 403, 401, 401]),
    ("PAGE", "/display", [200, 200, 200, 200, 403, 403, 401, 401]),
    ("PAGE", "/bridge", [403, 403, 403, 403, 200, 200, 401, 401]),
    (
        "PAGE",
        "/rehearsals",
        [200, 200, 200, 403, 403, 403, 401, 401],
    ),
    ("PAGE", "/report", [200, 200, 200, 403, 403, 403, 401, 401]),
];

#[tokio::test]
async fn every_route_answers_each_caller_as_the_design_says() {
    let app = spawn_app(fast).await;
    let key_of = |caller: &str| -> Option<String> {
        match caller {
            "site" => Some(app.key(SITE).to_string()),
            "other_site" => Some(app.key(OTHER_SITE).to_string()),
            "none" => None,
            "wrong" => Some("0123456789abcdef0123456789abcdef".to_string()),
            role => Some(app.key(role).to_string()),
        }
    };
    let mut wrong = Vec::new();
    for (method, path, expected) in MATRIX {
        for (caller, want) in CALLERS.iter().zip(expected) {
            let key = key_of(caller);
            // Pages take the key in the link; the API in the Authorization header.
            let request = match *method {
                "PAGE" => {
                    let url = match &key {
                        Some(key) => app.url(&format!("{path}?key={key}")),
                        None => app.url(path),
                    };
                    app.http.get(url)
                }
                "POST" => {
                    let body = if path.ends_with("messages") {
                        r#"{"text": "kiểm tra quyền"}"#
                    } else {
                        "{}"
                    };
                    let request = app
                        .http
                        .post(app.url(path))
                        .header("content-type", "application/json")
                        .body(body);
                    match &key {
                        Some(key) => request.bearer_auth(key),
                        None => request,
                    }
                }
                _ => {
                    let request = app.http.get(app.url(path));
                    match &key {
                        Some(key) => request.bearer_auth(key),
                        None => request,
                    }
                }
            };
            let status = request.send().await.unwrap().status().as_u16();
            if status != *want {
                wrong.push(format!(
                    "{method} {path} as {caller}: {status}, expected {want}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

//! The pages people use on the day, served by the binary itself: HTML, CSS and
//! JavaScript modules embedded at build time (read from `assets/` in debug builds),
//! nothing loaded from the internet.
//!
//! A page opened with `?key=` is served to that key's holder and given a session
//! cookie; the page's script then drops the key from the address bar. A missing or
//! wrong key gets a page that says so and shows no data.

use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::auth::{Caller, Role};
use crate::http::access::{KeyInLink, identify, url_key};
use crate::http::error::ApiError;
use crate::state::AppState;

#[derive(rust_embed::RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// Pages only ever talk to this server.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; media-src 'self' data:; object-src 'none'; base-uri 'none'; \
                   frame-ancestors 'none'";

/// The pages, who may open them, and their file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    Landing,
    Wall,
    Console,
    Display,
    Bridge,
    Rehearsals,
    Report,
}

impl Page {
    const ALL: [Page; 7] = [
        Page::Landing,
        Page::Wall,
        Page::Console,
        Page::Display,
        Page::Bridge,
        Page::Rehearsals,
        Page::Report,
    ];

    fn path(&self) -> &'static str {
        match self {
            Page::Landing => "/",
            Page::Wall => "/wall",
            Page::Console => "/console",
            Page::Display => "/display",
            Page::Bridge => "/bridge",
            Page::Rehearsals => "/rehearsals",
            Page::Report => "/report",
        }
    }

    fn file(&self) -> &'static str {
        match self {
            Page::Landing => "index.html",
            Page::Wall => "wall.html",
            Page::Console => "console.html",
            Page::Display => "display.html",
            Page::Bridge => "bridge.html",
            Page::Rehearsals => "rehearsals.html",
            Page::Report => "report.html",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Page::Landing => "Trang chủ",
            Page::Wall => "Tường điểm cầu",
            Page::Console => "Bàn điều khiển thư ký",
            Page::Display => "Màn hình hội trường",
            Page::Bridge => "Điểm cầu",
            Page::Rehearsals => "Kết quả kiểm tra kết nối",
            Page::Report => "Báo cáo minh chứng",
        }
    }

    pub fn allows(&self, caller: Caller) -> bool {
        match self {
            Page::Landing => true,
            Page::Wall => caller.is_any_of(&[Role::Admin, Role::Operator, Role::Secretary]),
            Page::Console => caller.is_any_of(&[Role::Admin, Role::Secretary]),
            Page::Display => {
                caller.is_any_of(&[Role::Admin, Role::Operator, Role::Secretary, Role::Display])
            }
            Page::Bridge => matches!(caller, Caller::Site(_)),
            Page::Rehearsals | Page::Report => {
                caller.is_any_of(&[Role::Admin, Role::Operator, Role::Secretary])
            }
        }
    }
}

pub fn router() -> Router<AppState> {
    let mut router = Router::new()
        .route("/assets/{*path}", get(asset))
        .route("/api/whoami", get(whoami));
    for page in Page::ALL {
        router = router.route(
            page.path(),
            get(move |state, request| serve_page(state, request, page)),
        );
    }
    router
}

async fn serve_page(State(app): State<AppState>, request: Request, page: Page) -> Response {
    let (parts, _) = request.into_parts();
    let traded_key = parts.uri.query().and_then(url_key).is_some();
    let caller = match identify(&parts, &app, KeyInLink::Accepted) {
        Err(_) => {
            return message_page(
                StatusCode::UNAUTHORIZED,
                "Khoá truy cập không hợp lệ",
                "Liên kết này có khoá không đúng hoặc đã bị thay. Hãy xin ban tổ chức liên kết mới. \
                 (The key in this link is not valid: ask the organisers for a new link.)",
            );
        }
        Ok(None) if page == Page::Landing => {
            return with_security_headers(landing_without_key().into_response());
        }
        Ok(None) => {
            return message_page(
                StatusCode::UNAUTHORIZED,
                "Thiếu khoá truy cập",
                "Hãy mở trang bằng liên kết có khoá (…?key=…) mà ban tổ chức đã gửi. \
                 (Open this page with the link, including its key, that the organisers sent.)",
            );
        }
        Ok(Some(caller)) => caller,
    };
    if !page.allows(caller) {
        return message_page(
            StatusCode::FORBIDDEN,
            "Khoá này không mở được trang này",
            &format!(
                "Trang “{}” cần khoá khác. Về trang chủ để xem các trang khoá này mở được. \
                 (This key does not open this page.)",
                page.title()
            ),
        );
    }
    let Some(file) = Assets::get(page.file()) else {
        return ApiError::Internal(format!("page {} is missing from the build", page.file()))
            .into_response();
    };
    let mut response = (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        file.data,
    )
        .into_response();
    if traded_key {
        let cookie = app.sessions.start(caller, app.clock.now_ms());
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
    }
    with_security_headers(response)
}

fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    // The address may still hold a key when the page loads: never send it onwards.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A page that only says something (no key, wrong key, wrong page).
fn message_page(status: StatusCode, title: &str, text: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"vi\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} — diemcau</title><link rel=\"stylesheet\" href=\"/assets/common.css\"></head>\
         <body class=\"message\"><main><h1 id=\"message-title\">{title}</h1><p id=\"message-text\">{text}</p></main></body></html>",
        title = escape(title),
        text = escape(text),
    );
    with_security_headers(
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
    )
}

fn landing_without_key() -> impl IntoResponse {
    let html = "<!doctype html><html lang=\"vi\"><head><meta charset=\"utf-8\">\
        <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
        <title>diemcau — điểm cầu</title><link rel=\"stylesheet\" href=\"/assets/common.css\"></head>\
        <body class=\"message\"><main><h1 id=\"message-title\">diemcau — điểm cầu hội nghị</h1>\
        <p id=\"message-text\">Hãy mở trang bằng liên kết có khoá (…?key=…) mà ban tổ chức đã gửi: \
        kỹ thuật viên tỉnh mở tường điểm cầu, thư ký mở bàn điều khiển, mỗi xã mở trang điểm cầu của mình. \
        (Open the link with its key that the organisers sent.)</p></main></body></html>";
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn asset(Path(path): Path<String>) -> Response {
    // Embedded names never climb out of the folder; refuse anything that tries.
    if path.split('/').any(|part| part == ".." || part.is_empty()) || path.contains('\\') {
        return ApiError::NotFound("no such asset".into()).into_response();
    }
    match Assets::get(&path) {
        Some(file) => {
            let mime = file.metadata.mimetype().to_string();
            (
                [
                    (header::CONTENT_TYPE, mime),
                    (header::CACHE_CONTROL, "no-cache".to_string()),
                ],
                file.data,
            )
                .into_response()
        }
        None => ApiError::NotFound("no such asset".into()).into_response(),
    }
}

/// The spreadsheet downloads: path, title, and whether a key may fetch it (the routes
/// check again).
const DOWNLOADS: [(&str, &str, bool); 4] = [
    (
        "/api/sites.csv",
        "Danh sách gọi các điểm cầu: trạng thái, liên hệ",
        true,
    ),
    ("/api/agenda.csv", "Thời gian từng phần tham luận", false),
    ("/api/rehearsals.csv", "Kết quả kiểm tra kết nối", true),
    ("/api/report.csv", "Báo cáo minh chứng", true),
];

/// Who the page's key belongs to, and which pages and downloads it opens.
async fn whoami(State(app): State<AppState>, caller: Caller) -> Json<serde_json::Value> {
    let site = match caller {
        Caller::Site(id) => app.roster.index_of(id).map(|i| json!(app.roster.site(i))),
        Caller::Role(_) => None,
    };
    let pages: Vec<_> = Page::ALL
        .iter()
        .filter(|p| **p != Page::Landing && p.allows(caller))
        .map(|p| json!({"path": p.path(), "title": p.title()}))
        .collect();
    let staff = caller.is_any_of(&[Role::Admin, Role::Operator, Role::Secretary]);
    let downloads: Vec<_> = DOWNLOADS
        .iter()
        .filter(|(_, _, staff_only)| staff || !staff_only)
        .map(|(path, title, _)| json!({"path": path, "title": title}))
        .collect();
    let role = match caller {
        Caller::Role(role) => role.as_str(),
        Caller::Site(_) => "site",
    };
    Json(json!({
        "role": role, "site": site, "pages": pages, "downloads": downloads,
        "server_ms": app.clock.now_ms(),
    }))
}

//! The pages in a real headless Chromium (Debian's `chromium` + `chromium-driver`),
//! driven over WebDriver. Screenshots of each page land in `target/screenshots/`.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client as WebDriver, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver process and one headless Chromium session with a fresh profile.
struct Browser {
    web: Option<WebDriver>,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        Browser::start_with(&[]).await
    }

    /// With more Chromium flags (fake camera and microphone, say).
    async fn start_with(extra: &[&str]) -> Browser {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(binary).exists(),
                "{binary} is missing: the browser tests need Debian's chromium and chromium-driver \
                 (run scripts/test, which installs them, or `apt-get install chromium chromium-driver`)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Its own process group: dropping the browser ends chromedriver and every
        // Chromium process it started, even when a test fails half-way.
        let driver = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--window-size=1920,1080".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ]
        .into_iter()
        .chain(extra.iter().map(|flag| flag.to_string()))
        .collect::<Vec<String>>();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"binary": CHROMIUM, "args": args}),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let web = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(web) => break web,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot start headless Chromium through chromedriver: {e}"),
            }
        };
        // The window's frame takes some of --window-size: make the page itself 1920×1080.
        let frame = web
            .execute("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];", vec![])
            .await
            .unwrap();
        let extra = |i: usize| frame[i].as_u64().unwrap_or(0) as u32;
        web.set_window_size(1920 + extra(0), 1080 + extra(1))
            .await
            .unwrap();
        Browser {
            web: Some(web),
            driver,
            _profile: profile,
        }
    }

    fn web(&self) -> &WebDriver {
        self.web.as_ref().unwrap()
    }

    async fn open(&self, app: &TestApp, path: &str) {
        self.web().goto(&app.url(path)).await.expect("page opens");
    }

    /// Opens `page` with the link of `holder` (a role or a site code), as staff do.
    async fn open_as(&self, app: &TestApp, page: &str, holder: &str) {
        self.open(app, &format!("{page}?key={}", app.key(holder)))
            .await;
    }

    /// Text of the first element matching `css`, once it exists. Read in one script, so a
    /// page that redraws between two WebDriver calls cannot hand back a stale element.
    async fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.script("const e = document.querySelector(arguments[0]); return e ? e.innerText : null;", css).await;
            if let Some(text) = value.as_str() {
                return text.to_string();
            }
            assert!(Instant::now() < deadline, "no {css} on the page");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The texts of every element matching `css`.
    async fn texts(&self, css: &str) -> Vec<String> {
        let value = self
            .script(
                "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText);",
                css,
            )
            .await;
        serde_json::from_value(value).unwrap()
    }

    async fn click(&self, css: &str) {
        self.script(
            "document.querySelector(arguments[0]).click(); return null;",
            css,
        )
        .await;
    }

    async fn script(&self, js: &str, css: &str) -> serde_json::Value {
        self.web()
            .execute(js, vec![json!(css)])
            .await
            .expect("script runs")
    }

    /// Fetches what the link `css` downloads, with the page's own session.
    async fn download(&self, css: &str) -> String {
        let text = self
            .script(
                "return fetch(document.querySelector(arguments[0]).href).then(r => r.text());",
                css,
            )
            .await;
        text.as_str().expect("the link answers text").to_string()
    }

    /// Waits until the text of `css` satisfies `ok`; returns it.
    async fn text_until(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.text(css).await;
            if ok(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never matched; last text: {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Makes the page's viewport (not the window, which has a frame) `width`×`height`.
    /// A resize lands a moment later: read the viewport until it settles, then size the
    /// window by the frame measured (window minus viewport).
    async fn viewport(&self, width: u32, height: u32) {
        let (mut w, mut h) = (width, height);
        for _ in 0..6 {
            self.web()
                .set_window_size(w, h)
                .await
                .expect("window resizes");
            let mut inner = (0, 0);
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let read = self.script("return [innerWidth, innerHeight];", "").await;
                let now = (read[0].as_i64().unwrap(), read[1].as_i64().unwrap());
                if now == inner {
                    break;
                }
                inner = now;
            }
            if inner == (width as i64, height as i64) {
                return;
            }
            let (frame_w, frame_h) = (w as i64 - inner.0, h as i64 - inner.1);
            (w, h) = (
                (width as i64 + frame_w) as u32,
                (height as i64 + frame_h) as u32,
            );
        }
        panic!("the viewport cannot be made {width}×{height}");
    }

    async fn screenshot(&self, name: &str) {
        let png = self.web().screenshot().await.expect("screenshot");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Ends the session: the browser closes its sockets as a closed tab would.
    async fn close(mut self) {
        if let Some(web) = self.web.take() {
            web.close().await.expect("browser closes");
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}

#[tokio::test]
async fn the_bridge_page_is_the_bridge_online_within_3s_and_offline_when_closed() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(|_| {}).await;
    let browser = Browser::start().await;
    let opened = Instant::now();
    browser.open_as(&app, "/bridge", SITE).await;
    app.wait_for_state(SITE, "online", Duration::from_secs(3))
        .await;
    let took = opened.elapsed();
    eprintln!("bridge page: site online {took:?} after the page was opened");
    assert!(took < Duration::from_secs(3), "{took:?}");
    let site = app.site(SITE).await;
    assert_eq!(site["agent"], "browser");

    let state = browser
        .text_until("#link-state", |t| t.contains("Đã kết nối"))
        .await;
    assert!(state.contains("hội trường tỉnh"));
    assert!(
        browser
            .text("#site-name")
            .await
            .contains("Phường Phan Đình Phùng")
    );
    let url = browser.web().current_url().await.unwrap();
    assert!(
        !url.as_str().contains("key="),
        "the key left the address bar: {url}"
    );
    // No slot yet: the dashes stay dim, not huge white bars that look like a fault.
    let idle = seen(&browser, "#countdown").await;
    assert_eq!(idle["text"], "--:--");
    assert_eq!(idle["color"], "rgb(42, 56, 72)", "{idle}");
    browser.screenshot("bridge").await;

    browser.close().await;
    app.wait_for_state(SITE, "offline", WAIT).await;
}

#[tokio::test]
async fn the_wall_shows_92_tiles_the_connected_site_and_finds_communes_without_diacritics() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(fast).await;
    let _bridge = EchoingBridge::join(&app, SITE).await;
    app.wait_for_state(SITE, "online", WAIT).await;
    let browser = Browser::start().await;
    browser.open_as(&app, "/wall", "operator").await;

    let tile = format!(".tile[data-site=\"{SITE}\"]");
    let text = browser
        .text_until(&tile, |t| t.contains("Trực tuyến"))
        .await;
    assert!(text.contains("Phường Phan Đình Phùng"), "{text}");
    assert_eq!(browser.texts(".tile").await.len(), 92);
    assert!(browser.text("#count-online").await.ends_with('1'));
    browser.screenshot("wall").await;
    let below_the_fold = browser
        .script(
            "return [...document.querySelectorAll(arguments[0])]
                .filter(t => t.getBoundingClientRect().bottom > window.innerHeight)
                .map(t => t.dataset.site);",
            ".tile",
        )
        .await;
    assert_eq!(
        below_the_fold,
        json!([]),
        "all 92 tiles fit one 1920×1080 wall screen, without scrolling"
    );
    // The call list downloads with the page's own session (no key in the link).
    let call_list = browser.download("#call-list").await;
    assert_eq!(call_list.lines().count(), 93, "{call_list}");
    assert!(
        call_list.contains(&format!("{SITE},Phường Phan Đình Phùng,"))
            && call_list.contains("Trực tuyến"),
        "{call_list}"
    );

    browser
        .web()
        .find(Locator::Css("#search"))
        .await
        .unwrap()
        .send_keys("ngan son")
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let names = browser.texts(".tile .name").await;
        if names == ["Xã Ngân Sơn"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "search for `ngan son` shows {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    browser.click(".tile").await;
    browser
        .text_until("#detail", |t| t.contains("Lịch sử trạng thái"))
        .await;
}

#[tokio::test]
async fn the_hall_display_and_a_bridge_show_the_same_second_of_the_countdown() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(|_| {}).await;
    let display = Browser::start().await;
    let bridge = Browser::start().await;
    display.open_as(&app, "/display", "display").await;
    bridge.open_as(&app, "/bridge", SITE).await;
    app.wait_for_state(SITE, "online", WAIT).await;
    display
        .text_until("#unit", |t| t.contains("Hội nghị"))
        .await;

    app.start_slot(4).await;
    display
        .text_until("#unit", |t| t == "Sở Khoa học và Công nghệ")
        .await;
    bridge
        .text_until("#speaker", |t| t.contains("Sở Khoa học và Công nghệ"))
        .await;
    // Both pages redraw within 100 ms of the timer frame.
    display.text_until("#countdown", |t| t != "--:--").await;
    bridge.text_until("#countdown", |t| t != "--:--").await;
    let mut compared = 0;
    for _ in 0..40 {
        let started = now_ms();
        let before = display.text("#countdown").await;
        let on_bridge = bridge.text("#countdown").await;
        let after = display.text("#countdown").await;
        // Near a whole second the pages may each be either side of it (clock estimates,
        // a timer late on a machine busy with other tests): compare only reads made well
        // inside one second. How sharply each page turns is measured below.
        let (first, last) = (started - 150, now_ms() + 150);
        if before != after || first.div_euclid(1000) != last.div_euclid(1000) {
            continue;
        }
        assert!(before.starts_with("6:5") || before == "7:00", "{before}");
        assert_eq!(on_bridge, before, "hall and bridge show different seconds");
        compared += 1;
        if compared == 3 {
            break;
        }
    }
    assert_eq!(compared, 3, "could not read both pages within one second");

    // Each page turns its digits just after the whole second (server time, here the same
    // clock as the pages'), not up to a redraw interval later: the hall and every bridge
    // change second together. The earliest of a few turns counts (a busy machine may make
    // one timer late; a page on a 100 ms redraw is late on every turn alike).
    const WATCH_TURNS: &str = "const shown = document.querySelector(arguments[0]);
        let last = shown.textContent;
        window.turnsAtMs = [];
        new MutationObserver(() => {
          if (shown.textContent !== last) {
            last = shown.textContent;
            window.turnsAtMs.push(Date.now() % 1000);
          }
        }).observe(shown, { childList: true, characterData: true, subtree: true });
        return true;";
    display.script(WATCH_TURNS, "#countdown").await;
    bridge.script(WATCH_TURNS, "#countdown").await;
    tokio::time::sleep(Duration::from_millis(3300)).await;
    for (page, browser) in [("hall", &display), ("bridge", &bridge)] {
        let turns = browser.script("return window.turnsAtMs;", "").await;
        let after_the_second: Vec<i64> = turns
            .as_array()
            .unwrap()
            .iter()
            .map(|ms| ms.as_i64().unwrap())
            .map(|ms| if ms > 900 { ms - 1000 } else { ms }) // a hair early
            .collect();
        assert!(after_the_second.len() >= 3, "{page}: {turns}");
        let earliest = after_the_second.iter().map(|ms| ms.abs()).min().unwrap();
        assert!(
            earliest <= 25,
            "{page} turns its digits {after_the_second:?} ms after the whole second"
        );
    }
    display.screenshot("display").await;
    bridge.screenshot("bridge-countdown").await;
}

#[tokio::test]
async fn on_the_console_space_starts_the_selected_slot() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(|_| {}).await;
    let selected = app
        .http
        .post(app.url("/api/timer/select"))
        .bearer_auth(app.key("secretary"))
        .json(&json!({"slot": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(selected.status(), 200);
    let browser = Browser::start().await;
    browser.open_as(&app, "/console", "secretary").await;
    browser
        .text_until("#slot-title", |t| t.contains("Phần 2: Sở Công thương"))
        .await;
    browser
        .text_until("#agenda", |t| t.contains("Sở Công thương"))
        .await;

    browser
        .web()
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys(" ")
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, timer) = app.get("/api/timer", Some(app.key("secretary"))).await;
        if timer["state"] == "running" {
            assert_eq!(timer["slot"]["order"], 2);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Space did not start the slot: {timer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser
        .text_until("#slot-state", |t| t == "Đang trình bày")
        .await;
    browser.screenshot("console").await;
    let times = browser.download("#agenda-csv").await;
    assert_eq!(times.lines().count(), 27, "{times}");
    assert!(
        times
            .lines()
            .nth(2)
            .unwrap()
            .contains(",đang trình bày,7:00,"),
        "{times}"
    );
}

#[tokio::test]
async fn a_page_without_a_key_or_with_a_wrong_one_says_so_and_shows_no_data() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(|_| {}).await;
    let browser = Browser::start().await;

    browser.open(&app, "/wall").await;
    assert_eq!(browser.text("#message-title").await, "Thiếu khoá truy cập");
    assert!(browser.texts(".tile").await.is_empty());
    browser.screenshot("no-key").await;

    browser.open(&app, "/display?key=0123456789abcdef").await;
    assert_eq!(
        browser.text("#message-title").await,
        "Khoá truy cập không hợp lệ"
    );
    browser.open_as(&app, "/console", "operator").await;
    assert_eq!(
        browser.text("#message-title").await,
        "Khoá này không mở được trang này"
    );
    let page = browser.web().source().await.unwrap();
    assert!(
        !page.contains("Sở Công thương"),
        "no agenda data on a refused page"
    );

    browser.open(&app, "/").await;
    assert!(
        browser
            .text("#message-text")
            .await
            .contains("liên kết có khoá")
    );
    browser.open_as(&app, "/", "admin").await;
    let links = browser
        .text_until("#pages", |t| t.contains("Bàn điều khiển thư ký"))
        .await;
    assert!(
        links.contains("Tường điểm cầu") && links.contains("Màn hình hội trường"),
        "{links}"
    );
    let downloads = browser
        .text_until("#downloads", |t| t.contains("Danh sách gọi"))
        .await;
    assert!(downloads.contains("Báo cáo minh chứng"), "{downloads}");
    // Every listed download answers this page's session with a spreadsheet.
    let answers = browser
        .script(
            "return Promise.all([...document.querySelectorAll(arguments[0])].map(a =>
                fetch(a.href).then(r => [r.status, r.headers.get('content-type')])));",
            "#downloads a",
        )
        .await;
    assert_eq!(
        answers,
        json!(vec![json!([200, "text/csv; charset=utf-8"]); 4]),
        "{downloads}"
    );
    browser.screenshot("landing").await;
}

#[tokio::test]
async fn a_commune_runs_the_rehearsal_check_from_its_bridge_page() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(short_check).await;
    let browser = Browser::start().await;
    browser.open_as(&app, "/bridge", SITE).await;
    browser
        .text_until("#link-state", |t| t.contains("Đã kết nối"))
        .await;

    browser
        .web()
        .find(Locator::Css("#technician"))
        .await
        .unwrap()
        .send_keys("Trần Thị Bình")
        .await
        .unwrap();
    browser.click("#checklist input[name=man_hinh]").await;
    browser.click("#check-start").await;
    let verdict = browser
        .text_until("#check-status", |t| t.starts_with("Kết quả"))
        .await;
    // The verdict depends on the machine's load; the rates on loopback do not.
    let table = browser.text("#check-result").await;
    assert!(
        ["Đạt", "Cần lưu ý", "Không đạt"]
            .iter()
            .any(|v| verdict.contains(v)),
        "{verdict}"
    );
    assert!(
        table.contains("Tải lên") && table.contains("Mbps"),
        "{table}"
    );
    browser.screenshot("bridge-rehearsal").await;

    let (_, own) = app.get("/api/rehearsals", Some(app.key(SITE))).await;
    let attempt = &own["attempts"][0];
    assert_eq!(attempt["technician"], "Trần Thị Bình");
    let shown = [
        ("pass", "Đạt"),
        ("warn", "Cần lưu ý"),
        ("fail", "Không đạt"),
    ]
    .iter()
    .find(|(_, label)| verdict.ends_with(label))
    .map(|(code, _)| *code);
    assert_eq!(
        attempt["verdict"].as_str(),
        shown,
        "the page shows the stored verdict"
    );
    assert_eq!(attempt["checklist"]["man_hinh"], true);
    assert!(
        attempt["figures"]["devices"].is_null(),
        "no device check was run: no device rows"
    );
    assert!(
        attempt["figures"]["upload_mbps"].as_f64().unwrap() >= 4.0,
        "{attempt}"
    );
}

#[tokio::test]
async fn the_rehearsal_board_shows_each_sites_latest_verdict_and_filters() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(short_check).await;
    let browser = Browser::start().await;
    browser.open_as(&app, "/rehearsals", "operator").await;
    browser
        .text_until("#count-not_checked", |t| t.ends_with("92"))
        .await;

    let output = site_agent(&app, &app.url(""))
        .args(["--rehearse", "--technician", "Lê Văn Cường"])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );

    // The board updates itself from the live feed.
    browser
        .text_until("#count-pass", |t| t.ends_with('1'))
        .await;
    let row = browser
        .text(&format!("#board tr[data-site=\"{SITE}\"]"))
        .await;
    assert!(row.contains("Đạt") && row.contains("Lê Văn Cường"), "{row}");
    browser.script("const s = document.querySelector(arguments[0]); s.value = 'pass'; s.dispatchEvent(new Event('change')); return null;", "#verdict").await;
    assert_eq!(browser.texts("#board tr").await.len(), 1);
    browser
        .click(&format!("#board tr[data-site=\"{SITE}\"]"))
        .await;
    browser
        .text_until("#history", |t| t.contains("Tải xuống"))
        .await;
    browser.screenshot("rehearsals").await;
}

#[tokio::test]
async fn a_roll_call_from_the_wall_is_confirmed_on_a_bridge_page_and_counted_live() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(|_| {}).await;
    let wall = Browser::start().await;
    let bridge = Browser::start().await;
    wall.open_as(&app, "/wall", "operator").await;
    bridge.open_as(&app, "/bridge", SITE).await;
    wall.text_until("#roll-call-count", |t| t == "Chưa điểm danh")
        .await;
    app.wait_for_state(SITE, "online", WAIT).await;

    wall.click("#roll-call-start").await;
    bridge
        .text_until("#roll-call", |t| t.contains("Xác nhận có mặt"))
        .await;
    wall.text_until("#roll-call-count", |t| t.ends_with("0/92 đã xác nhận"))
        .await;
    bridge.screenshot("bridge-roll-call").await;
    bridge.click("#roll-call-confirm").await;
    bridge
        .text_until("#roll-call", |t| t.contains("Đã xác nhận có mặt"))
        .await;
    wall.text_until("#roll-call-count", |t| t.ends_with("1/92 đã xác nhận"))
        .await;

    // A message to everyone shows on the bridge until it is acknowledged.
    wall.script("document.querySelector(arguments[0]).value = 'Chuẩn bị phát biểu sau 5 phút'; return null;", "#message-text").await;
    wall.script(
        "document.querySelector(arguments[0]).requestSubmit(); return null;",
        "#message-form",
    )
    .await;
    wall.text_until("#message-status", |t| t.contains("Đã gửi tới 92 điểm cầu"))
        .await;
    bridge
        .text_until("#messages", |t| t.contains("Chuẩn bị phát biểu sau 5 phút"))
        .await;
    wall.text_until("#sent", |t| t.contains("92/92 chưa xác nhận"))
        .await;
    bridge.click("#messages .message button").await;
    bridge.text_until("#messages", |t| t.is_empty()).await;
    wall.text_until("#sent", |t| t.contains("91/92 chưa xác nhận"))
        .await;
    let (_, all) = app.get("/api/messages", Some(app.key("operator"))).await;
    let message = all["notices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "message")
        .unwrap()
        .clone();
    assert_eq!(message["confirmed"][0]["site"], SITE);
    wall.screenshot("wall-roll-call").await;
}

#[tokio::test]
async fn the_report_page_lists_every_site_and_presentation_for_printing() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(|_| {}).await;
    // Slot 2 ran once and was reset: the report shows both attempts.
    for (name, body) in [
        ("start", json!({"slot": 2})),
        ("stop", json!({})),
        ("reset", json!({"slot": 2})),
    ] {
        let (status, _) = app
            .post(
                &format!("/api/timer/{name}"),
                Some(app.key("secretary")),
                body,
            )
            .await;
        assert_eq!(status, 200, "{name}");
    }
    let browser = Browser::start().await;
    browser.open_as(&app, "/report", "operator").await;
    browser
        .text_until("#total-slots", |t| t.contains("0/26"))
        .await;
    assert_eq!(browser.texts("#sites tr").await.len(), 92);
    let rows = browser.texts("#presentations tr").await;
    assert_eq!(rows.len(), 27, "26 slots and one earlier attempt");
    assert!(
        rows[1].contains("Sở Công thương — lượt 1, đặt lại lúc"),
        "{}",
        rows[1]
    );
    assert!(rows[2].contains("Sở Công thương — lượt 2"), "{}", rows[2]);
    browser.screenshot("report").await;

    // An end before the start is refused on the page, in Vietnamese, and nothing is lost.
    ask_for_window(&browser, "2026-01-01T11:30", "2026-01-01T08:00").await;
    browser
        .text_until("#window-error", |t| t.contains("phải sau"))
        .await;
    assert_eq!(browser.texts("#sites tr").await.len(), 92);

    // The organisers pick the conference morning; the page and its CSV cover it.
    ask_for_window(&browser, "2026-01-01T08:00", "2026-01-01T11:30").await;
    browser
        .text_until("#window", |t| {
            t.starts_with("Từ 08:00 01/01/2026 đến 11:30 01/01/2026")
        })
        .await;
    let csv = browser.download("#csv").await;
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .contains("từ 01/01/2026 08:00:00 đến 01/01/2026 11:30:00"),
        "the CSV covers the window on the page: {csv}"
    );
}

/// Fills the report page's "Từ … đến …" (datetime-local values) and submits it.
async fn ask_for_window(browser: &Browser, from: &str, to: &str) {
    browser
        .web()
        .execute(
            "document.querySelector('#from').value = arguments[0];
             document.querySelector('#to').value = arguments[1];
             document.querySelector('#window-form').requestSubmit(); return null;",
            vec![json!(from), json!(to)],
        )
        .await
        .expect("script runs");
}

#[tokio::test]
async fn the_operator_sets_the_rehearsal_schedule_from_the_board() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(|_| {}).await;
    let browser = Browser::start().await;
    browser.open_as(&app, "/rehearsals", "operator").await;
    browser
        .text_until("#count-not_checked", |t| t.ends_with("92"))
        .await;
    browser.script("document.querySelector('details.schedule').open = true; document.querySelector(arguments[0]).value = '2030-01-07, 2030-01-08'; return null;", "#schedule-days").await;
    browser
        .script(
            "document.querySelector(arguments[0]).requestSubmit(); return null;",
            "#schedule-form",
        )
        .await;
    browser
        .text_until("#schedule-status", |t| {
            t.contains("Đã lập lịch cho 92 điểm cầu")
        })
        .await;
    let row = browser
        .text_until(&format!("#board tr[data-site=\"{SITE}\"]"), |t| {
            t.contains("07/01/2030")
        })
        .await;
    assert!(row.contains("08:00"), "{row}");
    browser.screenshot("rehearsals-schedule").await;
}

/// A page of another origin (another port of the same host, which SameSite=Strict does
/// not stop) that tries to drive the timer and read the live feed with the cookie.
const FOREIGN_PAGE: &str = r#"<!doctype html><html><body><pre id="out">…</pre><script>
const target = new URLSearchParams(location.search).get("target");
const out = {};
const show = () => { document.getElementById("out").textContent = JSON.stringify(out); };
for (const command of ["next", "start", "pause"]) {
  fetch(`http://${target}/api/timer/${command}`, {method: "POST", mode: "no-cors", credentials: "include"})
    .then(() => { out[command] = "sent"; show(); }, () => { out[command] = "failed"; show(); });
}
const ws = new WebSocket(`ws://${target}/ws/live`);
ws.onmessage = (e) => { out.live = "read: " + e.data.slice(0, 40); show(); };
ws.onclose = () => { if (!out.live) { out.live = "refused"; show(); } };
</script></body></html>"#;

#[tokio::test]
async fn a_page_of_another_port_cannot_use_the_secretarys_cookie() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(fast).await;
    let foreign = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let foreign_addr = foreign.local_addr().unwrap();
    let page = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { axum::response::Html(FOREIGN_PAGE) }),
    );
    tokio::spawn(async move { axum::serve(foreign, page).await });

    let browser = Browser::start().await;
    browser.open_as(&app, "/console", "secretary").await;
    browser
        .text_until("#conn", |t| !t.contains("Đang kết nối"))
        .await;
    let (_, before) = app.get("/api/timer", Some(app.key("secretary"))).await;
    browser
        .web()
        .goto(&format!("http://{foreign_addr}/?target={}", app.addr))
        .await
        .unwrap();
    let out = browser
        .text_until("#out", |t| {
            ["next", "start", "pause", "live"]
                .iter()
                .all(|k| t.contains(&format!("\"{k}\"")))
        })
        .await;
    assert!(out.contains("\"live\":\"refused\""), "{out}");
    let (_, after) = app.get("/api/timer", Some(app.key("secretary"))).await;
    assert_eq!(
        (&after["state"], &after["slot"], &after["rev"]),
        (&before["state"], &before["slot"], &before["rev"]),
        "the foreign page changed nothing: {out}"
    );
    browser.close().await;
}

/// What a person sees of `css`: its text, colour, background, and whether its box is
/// inside the viewport and tall enough to read from the room.
async fn seen(browser: &Browser, css: &str) -> serde_json::Value {
    browser
        .script(
            "const e = document.querySelector(arguments[0]);
             if (!e) return null;
             const s = getComputedStyle(e), r = e.getBoundingClientRect();
             return {text: e.innerText, color: s.color, background: s.backgroundColor,
                     inside: r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth,
                     height: r.height, visible: s.visibility !== 'hidden' && s.display !== 'none'};",
            css,
        )
        .await
}

#[tokio::test]
async fn paused_and_done_are_unmistakable_on_the_display_console_and_wall_at_both_sizes() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(|_| {}).await;
    let browser = Browser::start().await;
    let console = Browser::start().await;
    let wall = Browser::start().await;
    browser.open_as(&app, "/display", "display").await;
    console.open_as(&app, "/console", "secretary").await;
    wall.open_as(&app, "/wall", "operator").await;
    app.start_slot(1).await;
    browser
        .text_until("#countdown", |t| t.contains(':') && t != "--:--")
        .await;
    let running = seen(&browser, "#countdown").await;
    assert_eq!(
        seen(&browser, "#timer-state").await["text"],
        "",
        "running: the digits say it"
    );
    wall.text_until("#timer-state", |t| t == "ĐANG CHẠY").await;

    let (status, _) = app
        .post(
            "/api/timer/pause",
            Some(app.key("secretary")),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200);
    for (width, height) in [(1920, 1080), (1366, 768)] {
        browser.web().set_window_size(width, height).await.unwrap();
        let label = browser
            .text_until("#timer-state", |t| t == "TẠM DỪNG")
            .await;
        assert_eq!(label, "TẠM DỪNG");
        let state = seen(&browser, "#timer-state").await;
        assert_eq!(
            state["background"], "rgb(214, 158, 46)",
            "{width}: amber: {state}"
        );
        assert!(
            state["inside"] == true && state["height"].as_f64().unwrap() >= 30.0,
            "{width}: {state}"
        );
        let paused = seen(&browser, "#countdown").await;
        assert_ne!(
            paused["color"], running["color"],
            "{width}: paused digits look running"
        );
        assert_eq!(
            paused["color"], "rgb(159, 176, 194)",
            "{width}: grey while paused"
        );
    }
    console
        .text_until("#timer-state", |t| t == "TẠM DỪNG")
        .await;
    wall.text_until("#timer-state", |t| t == "TẠM DỪNG").await;
    browser.screenshot("display-paused").await;

    let (status, _) = app
        .post(
            "/api/timer/stop",
            Some(app.key("secretary")),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200);
    browser.text_until("#timer-state", |t| t == "ĐÃ XONG").await;
    console.text_until("#timer-state", |t| t == "ĐÃ XONG").await;
    wall.text_until("#timer-state", |t| t == "ĐÃ XONG").await;
    let done = seen(&browser, "#countdown").await;
    assert_ne!(done["color"], running["color"]);
    for b in [browser, console, wall] {
        b.close().await;
    }
}

#[tokio::test]
async fn a_second_bridge_page_takes_over_and_the_first_says_so_and_waits_for_its_user() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(|_| {}).await;
    let first = Browser::start().await;
    let second = Browser::start().await;
    first.open_as(&app, "/bridge", SITE).await;
    first
        .text_until("#link-state", |t| t.contains("Đã kết nối"))
        .await;
    second.open_as(&app, "/bridge", SITE).await;
    second
        .text_until("#link-state", |t| t.contains("Đã kết nối"))
        .await;
    let told = first
        .text_until("#link-state", |t| t.contains("đang mở trên một máy khác"))
        .await;
    assert!(told.contains("ngừng kết nối"), "{told}");
    let button = seen(&first, "#take-over").await;
    assert_eq!(button["text"], "Dùng máy này");
    // Not the bridge now: no countdown, no "keep this open: you are present".
    for gone in [".speaker", ".help", ".check"] {
        assert_eq!(seen(&first, gone).await["visible"], false, "{gone}");
    }
    first.screenshot("bridge-opened-elsewhere").await;
    // They do not take turns: the old page does not try again by itself (well past
    // its first reconnect backoff, 0.5–1.5 s).
    let sessions_before = app.site(SITE).await["reconnects"].clone();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        app.site(SITE).await["reconnects"],
        sessions_before,
        "nobody reconnected"
    );
    assert!(second.text("#link-state").await.contains("Đã kết nối"));
    // The user asks for this machine: it takes the site back, and the other says so.
    first.click("#take-over").await;
    first
        .text_until("#link-state", |t| t.contains("Đã kết nối"))
        .await;
    second
        .text_until("#link-state", |t| t.contains("đang mở trên một máy khác"))
        .await;
    first.close().await;
    second.close().await;
}

#[tokio::test]
async fn the_walls_detail_says_why_a_site_changed_in_vietnamese() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(fast).await;
    // A site that says hello, then nothing: degraded after 300 ms of silence.
    let _silent = Client::join(&app, SITE).await;
    app.wait_for_state(SITE, "degraded", WAIT).await;
    let browser = Browser::start().await;
    browser.open_as(&app, "/wall", "operator").await;
    let tile = format!(".tile[data-site=\"{SITE}\"]");
    browser.text_until(&tile, |t| !t.is_empty()).await;
    browser.click(&tile).await;
    let detail = browser
        .text_until("#detail", |t| t.contains("Lịch sử trạng thái"))
        .await;
    assert!(
        detail.contains("không nhận được tín hiệu nào trong 0,3 giây")
            && detail.contains("đã kết nối"),
        "{detail}"
    );
    assert!(!detail.contains("no frame for"), "{detail}");
    browser.close().await;
}

/// The tab's title and whether the page calls for attention (its flash running).
async fn attention_of(browser: &Browser) -> serde_json::Value {
    browser
        .script(
            "return {title: document.title, attention: document.body.classList.contains('attention'),
                     animation: getComputedStyle(document.body).animationName};",
            "",
        )
        .await
}

#[tokio::test]
async fn a_commune_cannot_miss_a_roll_call_or_an_urgent_message() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(|_| {}).await;
    let bridge = Browser::start().await;
    bridge.open_as(&app, "/bridge", SITE).await;
    bridge
        .text_until("#link-state", |t| t.contains("Đã kết nối"))
        .await;
    let sound = seen(&bridge, "#sound").await;
    assert!(
        sound["text"].as_str().unwrap().contains("Bật âm thanh") && sound["inside"] == true,
        "{sound}"
    );
    bridge.click("#sound").await;
    assert!(bridge.text("#sound").await.contains("bật"));
    let calm = attention_of(&bridge).await;
    assert_eq!(
        (calm["attention"].as_bool(), calm["animation"].as_str()),
        (Some(false), Some("none"))
    );

    app.post(
        "/api/rollcall",
        Some(app.key("operator")),
        serde_json::json!({"deadline_seconds": 120}),
    )
    .await;
    bridge
        .text_until("#roll-call", |t| t.contains("điểm danh"))
        .await;
    let called = attention_of(&bridge).await;
    assert!(
        called["title"].as_str().unwrap().starts_with("ĐIỂM DANH"),
        "{called}"
    );
    assert_eq!(
        called["animation"], "call-out",
        "the page flashes: {called}"
    );
    bridge.click("#roll-call-confirm").await;
    bridge
        .text_until("#roll-call", |t| t.contains("Đã xác nhận"))
        .await;
    let answered = attention_of(&bridge).await;
    assert_eq!(
        answered["title"], calm["title"],
        "calm again once confirmed"
    );
    assert_eq!(answered["attention"], false);

    app.post(
        "/api/messages",
        Some(app.key("operator")),
        serde_json::json!({"text": "Mất tiếng, kiểm tra micro ngay", "level": "urgent", "to": "all"}),
    )
    .await;
    bridge
        .text_until("#messages", |t| t.contains("kiểm tra micro"))
        .await;
    assert!(
        attention_of(&bridge).await["title"]
            .as_str()
            .unwrap()
            .starts_with("⚠ TIN NHẮN KHẨN")
    );
    bridge.click("#messages .message button").await;
    let read = attention_of(&bridge).await;
    assert_eq!(
        (read["title"].clone(), read["attention"].clone()),
        (calm["title"].clone(), serde_json::json!(false))
    );
    bridge.close().await;
}

/// What the wall shows of every tile: its box, colours, name size and whether the name
/// is cut off; and the strip's box.
async fn wall_seen(browser: &Browser) -> serde_json::Value {
    browser
        .script(
            "const look = (e) => { const s = getComputedStyle(e), r = e.getBoundingClientRect();
               return {top: r.top, left: r.left, bottom: r.bottom, right: r.right, background: s.backgroundColor}; };
             const tiles = {};
             for (const t of document.querySelectorAll('.tile')) {
               const name = t.querySelector('.name'), rtt = t.querySelector('.rtt'), line = t.querySelector('.status');
               const ring = getComputedStyle(t, '::after');
               tiles[t.dataset.site] = {...look(t), text: t.innerText,
                 name_px: parseFloat(getComputedStyle(name).fontSize),
                 name_cut: name.scrollHeight > name.clientHeight + 1 || name.scrollWidth > name.clientWidth + 1,
                 status_cut: line.scrollHeight > line.clientHeight + 1 || line.scrollWidth > line.clientWidth + 1,
                 badges_inside: [...t.querySelectorAll('.since, .role, .rtt.slow')].every((b) => {
                   const r = b.getBoundingClientRect(), box = t.getBoundingClientRect();
                   return r.left >= box.left && r.right <= box.right; }),
                 rtt_color: rtt ? getComputedStyle(rtt).color : null,
                 ring: t.classList.contains('changed') ? ring.borderTopColor : null};
             }
             return {tiles, strip: look(document.querySelector(arguments[0])),
                     width: innerWidth, height: innerHeight,
                     density: document.querySelector('#tiles').dataset.density};",
            "#strip",
        )
        .await
}

#[tokio::test]
async fn the_wall_tells_the_truth_at_a_glance_with_a_dozen_alerts_at_both_sizes() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(|config| {
        fast(config);
        // A silent site stays degraded for the test; a closed socket is offline at once.
        config.liveness.degraded_after_ms = 400;
        config.liveness.offline_after_ms = 60_000;
        config.liveness.slow_rtt_ms = 150;
    })
    .await;
    let (_, listing) = app.get("/api/sites", Some(app.key("operator"))).await;
    let codes: Vec<String> = listing["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let (dropped, rest) = codes.split_at(12);
    let (back, silent, slow, healthy) = (&rest[0], &rest[1], &rest[2], &rest[3]);

    let wall = Browser::start().await;
    wall.open_as(&app, "/wall", "operator").await;
    let _healthy = EchoingBridge::join(&app, healthy).await;
    let _slow = EchoingBridge::join_slow(&app, slow, Duration::from_millis(250)).await;
    app.wait_for_state(healthy, "online", WAIT).await;
    wall.text_until("#count-online", |t| t.ends_with('2')).await;
    // All is well: nothing on the wall alarms.
    let calm = wall_seen(&wall).await;
    assert_eq!(wall.text("#alert-count").await, "✓ Không có cảnh báo");
    assert_eq!(
        seen(&wall, "#alert-count").await["background"],
        "rgba(0, 0, 0, 0)"
    );

    for code in dropped.iter().chain([back]) {
        EchoingBridge::join(&app, code).await.close().await;
    }
    let _silent = Client::join(&app, silent).await;
    let _back = EchoingBridge::join(&app, back).await;
    for code in dropped {
        app.wait_for_state(code, "offline", WAIT).await;
    }
    app.wait_for_state(back, "online", WAIT).await;
    app.wait_for_state(silent, "degraded", WAIT).await;
    let (status, _) = app
        .post(
            "/api/messages",
            Some(app.key("operator")),
            json!({"text": "Các điểm cầu giữ máy, 5 phút nữa bắt đầu", "to": "all"}),
        )
        .await;
    assert_eq!(status, 200);
    wall.text_until("#alert-count", |t| t == "⚠ 12 cảnh báo")
        .await;
    wall.text_until("#sent", |t| t.contains("chưa xác nhận"))
        .await;
    wall.text_until(&format!(".tile[data-site=\"{slow}\"] .rtt"), |t| {
        t.starts_with("chậm")
    })
    .await;

    const RED: &str = "rgb(185, 28, 28)";
    for (width, height) in [(1920, 1080), (1366, 768)] {
        wall.viewport(width, height).await;
        // It refits on resize (a redraw is batched for 100 ms): wait until the last tile's
        // bottom has settled, then judge what is shown.
        let deadline = Instant::now() + WAIT;
        let mut look = wall_seen(&wall).await;
        loop {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let again = wall_seen(&wall).await;
            let boxes = |l: &serde_json::Value| -> Vec<(serde_json::Value, serde_json::Value)> {
                l["tiles"]
                    .as_object()
                    .unwrap()
                    .values()
                    .map(|t| (t["top"].clone(), t["left"].clone()))
                    .collect()
            };
            let settled = again["density"] == look["density"] && boxes(&again) == boxes(&look);
            look = again;
            if settled || Instant::now() > deadline {
                break;
            }
        }
        wall.screenshot(&format!("wall-problems-{width}")).await;
        let (w, h) = (
            look["width"].as_f64().unwrap(),
            look["height"].as_f64().unwrap(),
        );
        let tiles = look["tiles"].as_object().unwrap();
        assert_eq!(tiles.len(), 92);
        let strip_bottom = look["strip"]["bottom"].as_f64().unwrap();
        for (code, t) in tiles {
            let inside = t["top"].as_f64().unwrap() >= strip_bottom
                && t["left"].as_f64().unwrap() >= 0.0
                && t["bottom"].as_f64().unwrap() <= h
                && t["right"].as_f64().unwrap() <= w;
            assert!(
                inside,
                "{width}×{height} (inner {w}×{h}, strip bottom {strip_bottom}, density {}): tile {code} is off screen or under the strip: {t}",
                look["density"]
            );
            assert_eq!(
                t["name_cut"], false,
                "{width}×{height}: {code}'s name is cut off: {t}"
            );
            assert_eq!(
                t["status_cut"], false,
                "{width}×{height}: {code}'s state spills over: {t}"
            );
            assert_eq!(
                t["badges_inside"], true,
                "{width}×{height}: {code}'s badge sticks out: {t}"
            );
            let name_px = t["name_px"].as_f64().unwrap();
            let least = if width == 1920 { 18.0 } else { 12.5 }; // a laptop: denser
            assert!(
                name_px >= least,
                "{width}×{height}: {code}'s name is {name_px} px"
            );
        }
        for code in dropped {
            let t = &tiles[code.as_str()];
            assert_eq!(
                t["background"], RED,
                "{width}: offline {code} is filled red: {t}"
            );
            let text = t["text"].as_str().unwrap();
            assert!(
                text.contains("Mất kết nối") && text.contains("từ "),
                "{text}"
            );
            assert!(
                !text.contains("ms"),
                "an offline tile shows no figures: {text}"
            );
        }
        let back_tile = &tiles[back.as_str()];
        assert_ne!(
            back_tile["background"], RED,
            "back online is never red: {back_tile}"
        );
        assert_eq!(
            back_tile["background"],
            calm["tiles"][back.as_str()]["background"]
        );
        assert_eq!(
            back_tile["ring"], "rgb(226, 232, 240)",
            "it changed a moment ago: a white ring, not red: {back_tile}"
        );
        assert_eq!(
            tiles[silent.as_str()]["background"],
            "rgb(92, 66, 16)",
            "degraded is amber"
        );
        assert!(
            tiles[silent.as_str()]["text"]
                .as_str()
                .unwrap()
                .contains("Chập chờn")
        );
        assert_eq!(
            tiles[slow.as_str()]["rtt_color"],
            "rgb(214, 158, 46)",
            "a slow link in amber"
        );
        assert_eq!(
            tiles[healthy.as_str()]["rtt_color"],
            "rgb(159, 176, 194)",
            "a quick one calm"
        );
        let unchanged = &tiles[rest[10].as_str()];
        assert_eq!(
            unchanged["ring"],
            serde_json::Value::Null,
            "no change, no ring: {unchanged}"
        );
        // The strip is as high as when nothing was wrong: alerts move no tile.
        if width == 1920 {
            assert_eq!(
                look["strip"], calm["strip"],
                "the alert strip keeps its place and size"
            );
            for (code, t) in tiles {
                assert_eq!(
                    t["top"],
                    calm["tiles"][code.as_str()]["top"],
                    "{code} moved"
                );
            }
        }
        wall.screenshot(&format!("wall-problems-{width}")).await;
    }
    wall.viewport(1920, 1080).await;

    // "Đã biết" needs a name; then it is stored with who and when and leaves the strip.
    wall.click("#alert-list .wall-alert button.dismiss").await;
    wall.text_until("#message-status", |t| t.contains("Nhập tên người trực"))
        .await;
    let (_, none) = app
        .get("/api/alerts/dismissals", Some(app.key("operator")))
        .await;
    assert_eq!(none["dismissals"], json!([]));
    wall.web()
        .find(Locator::Css("#staff-name"))
        .await
        .unwrap()
        .send_keys("Nguyễn Thị Lan\n")
        .await
        .unwrap();
    let first_alert = wall
        .script(
            "return document.querySelector(arguments[0]).dataset.alert;",
            "#alert-list .wall-alert",
        )
        .await;
    wall.click("#alert-list .wall-alert button.dismiss").await;
    wall.text_until("#alert-count", |t| t == "⚠ 11 cảnh báo")
        .await;
    let (_, stored) = app
        .get("/api/alerts/dismissals", Some(app.key("operator")))
        .await;
    let record = &stored["dismissals"][0];
    assert_eq!(record["alert"], first_alert);
    assert_eq!(
        (record["name"].as_str(), record["by"].as_str()),
        (Some("Nguyễn Thị Lan"), Some("operator"))
    );
    assert!(
        (record["at_ms"].as_i64().unwrap() - now_ms()).abs() < 10_000,
        "{record}"
    );

    // A site that comes back clears its own alert, into the list of past alerts.
    let returning = dropped
        .iter()
        .find(|code| !first_alert.as_str().unwrap().contains(code.as_str()))
        .unwrap();
    let _returned = EchoingBridge::join(&app, returning).await;
    wall.text_until("#alert-count", |t| t == "⚠ 10 cảnh báo")
        .await;
    wall.click("#past-open").await;
    let past = wall.text_until("#past", |t| t.contains("tự hết")).await;
    assert!(
        past.contains("Đã biết: Nguyễn Thị Lan (operator)"),
        "{past}"
    );
    // A reload still knows what was marked.
    wall.open(&app, "/wall").await;
    wall.text_until("#alert-count", |t| t == "⚠ 10 cảnh báo")
        .await;
    // … and its list of past alerts: the one that cleared itself, the one marked.
    wall.click("#past-open").await;
    let past = wall.text_until("#past", |t| t.contains("tự hết")).await;
    assert!(
        past.contains("Đã biết: Nguyễn Thị Lan (operator)"),
        "{past}"
    );
    assert!(!past.contains("Chưa có cảnh báo nào"), "{past}");

    // The server gone: the wall may not look current.
    app.stop().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let opacity = wall
            .script(
                "return getComputedStyle(document.querySelector(arguments[0])).opacity;",
                "#tiles",
            )
            .await;
        if opacity
            .as_str()
            .and_then(|o| o.parse::<f64>().ok())
            .is_some_and(|o| o < 0.6)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tiles still look live: opacity {opacity}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(wall.text("#conn").await.contains("Mất kết nối máy chủ"));
    wall.close().await;
}

#[tokio::test]
async fn a_refused_action_on_a_page_is_explained_in_vietnamese() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(|config| config.protocol.max_notices_per_minute = 1).await;
    let wall = Browser::start().await;
    wall.open_as(&app, "/wall", "operator").await;
    wall.text_until("#count-never_seen", |t| t.ends_with("92"))
        .await;
    // A blank message: the service's 400, said in Vietnamese.
    wall.click("#message-form button[type=submit]").await;
    let said = wall.text_until("#message-status", |t| !t.is_empty()).await;
    assert!(
        said.starts_with("Chưa gửi được: Yêu cầu không hợp lệ"),
        "{said}"
    );
    // One roll call a minute here: the second is refused with when to try again.
    wall.click("#roll-call-start").await;
    wall.text_until("#roll-call-count", |t| t.contains("Điểm danh lúc"))
        .await;
    wall.click("#roll-call-start").await;
    let said = wall
        .text_until("#message-status", |t| t.contains("điểm danh"))
        .await;
    assert!(
        said.starts_with("Chưa điểm danh được: Thao tác quá nhiều lần; thử lại sau ")
            && said.ends_with(" giây"),
        "{said}"
    );
    wall.close().await;
}

/// Waits until `css` is on screen for a person: displayed and not hidden.
async fn visible_until(browser: &Browser, css: &str) {
    let deadline = Instant::now() + WAIT;
    while seen(browser, css).await["visible"] != true {
        assert!(Instant::now() < deadline, "{css} never shows");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Presses `key` (a WebDriver key code or text) on the page's body.
async fn press(browser: &Browser, key: &str) {
    browser
        .web()
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys(key)
        .await
        .unwrap();
}

async fn timer_of(app: &TestApp) -> serde_json::Value {
    app.get("/api/timer", Some(app.key("secretary"))).await.1
}

/// Waits until the service's timer satisfies `ok`.
async fn timer_until(
    app: &TestApp,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let timer = timer_of(app).await;
        if ok(&timer) {
            return timer;
        }
        assert!(Instant::now() < deadline, "{what}: {timer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_console_says_what_its_button_will_do_and_a_clicker_drives_it_with_confirmation() {
    const PAGE_DOWN: &str = "\u{E00F}";
    const PAGE_UP: &str = "\u{E00E}";
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(|_| {}).await;
    let console = Browser::start().await;
    console.open_as(&app, "/console", "secretary").await;
    // Nothing chosen: the button and Space start the slot on deck.
    console
        .text_until("#start-label", |t| t == "▶ Bắt đầu phần 1")
        .await;
    press(&console, " ").await;
    timer_until(&app, "space starts slot 1", |t| {
        t["state"] == "running" && t["slot"]["order"] == 1
    })
    .await;
    console
        .text_until("#start-label", |t| t == "⏸ Tạm dừng")
        .await;
    press(&console, " ").await;
    console
        .text_until("#start-label", |t| t == "▶ Tiếp tục")
        .await;
    press(&console, " ").await;
    console
        .text_until("#start-label", |t| t == "⏸ Tạm dừng")
        .await;

    // The clicker's PageDown while a speaker runs: asks first, ends it on the second press.
    press(&console, PAGE_DOWN).await;
    console
        .text_until("#feedback", |t| t.contains("lần nữa trong 3 giây"))
        .await;
    assert_eq!(
        seen(&console, "#btn-next").await["background"],
        "rgb(229, 62, 62)",
        "armed: red"
    );
    assert_eq!(
        timer_of(&app).await["slot"]["order"],
        1,
        "one press ends nothing"
    );
    press(&console, PAGE_DOWN).await;
    timer_until(&app, "the second press moves on", |t| {
        t["slot"]["order"] == 2 && t["state"] == "ready"
    })
    .await;
    console.text_until("#feedback", |t| t.is_empty()).await;
    console
        .text_until("#start-label", |t| t == "▶ Bắt đầu phần 2")
        .await;
    // PageUp: back to slot 1, done as it is.
    press(&console, PAGE_UP).await;
    timer_until(&app, "previous goes to the done slot", |t| {
        t["slot"]["order"] == 1 && t["state"] == "done"
    })
    .await;
    console
        .text_until("#start-label", |t| t == "▶ Bắt đầu phần 2")
        .await;

    // "?" lists the shortcuts.
    press(&console, "?").await;
    let help = seen(&console, "#help").await;
    assert!(
        help["visible"] == true && help["text"].as_str().unwrap().contains("Page Down"),
        "{help}"
    );
    press(&console, "\u{E00C}").await; // Escape
    assert_eq!(seen(&console, "#help").await["visible"], false);
    console.screenshot("console-armed").await;

    // A stop can be undone for ten seconds: slot 2 runs on as if never stopped.
    assert_eq!(seen(&console, "#btn-undo").await["visible"], false);
    press(&console, " ").await;
    let running = timer_until(&app, "slot 2 runs", |t| {
        t["slot"]["order"] == 2 && t["state"] == "running"
    })
    .await;
    press(&console, "s").await;
    press(&console, "s").await;
    timer_until(&app, "stopped", |t| t["state"] == "done").await;
    // (Its words stay in a hidden button: wait until a person can see it.)
    visible_until(&console, "#btn-undo").await;
    assert!(console.text("#btn-undo").await.starts_with("↶ Hoàn tác ("));
    press(&console, "u").await;
    let back = timer_until(&app, "undone", |t| t["state"] == "running").await;
    assert_eq!(back["deadline_ms"], running["deadline_ms"]);
    console.close().await;
}

#[tokio::test]
async fn the_hall_display_shows_the_note_the_clock_the_next_speaker_or_black_as_chosen() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(|_| {}).await;
    let console = Browser::start().await;
    let display = Browser::start().await;
    console.open_as(&app, "/console", "secretary").await;
    display.open_as(&app, "/display", "display").await;
    console
        .text_until("#start-label", |t| t == "▶ Bắt đầu phần 1")
        .await;
    press(&console, " ").await;
    display
        .text_until("#unit", |t| t == "Văn phòng UBND tỉnh")
        .await;

    // A preset note: large on the display, flashing at first.
    console.click("[data-note=\"Còn 1 phút\"]").await;
    let note = display.text_until("#note", |t| t == "Còn 1 phút").await;
    assert_eq!(note, "Còn 1 phút");
    let flashing = display
        .script("const n = document.querySelector(arguments[0]); return {flash: n.classList.contains('flash'), px: parseFloat(getComputedStyle(n).fontSize), inside: n.getBoundingClientRect().bottom <= innerHeight};", "#note")
        .await;
    assert!(
        flashing["flash"] == true
            && flashing["px"].as_f64().unwrap() >= 60.0
            && flashing["inside"] == true,
        "{flashing}"
    );
    display.screenshot("display-note").await;
    console.click("#note-clear").await;
    display.text_until("#note", |t| t.is_empty()).await;
    assert_eq!(seen(&display, "#note").await["visible"], false);

    // Black: nothing shows; B again brings the countdown back.
    press(&console, "b").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let countdown = seen(&display, "#countdown").await;
        if countdown["visible"] == false {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the countdown still shows: {countdown}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen(&display, "body").await["background"], "rgb(0, 0, 0)");
    assert_eq!(
        display
            .script("return document.body.innerText.trim();", "")
            .await,
        ""
    );
    press(&console, "b").await;
    visible_until(&display, "#countdown").await;

    // Between slots: the time of day, or who speaks next.
    press(&console, "s").await;
    press(&console, "s").await;
    timer_until(&app, "stopped", |t| t["state"] == "done").await;
    console.click(".hall-screen [data-screen=\"clock\"]").await;
    // (A hidden element keeps its words: wait until a person can see it.)
    visible_until(&display, "#clock-face").await;
    let clock = display.text("#clock-face").await;
    assert!(
        clock.len() == 8 && clock.chars().filter(|c| *c == ':').count() == 2,
        "{clock}"
    );
    assert_eq!(seen(&display, "#countdown").await["visible"], false);
    console.click(".hall-screen [data-screen=\"next\"]").await;
    display
        .text_until("#next-face", |t| {
            t.contains("Tiếp theo") && t.contains("Sở Công thương")
        })
        .await;
    visible_until(&display, "#next-face").await;
    display.screenshot("display-next").await;
    // Starting the next slot brings the countdown back by itself.
    press(&console, " ").await;
    timer_until(&app, "slot 2 runs", |t| {
        t["slot"]["order"] == 2 && t["screen"] == "timer"
    })
    .await;
    display.text_until("#unit", |t| t == "Sở Công thương").await;
    visible_until(&display, "#countdown").await;
    for b in [console, display] {
        b.close().await;
    }
}

#[tokio::test]
async fn the_console_and_the_display_say_how_late_the_programme_runs_and_when_it_ends() {
    let _turn = EXCLUSIVE.lock().await;
    // The programme began four minutes ago; slot 1 starts only now.
    let began = chrono::Utc::now() - chrono::Duration::minutes(4);
    let app = spawn_app(|c| c.timer.starts_at = Some(began.to_rfc3339())).await;
    let console = Browser::start().await;
    let display = Browser::start().await;
    console.open_as(&app, "/console", "secretary").await;
    display.open_as(&app, "/display", "display").await;
    console
        .text_until("#start-label", |t| t == "▶ Bắt đầu phần 1")
        .await;
    let planned_first = console.text("#agenda tr:first-child td:nth-child(2)").await;
    let local = began
        .with_timezone(&chrono_tz::Asia::Ho_Chi_Minh)
        .format("%H:%M")
        .to_string();
    assert_eq!(
        planned_first, local,
        "slot 1 is planned at the programme's start"
    );
    press(&console, " ").await;
    timer_until(&app, "slot 1 runs", |t| t["state"] == "running").await;
    let (_, timer) = app.get("/api/timer", Some(app.key("secretary"))).await;
    let end = timer["programme"]["projected_end_ms"].as_i64().unwrap();
    let end_words = chrono::DateTime::from_timestamp_millis(end)
        .unwrap()
        .with_timezone(&chrono_tz::Asia::Ho_Chi_Minh)
        .format("%H:%M")
        .to_string();
    for page in [&console, &display] {
        // (Before the start the page showed the same words, a moment earlier: wait for
        // the running slot's own projection.)
        let late = (timer["programme"]["delay_ms"].as_f64().unwrap() / 60_000.0).round();
        assert!((4.0..=5.0).contains(&late), "{late}");
        let expected = format!("Chậm {late} phút · dự kiến kết thúc {end_words}");
        let said = page.text_until("#programme", |t| t == expected).await;
        assert_eq!(said, expected);
        let time_of_day = seen(page, "#time-of-day").await;
        assert!(
            time_of_day["visible"] == true && time_of_day["inside"] == true,
            "{time_of_day}"
        );
    }
    for b in [console, display] {
        b.close().await;
    }
}

#[tokio::test]
async fn the_note_to_the_speaker_reaches_the_presenting_communes_bridge_page_only() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(|_| {}).await;
    let presenting = Browser::start().await;
    let other = Browser::start().await;
    presenting.open_as(&app, "/bridge", SITE).await;
    other.open_as(&app, "/bridge", "05710").await;
    app.wait_for_state(SITE, "online", WAIT).await;
    app.wait_for_state("05710", "online", WAIT).await;
    // Slot 17: Phường Phan Đình Phùng presents from its own bridge.
    app.start_slot(17).await;
    presenting
        .text_until("#turn", |t| t.contains("Bạn đang phát biểu"))
        .await;
    let (status, _) = app
        .post(
            "/api/timer/note",
            Some(app.key("secretary")),
            json!({"text": "Xin kết thúc"}),
        )
        .await;
    assert_eq!(status, 200);
    let note = presenting
        .text_until("#note", |t| t == "Thư ký nhắc: Xin kết thúc")
        .await;
    assert!(!note.is_empty());
    let shown = seen(&presenting, "#note").await;
    assert!(
        shown["visible"] == true && shown["inside"] == true,
        "{shown}"
    );
    presenting.screenshot("bridge-note").await;
    // The other commune is not presenting: its page shows no note.
    other
        .text_until("#speaker", |t| t.contains("Phần 17"))
        .await;
    assert_eq!(seen(&other, "#note").await["visible"], false);
    for b in [presenting, other] {
        b.close().await;
    }
}

#[tokio::test]
async fn the_secretary_changes_a_slot_from_the_console_and_the_hall_sees_it() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(|_| {}).await;
    let console = Browser::start().await;
    let display = Browser::start().await;
    console.open_as(&app, "/console", "secretary").await;
    display.open_as(&app, "/display", "display").await;
    console
        .text_until("#agenda", |t| t.contains("Sở Nội vụ"))
        .await;
    console.click("[data-edit=\"5\"]").await;
    assert_eq!(seen(&console, "#edit-form").await["visible"], true);
    let unit = console
        .web()
        .find(Locator::Css("#edit-unit"))
        .await
        .unwrap();
    unit.clear().await.unwrap();
    unit.send_keys("Sở Nội vụ (Phó Giám đốc trình bày thay)")
        .await
        .unwrap();
    let length = console
        .web()
        .find(Locator::Css("#edit-minutes"))
        .await
        .unwrap();
    length.clear().await.unwrap();
    length.send_keys("5").await.unwrap();
    console.click("#edit-form button[type=submit]").await;
    console
        .text_until("#agenda tr:nth-child(5)", |t| {
            t.contains("Phó Giám đốc trình bày thay") && t.contains("5:00")
        })
        .await;
    assert_eq!(seen(&console, "#edit-form").await["visible"], false);
    // A late addition after slot 1, and slot 26 moved up to 3, from the form.
    console.click("#btn-insert").await;
    let unit = console
        .web()
        .find(Locator::Css("#edit-unit"))
        .await
        .unwrap();
    unit.send_keys("Ban Dân tộc (bổ sung)").await.unwrap();
    let after = console
        .web()
        .find(Locator::Css("#edit-after"))
        .await
        .unwrap();
    after.clear().await.unwrap();
    after.send_keys("1").await.unwrap();
    console.click("#edit-form button[type=submit]").await;
    console
        .text_until("#agenda tr:nth-child(2)", |t| {
            t.contains("Ban Dân tộc (bổ sung)")
        })
        .await;
    console.click("[data-edit=\"27\"]").await;
    let to = console.web().find(Locator::Css("#edit-to")).await.unwrap();
    to.clear().await.unwrap();
    to.send_keys("3").await.unwrap();
    console.click("#edit-move").await;
    console
        .text_until("#agenda tr:nth-child(3)", |t| t.contains("Xã Chợ Rã"))
        .await;
    // Withdrawing the added one takes two presses.
    console.click("[data-edit=\"2\"]").await;
    console.click("#edit-withdraw").await;
    console
        .text_until("#feedback", |t| t.contains("lần nữa trong 3 giây"))
        .await;
    assert!(
        console
            .text("#agenda tr:nth-child(2)")
            .await
            .contains("bổ sung")
    );
    console.click("#edit-withdraw").await;
    console
        .text_until("#agenda tr:nth-child(2)", |t| t.contains("Xã Chợ Rã"))
        .await;
    // Sở Nội vụ, 5th, is 6th now: Chợ Rã came up before it.
    app.start_slot(6).await;
    display
        .text_until("#unit", |t| t == "Sở Nội vụ (Phó Giám đốc trình bày thay)")
        .await;
    display
        .text_until("#countdown", |t| {
            t.starts_with("5:00") || t.starts_with("4:5")
        })
        .await;
    for b in [console, display] {
        b.close().await;
    }
}

/// What a person sees of one tile: its words, fill, outline and badge.
async fn tile_seen(browser: &Browser, site: &str) -> serde_json::Value {
    browser
        .script(
            "const t = document.querySelector(`.tile[data-site=\"${arguments[0]}\"]`);
             if (!t) return null;
             const s = getComputedStyle(t), r = t.getBoundingClientRect();
             const badge = t.querySelector('.role');
             const b = badge && getComputedStyle(badge);
             return {text: t.innerText, background: s.backgroundColor, outline: `${s.outlineStyle} ${s.outlineColor}`,
                     badge: badge && b.display !== 'none' ? badge.innerText : null,
                     badge_inside: !badge || b.display === 'none' || (badge.getBoundingClientRect().left >= r.left && badge.getBoundingClientRect().right <= r.right),
                     name_mark: getComputedStyle(t.querySelector('.name'), '::before').content,
                     status_cut: (() => { const l = t.querySelector('.status'); return l.scrollHeight > l.clientHeight + 1 || l.scrollWidth > l.clientWidth + 1; })(),
                     all_fit: (() => { const b = document.querySelector('#tiles'); return b.scrollHeight <= b.clientHeight + 1; })(),
                     inside: r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth};",
            site,
        )
        .await
}

#[tokio::test]
async fn on_the_wall_staff_take_an_incident_note_it_and_see_one_nobody_took_and_an_excused_site_stays_calm()
 {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(|config| {
        fast(config);
        config.liveness.offline_after_ms = 60_000;
        config.incidents.raise_after_seconds = 3;
    })
    .await;
    let (taken, left, away) = ("05443", "05710", "05500");
    let wall = Browser::start().await;
    wall.open_as(&app, "/wall", "operator").await;
    wall.text_until("#count-online", |t| t.ends_with('0')).await;

    // The organisers excuse one commune from its detail panel, with a reason.
    wall.script(
        "document.querySelector('#staff-name').value = 'Lan'; return null;",
        "",
    )
    .await;
    wall.click(&format!(".tile[data-site=\"{away}\"]")).await;
    visible_until(&wall, "#incident-box form input").await;
    wall.script(
        "const f = document.querySelectorAll('#incident-box form'); const last = f[f.length - 1];
         last.querySelector('input').value = 'Xã sáp nhập, dự ở điểm cầu khác'; last.requestSubmit(); return null;",
        "",
    )
    .await;
    wall.text_until("#incident-box", |t| t.contains("Vắng mặt có lý do (Lan"))
        .await;
    wall.click("#detail button").await; // Đóng
    wall.script(
        "document.querySelector('#staff-name').value = ''; return null;",
        "",
    )
    .await;

    for site in [taken, left, away] {
        EchoingBridge::join(&app, site).await.close().await;
        app.wait_for_state(site, "offline", WAIT).await;
    }
    wall.text_until("#alert-count", |t| t == "⚠ 2 cảnh báo")
        .await;
    let alert_of = |site: &str| format!("[data-alert^=\"offline:{site}:\"]");
    visible_until(&wall, &format!("{} button.take", alert_of(taken))).await;

    // "Tôi xử lý" without a name asks for one, and stores nothing.
    wall.click(&format!("{} button.take", alert_of(taken)))
        .await;
    wall.text_until("#message-status", |t| t.contains("Nhập tên người trực"))
        .await;
    let (_, list) = app.get("/api/incidents", Some(app.key("operator"))).await;
    assert!(
        list["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["takers"].as_array().unwrap().is_empty()),
        "{list}"
    );
    wall.script("const i = document.querySelector('#staff-name'); i.value = 'Lan'; i.dispatchEvent(new Event('change')); return null;", "").await;
    wall.click(&format!("{} button.take", alert_of(taken)))
        .await;
    wall.text_until(&format!("{} .taker", alert_of(taken)), |t| {
        t == "Lan đang xử lý"
    })
    .await;
    wall.text_until(&format!(".tile[data-site=\"{taken}\"] .role"), |t| {
        t == "Lan xử lý"
    })
    .await;
    let (_, list) = app.get("/api/incidents", Some(app.key("operator"))).await;
    let stored = list["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["site"] == taken)
        .unwrap()
        .clone();
    assert_eq!(
        (
            stored["takers"][0]["name"].as_str(),
            stored["takers"][0]["role"].as_str()
        ),
        (Some("Lan"), Some("operator"))
    );

    // A note from the tile's panel.
    wall.click(&format!(".tile[data-site=\"{taken}\"]")).await;
    visible_until(&wall, "#incident-note").await;
    wall.script(
        "const i = document.querySelector('#incident-note'); i.value = 'đã gọi anh Hùng: mất điện, 5 phút'; i.form.requestSubmit(); return null;",
        "",
    )
    .await;
    wall.text_until(".incident-notes", |t| {
        t.contains("Lan: đã gọi anh Hùng: mất điện, 5 phút")
    })
    .await;
    assert_eq!(
        wall.text("#incident-taker").await.split(" (").next(),
        Some("✎ Lan đang xử lý")
    );
    wall.click("#detail button").await;

    // Nobody takes the other within three seconds: it is raised again, on its tile and in the strip.
    wall.text_until(&format!("{} span", alert_of(left)), |t| {
        t.starts_with("⚠ CHƯA AI NHẬN:")
    })
    .await;
    for (width, height) in [(1920, 1080), (1366, 768)] {
        wall.viewport(width, height).await;
        tokio::time::sleep(Duration::from_millis(300)).await; // the refit after a resize
        wall.screenshot(&format!("wall-incidents-{width}")).await;
        let on = tile_seen(&wall, taken).await;
        let nobody = tile_seen(&wall, left).await;
        let excused = tile_seen(&wall, away).await;
        assert_eq!(
            nobody["outline"], "dashed rgb(250, 204, 21)",
            "{width}: {nobody}"
        );
        assert_ne!(
            on["outline"], nobody["outline"],
            "{width}: a taken one is not raised: {on}"
        );
        if width == 1920 {
            assert_eq!(on["badge"], "Lan xử lý", "{on}");
            assert_eq!(nobody["badge"], "⚠ chưa ai nhận", "{nobody}");
        } else {
            // Dense: no badges, a mark before the name.
            assert_eq!(on["name_mark"], "\"✎ \"", "{on}");
        }
        for t in [&on, &nobody, &excused] {
            assert!(
                t["inside"] == true && t["badge_inside"] == true && t["status_cut"] == false,
                "{width}: {t}"
            );
        }
        assert_eq!(
            on["all_fit"], true,
            "{width}: every tile on screen without scrolling"
        );
        // The excused site dropped too, yet is neither red nor counted nor alerted.
        assert!(
            excused["text"]
                .as_str()
                .unwrap()
                .contains("Vắng (có lý do)"),
            "{excused}"
        );
        assert_ne!(excused["background"], "rgb(185, 28, 28)", "{excused}");
        let offline = wall.text("#count-offline").await;
        assert!(
            offline.ends_with('2'),
            "{width}: the excused site is not counted offline: {offline}"
        );
        assert_eq!(wall.text("#count-excused").await, " · vắng 1");
        assert_eq!(wall.text("#alert-count").await, "⚠ 2 cảnh báo");
        let count = seen(&wall, "#incident-count").await;
        assert_eq!(count["text"], "Sự cố 2 · 1 chưa ai nhận", "{width}");
        assert_eq!(
            count["background"], "rgb(250, 204, 21)",
            "{width}: yellow while one is untaken"
        );
    }
    // A reload keeps the name and the state of every incident.
    wall.viewport(1920, 1080).await;
    wall.open(&app, "/wall").await;
    wall.text_until(&format!(".tile[data-site=\"{taken}\"] .role"), |t| {
        t == "Lan xử lý"
    })
    .await;
    assert_eq!(
        wall.script("return document.querySelector('#staff-name').value;", "")
            .await,
        "Lan"
    );
    // The organisers' report lists both, with who took it and the note.
    wall.open(&app, "/report").await;
    let rows = wall
        .text_until("#incidents", |t| t.lines().count() >= 2)
        .await;
    assert!(
        rows.contains("Lan")
            && rows.contains("đã gọi anh Hùng: mất điện, 5 phút")
            && rows.contains("chưa ai nhận"),
        "{rows}"
    );
    assert!(
        wall.text("#total-incidents")
            .await
            .contains("2 (1 chưa ai nhận)")
    );
    wall.close().await;
}

/// The commune's page, connected, with the technician's name typed.
async fn bridge_page_ready(page: &Browser, app: &TestApp) {
    page.open_as(app, "/bridge", SITE).await;
    page.text_until("#link-state", |t| t.contains("Đã kết nối"))
        .await;
    page.script(
        "document.querySelector('#technician').value = 'Trần Thị Bình'; return null;",
        "",
    )
    .await;
}

/// Runs the device check, the technician hearing the tone; returns what it says.
async fn check_devices(page: &Browser) -> String {
    page.click("#devices-start").await;
    shown_within(page, "#speakers-ask", Duration::from_secs(20)).await;
    page.click("#speakers-yes").await;
    page.text_until("#devices-status", |t| t.contains("Loa:"))
        .await
}

/// Waits up to `within` until `css` shows.
async fn shown_within(browser: &Browser, css: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while seen(browser, css).await["visible"] != true {
        assert!(Instant::now() < deadline, "{css} never shows");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The rows of the page's verdict table: label → (figure, verdict, advice).
async fn verdict_rows(browser: &Browser) -> serde_json::Value {
    browser
        .script(
            "const rows = {}; let last = null;
             for (const tr of document.querySelectorAll(arguments[0])) {
               const cells = [...tr.children].map((c) => c.innerText);
               if (cells.length === 4) { last = cells[0]; rows[last] = {figure: cells[1], verdict: cells[3], advice: ''}; }
               else if (last) rows[last].advice = cells[0];
             }
             return rows;",
            "#check-result tbody tr",
        )
        .await
}

#[tokio::test]
async fn a_commune_measures_its_camera_micro_and_speakers_and_a_camera_held_elsewhere_fails_with_what_to_do()
 {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(short_check).await;
    let page = Browser::start_with(&[
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
    ])
    .await;
    bridge_page_ready(&page, &app).await;

    // Chromium's fake camera (a moving picture) and microphone (a beep): both pass;
    // the technician hears the tone.
    let summary = check_devices(&page).await;
    assert!(
        summary.contains("khung/s")
            && summary.contains("dBFS")
            && summary.contains("Loa: nghe thấy"),
        "{summary}"
    );
    page.click("#check-start").await;
    page.text_until("#check-status", |t| t.starts_with("Kết quả"))
        .await;
    let rows = verdict_rows(&page).await;
    for device in ["Camera", "Micro (khi nói)", "Loa"] {
        assert_eq!(rows[device]["verdict"], "Đạt", "{device}: {rows:#}");
    }
    assert!(
        rows["Camera"]["figure"]
            .as_str()
            .unwrap()
            .ends_with("khung/s"),
        "{rows:#}"
    );
    page.screenshot("bridge-devices-result").await;
    let (_, own) = app.get("/api/rehearsals", Some(app.key(SITE))).await;
    let stored = &own["attempts"][0];
    let camera = &stored["figures"]["devices"]["camera"];
    assert!(
        camera["fps"].as_f64().unwrap() >= 15.0 && camera["height"].as_f64().unwrap() >= 360.0,
        "{camera}"
    );
    assert!(
        camera["change"].as_f64().unwrap() > 0.5,
        "the fake picture moves: {camera}"
    );
    assert_eq!(stored["figures"]["devices"]["speakers_heard"], true);
    let stored_rows: Vec<&str> = stored["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metric"].as_str().unwrap())
        .collect();
    assert!(
        ["camera", "microphone", "speakers"]
            .iter()
            .all(|m| stored_rows.contains(m)),
        "{stored_rows:?}"
    );

    // The camera held by another program: the browser says NotReadableError.
    page.script(
        "const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
         navigator.mediaDevices.getUserMedia = (c) => c.video
           ? Promise.reject(new DOMException('Could not start video source', 'NotReadableError'))
           : real(c);
         return null;",
        "",
    )
    .await;
    let summary = check_devices(&page).await;
    assert!(
        summary.contains("Camera: đang bị chương trình khác dùng"),
        "{summary}"
    );
    page.click("#check-start").await;
    page.text_until("#check-status", |t| t.starts_with("Kết quả: Không đạt"))
        .await;
    let rows = verdict_rows(&page).await;
    assert_eq!(rows["Camera"]["verdict"], "Không đạt", "{rows:#}");
    let advice = rows["Camera"]["advice"].as_str().unwrap();
    assert!(
        advice.contains("chương trình khác") && advice.contains("đóng chương trình đó"),
        "{advice}"
    );
    assert_eq!(rows["Micro (khi nói)"]["verdict"], "Đạt");
    let (_, board) = app.get("/api/rehearsals", Some(app.key("operator"))).await;
    let latest = board["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == SITE)
        .unwrap()
        .clone();
    assert_eq!(
        latest["latest"]["verdict"], "fail",
        "the board shows the failed camera"
    );
    assert!(
        latest["latest"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["metric"] == "camera" && r["verdict"] == "fail")
    );
    page.close().await;
}

#[tokio::test]
async fn the_bridge_pages_check_measures_the_udp_path_over_a_webrtc_data_channel() {
    let _turn = EXCLUSIVE.lock().await;
    let app = spawn_app(udp_check).await;
    let page = Browser::start().await;
    bridge_page_ready(&page, &app).await;
    page.click("#check-start").await;
    page.text_until("#check-status", |t| t.starts_with("Đang đo đường UDP"))
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !page.text("#check-status").await.starts_with("Kết quả") {
        assert!(Instant::now() < deadline, "no verdict");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows = verdict_rows(&page).await;
    assert_eq!(rows["Mất gói UDP"]["verdict"], "Đạt", "{rows:#}");
    assert_eq!(rows["Độ trễ UDP (trung vị)"]["verdict"], "Đạt", "{rows:#}");
    let (_, own) = app.get("/api/rehearsals", Some(app.key(SITE))).await;
    let udp = &own["attempts"][0]["figures"]["udp"];
    assert_eq!(udp["connected"], true, "{udp}");
    // About 1.5 Mbps for 2 s in 1,100-byte packets: some 340 sent, nearly all back.
    assert!(udp["sent"].as_u64().unwrap() > 200, "{udp}");
    assert!(udp["loss_pct"].as_f64().unwrap() < 1.0, "{udp}");
    page.screenshot("bridge-udp").await;
    page.close().await;
}

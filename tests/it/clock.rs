//! The wall clock stepping under a running service (NTP after boot, a resumed VM): the
//! service follows it, and nothing jumps.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use diemcau::clock::{SystemClock, TimeSource};
use serde_json::Value;

use crate::helpers::*;

/// The machine's clocks, with a wall clock the test can step.
struct SteppableWall {
    origin: Instant,
    step_ms: AtomicI64,
}

impl TimeSource for SteppableWall {
    fn wall_ms(&self) -> i64 {
        now_ms() + self.step_ms.load(Ordering::SeqCst)
    }
    fn monotonic_ms(&self) -> i64 {
        self.origin.elapsed().as_millis() as i64
    }
}

/// Time left on the running slot, by the service's own clock.
fn remaining(timer: &Value) -> i64 {
    timer["deadline_ms"].as_i64().unwrap() - timer["server_ms"].as_i64().unwrap()
}

#[tokio::test]
async fn a_forward_step_of_the_wall_clock_is_followed_and_nothing_jumps() {
    let wall = Arc::new(SteppableWall {
        origin: Instant::now(),
        step_ms: AtomicI64::new(0),
    });
    let clock = Arc::new(SystemClock::with_source(wall.clone()));
    let app = spawn_app_on_clock(clock, steady).await;
    let mut bridge = EchoingBridge::join(&app, SITE).await;
    app.wait_for_state(SITE, "online", WAIT).await;
    let mut feed = Client::connect(&app, &format!("/ws/live?key={}", app.key("display"))).await;
    feed.recv_type("snapshot").await;
    app.start_slot(4).await;
    feed.recv_type("timer").await; // the start's frame, before anything is stepped
    let secretary = Some(app.key("secretary"));
    let (_, before) = app.get("/api/timer", secretary).await;
    let read_before = Instant::now();

    // NTP steps the wall clock three minutes forward.
    wall.step_ms.store(180_000, Ordering::SeqCst);
    // The page hears the timer (shifted) and then the step.
    let timer_frame = feed.recv_type("timer").await;
    let step = feed.recv_type("clock_step").await;
    assert!(
        (remaining(&timer_frame) - remaining(&before) + read_before.elapsed().as_millis() as i64)
            .abs()
            < 1_000,
        "{timer_frame}"
    );
    let by = step["by_ms"].as_i64().unwrap();
    assert!((by - 180_000).abs() < 50, "{step}");

    // Records are in true wall time again; the countdown did not move.
    let (_, after) = app.get("/api/timer", secretary).await;
    let real = read_before.elapsed().as_millis() as i64;
    assert!(
        (after["server_ms"].as_i64().unwrap() - (now_ms() + 180_000)).abs() < 200,
        "service time follows the wall clock: {after}"
    );
    // The real time between the two readings, by the service's own clock less the step
    // (the client's measure would add the answers' latency on a busy machine).
    let served = after["server_ms"].as_i64().unwrap() - before["server_ms"].as_i64().unwrap() - by;
    assert!((served - real).abs() < 1_000, "{served} vs {real}");
    let moved = remaining(&before) - remaining(&after) - served;
    assert!(
        moved.abs() < 20,
        "the countdown moved by {moved} ms beyond the real time"
    );

    // The bridge is told its clock offset at once (its clock did not move; the service's did).
    let deadline = Instant::now() + WAIT;
    loop {
        let sync = bridge.next_of("sync").await;
        if sync["offset_ms"].as_f64().unwrap() < -170_000.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no sync with the new offset: {sync}"
        );
    }
    // Three minutes of "silence" that never was: the site stays online, no transition.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let site = app.site(SITE).await;
    assert_eq!(site["state"], "online", "{site}");
    assert_eq!(site["transitions"].as_array().unwrap().len(), 1, "{site}");

    // The skipped interval is nobody's uptime nor outage, and the report says so.
    let (_, report) = app.get("/api/report", secretary).await;
    let skipped: Vec<&Value> = report["service_downtime"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["cause"] == "clock_step")
        .collect();
    assert_eq!(skipped.len(), 1, "{report}");
    let length = skipped[0]["to_ms"].as_i64().unwrap() - skipped[0]["from_ms"].as_i64().unwrap();
    assert_eq!(length, by);
    let row = report_row(&report, SITE);
    assert_eq!(row["outages"], 0, "{row}");
    let (_, text) = app.get_text("/metrics").await;
    assert!(text.contains("\ndiemcau_clock_steps_total 1\n"), "{text}");
    bridge.close().await;
}

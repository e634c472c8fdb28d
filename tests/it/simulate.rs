//! The simulator: load and the fault modes the staff rehearse reading the wall with.

use std::time::{Duration, Instant};

use diemcau::core::sites::Roster;
use diemcau::tools::simulate::{Fault, FaultTiming, SimStats, spawn_site};

use crate::helpers::*;

fn synthetic_csv(n: u32) -> String {
    let mut text = String::from("code,name,kind,former_district\n");
    for site in Roster::synthetic(n).sites() {
        text.push_str(&format!(
            "{},{},{},{}\n",
            site.id,
            site.name,
            site.kind.as_str(),
            site.former_district
        ));
    }
    text
}

async fn wait_until(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_simulated_sites_stay_online_and_all_receive_a_timer_change() {
    let _turn = EXCLUSIVE.lock().await;
    const N: usize = 500;
    let agenda = "order,unit,unit_kind,topic\n1,Đơn vị thử,so_nganh,Chủ đề thử\n";
    let app = spawn_app_with_files(&synthetic_csv(N as u32), Some(agenda), |c| {
        c.liveness.probe_interval_ms = 500;
    })
    .await;
    let stats = SimStats::new(N);
    let mut sims = Vec::new();
    for (i, site) in Roster::synthetic(N as u32).sites().iter().enumerate() {
        let id = site.id.to_string();
        let key = app.key(&id).to_string();
        sims.push(
            spawn_site(
                &app.url(""),
                i,
                id,
                key,
                (Fault::None, FaultTiming::default()),
                stats.clone(),
                None,
            )
            .unwrap(),
        );
    }
    wait_until("500 sites online", Duration::from_secs(30), async || {
        app.get("/api/status", Some(app.key("operator"))).await.1["sites"]["online"] == N
    })
    .await;

    app.start_slot(1).await;
    wait_until("every site got the timer", WAIT, async || {
        stats.sites_at_rev(1) == N
    })
    .await;

    // A few probe rounds later nobody has dropped.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, status) = app.get("/api/status", Some(app.key("operator"))).await;
    assert_eq!(status["sites"]["online"], N, "{status}");
    for sim in sims {
        sim.abort();
    }
}

#[tokio::test]
async fn each_fault_mode_shows_on_the_wall_as_it_should() {
    let app = spawn_app(fast).await;
    let timing = FaultTiming {
        period: Duration::from_millis(400),
        down_for: Duration::from_millis(300),
        late: Duration::from_millis(400),
        flap_every: Duration::from_millis(150),
        silent_after: Duration::from_millis(200),
    };
    let cases = [
        ("05443", Fault::Drop),
        ("05710", Fault::Late),
        ("05500", Fault::Silent),
        ("05467", Fault::Flap),
    ];
    let stats = SimStats::new(cases.len());
    let sims: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, (site, fault))| {
            spawn_site(
                &app.url(""),
                i,
                site.to_string(),
                app.key(site).to_string(),
                (*fault, timing),
                stats.clone(),
                None,
            )
            .unwrap()
        })
        .collect();
    let history = |site: serde_json::Value| -> Vec<String> {
        site["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["to"].as_str().unwrap().to_string())
            .collect()
    };

    wait_until(
        "the dropping site went offline and came back",
        WAIT,
        async || {
            let h = history(app.site("05443").await);
            h.first().is_some_and(|t| t == "online") && h.contains(&"offline".to_string())
        },
    )
    .await;
    wait_until("the late site shows stalled probes", WAIT, async || {
        let site = app.site("05710").await;
        site["stalled_probes"].as_u64().unwrap_or(0) > 0 && site["state"] != "offline"
    })
    .await;
    wait_until(
        "the silent site went degraded then offline",
        WAIT,
        async || {
            let h = history(app.site("05500").await);
            h.contains(&"degraded".to_string()) && h.contains(&"offline".to_string())
        },
    )
    .await;
    wait_until("the flapping site is marked flapping", WAIT, async || {
        app.site("05467").await["flapping"] == true
    })
    .await;
    for sim in sims {
        sim.abort();
    }
}

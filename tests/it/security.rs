//! What one peer may make the service do, and what the page cookie may do: the limits
//! and rules of README's "Security" section, each tried the way an attacker would.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn integers_from_clients_out_of_range_are_a_400_never_a_wrap() {
    let app = spawn_app(fast).await;
    app.start_slot(1).await;
    let secretary = app.key("secretary");
    for body in [
        r#"{"seconds": -9223372036854775808}"#,
        r#"{"seconds": 9223372036854775807}"#,
        r#"{"seconds": 99999999999999999999}"#,
        r#"{"seconds": 1e300}"#,
        r#"{"seconds": 3601}"#,
    ] {
        let response = app
            .http
            .post(app.url("/api/timer/adjust"))
            .bearer_auth(secretary)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{body}");
    }
    let (status, _) = app
        .post(
            "/api/timer/select",
            Some(secretary),
            json!({"slot": 4294967296u64}),
        )
        .await;
    assert_eq!(status, 400, "a slot beyond u32");
    let (_, timer) = app.get("/api/timer", Some(secretary)).await;
    assert_eq!(timer["added_ms"], 0, "nothing was adjusted: {timer}");
    assert_eq!(timer["state"], "running");
}

//! `POST /api/v1/messages`: key checks, body checks and the project's limits.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn publishing_with_a_valid_key_is_accepted() {
    let app = spawn_app().await;
    let user = app.signup().await;
    let project = app.create_project(&user, "p").await;
    let response = app.publish(&project.api_key, "Hello, world!").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    assert!(body["delivered_to"].is_u64(), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 1);
}

#[tokio::test]
async fn the_api_key_is_required_and_checked() {
    let app = spawn_app().await;
    let body = json!({ "message": "hi" });
    let missing = app.post_json("/api/v1/messages", &body).await;
    assert_error(missing, StatusCode::UNAUTHORIZED, "API_KEY_REQUIRED").await;
    let empty = app
        .client
        .post(app.url("/api/v1/messages"))
        .header("X-API-Key", "")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_error(empty, StatusCode::UNAUTHORIZED, "API_KEY_REQUIRED").await;
    let unknown = app
        .publish("rk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "hi")
        .await;
    assert_error(unknown, StatusCode::UNAUTHORIZED, "INVALID_API_KEY").await;
    let junk = app.publish("not a key at all", "hi").await;
    assert_error(junk, StatusCode::UNAUTHORIZED, "INVALID_API_KEY").await;
    // A session token is not an API key.
    let user = app.signup().await;
    let session = app.publish(&user.token, "hi").await;
    assert_error(session, StatusCode::UNAUTHORIZED, "INVALID_API_KEY").await;
}

#[tokio::test]
async fn the_body_must_be_one_string_message() {
    let app = spawn_app().await;
    let user = app.signup().await;
    let project = app.create_project(&user, "p").await;
    for body in [
        json!({ "message": 42 }),
        json!({ "message": { "text": "hi" } }),
        json!({ "message": ["hi"] }),
        json!({ "message": null }),
        json!({}),
        json!({ "message": "hi", "event": "other" }),
        json!("hi"),
    ] {
        let response = app
            .client
            .post(app.url("/api/v1/messages"))
            .header("X-API-Key", &project.api_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    }
    // Each was a publish, refused: counted as received and rejected, nothing delivered.
    let stats = app
        .get_json(
            &format!("/api/v1/projects/{}/stats", project.id),
            &user.token,
        )
        .await;
    assert_eq!(stats["messages_received"], 7, "{stats}");
    assert_eq!(stats["messages_rejected"], 7, "{stats}");
    assert_eq!(stats["messages_delivered"], 0, "{stats}");
}

#[tokio::test]
async fn messages_over_the_project_limit_are_too_large() {
    let app = spawn_app().await;
    let user = app.signup().await;
    let project = app.create_project(&user, "p").await;
    let response = app
        .authed(
            Method::PATCH,
            &format!("/api/v1/projects/{}", project.id),
            &user.token,
        )
        .json(&json!({ "settings": { "max_message_bytes": 10 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // 10 bytes (5 code points of 2 bytes) pass; 11 bytes do not.
    assert_eq!(
        app.publish(&project.api_key, "ééééé").await.status(),
        StatusCode::ACCEPTED
    );
    let error = assert_error(
        app.publish(&project.api_key, "ééééé!").await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "MESSAGE_TOO_LARGE",
    )
    .await;
    assert_eq!(error["limit"], 10);
}

#[tokio::test]
async fn publishing_counts_against_the_project_rate() {
    let app = spawn_app().await;
    let user = app.signup().await;
    let project = app.create_project(&user, "p").await;
    let response = app
        .authed(
            Method::PATCH,
            &format!("/api/v1/projects/{}", project.id),
            &user.token,
        )
        .json(&json!({ "settings": { "project_messages_per_second": 1 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Burst is twice the rate: 2 pass at once, then the bucket is empty.
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..4 {
        let response = app.publish(&project.api_key, "hi").await;
        statuses.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS && limited.is_none() {
            limited = Some(response);
        }
    }
    assert_eq!(
        &statuses[..2],
        [StatusCode::ACCEPTED, StatusCode::ACCEPTED],
        "{statuses:?}"
    );
    let response = limited.expect("rate limited");
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let error = assert_error(response, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
    let retry_after_ms = error["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(
        retry_after_ms > 0 && retry_after_ms <= 1000,
        "{retry_after_ms}"
    );
}

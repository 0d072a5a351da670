//! Projects: create, list, show, update (name and settings), delete, regenerate-key,
//! stats, and tenant isolation.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn patch(app: &TestApp, user: &TestUser, id: &str, body: Value) -> reqwest::Response {
    app.authed(
        Method::PATCH,
        &format!("/api/v1/projects/{id}"),
        &user.token,
    )
    .json(&body)
    .send()
    .await
    .unwrap()
}

#[tokio::test]
async fn create_returns_the_project_with_default_settings_and_its_key_once() {
    let app = spawn_app().await;
    let user = app.signup().await;
    let project = app.create_project(&user, "  Chat  ").await;
    let key = &project.api_key;
    assert!(key.starts_with("rk_") && key.len() == 46, "{key}");
    assert!(key[3..]
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    let json = &project.json;
    assert_eq!(json["name"], "Chat");
    assert_eq!(json["key_prefix"], &key[..11]);
    assert!(uuid::Uuid::parse_str(json["id"].as_str().unwrap()).is_ok());
    assert!(chrono::DateTime::parse_from_rfc3339(json["created_at"].as_str().unwrap()).is_ok());
    assert_eq!(
        json["settings"],
        json!({
            "max_message_bytes": 65536,
            "messages_per_second": 20,
            "project_messages_per_second": 2000,
            "max_connections": 10000,
            "allowed_origins": [],
        })
    );
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 5, "{keys:?}");

    // Shown afterwards only by prefix.
    let shown = app
        .authed(
            Method::GET,
            &format!("/api/v1/projects/{}", project.id),
            &user.token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(shown.status(), StatusCode::OK);
    let shown_text = shown.text().await.unwrap();
    assert!(!shown_text.contains(key.as_str()));
    let shown: Value = serde_json::from_str(&shown_text).unwrap();
    assert_eq!(&shown["project"], json);
}

#[tokio::test]
async fn project_names_are_validated() {
    let app = spawn_app().await;
    let user = app.signup().await;
    let create = |body: Value| {
        app.authed(Method::POST, "/api/v1/projects", &user.token)
            .json(&body)
            .send()
    };
    for body in [
        json!({ "name": "" }),
        json!({ "name": "   " }),
        json!({ "name": "名".repeat(101) }),
        json!({ "name": 7 }),
        json!({ "name": null }),
        json!({}),
        json!({ "name": "ok", "owner": "someone" }),
    ] {
        assert_error(
            create(body).await.unwrap(),
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        )
        .await;
    }
    let ok = create(json!({ "name": "名".repeat(100) })).await.unwrap();
    assert_eq!(ok.status(), StatusCode::CREATED);
    let list: Value = app.get_json("/api/v1/projects", &user.token).await;
    assert_eq!(list["projects"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn users_see_only_their_own_projects() {
    let app = spawn_app().await;
    let alice = app.signup().await;
    let bob = app.signup().await;
    let a1 = app.create_project(&alice, "a1").await;
    let a2 = app.create_project(&alice, "a2").await;
    let b1 = app.create_project(&bob, "b1").await;

    let list: Value = app.get_json("/api/v1/projects", &alice.token).await;
    let ids: Vec<&str> = list["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a1.id.as_str(), a2.id.as_str()]);

    // Every project endpoint answers 404 for someone else's project, and changes nothing.
    let theirs = format!("/api/v1/projects/{}", b1.id);
    let attempts = [
        app.authed(Method::GET, &theirs, &alice.token),
        app.authed(Method::PATCH, &theirs, &alice.token)
            .json(&json!({ "name": "mine now" })),
        app.authed(Method::DELETE, &theirs, &alice.token),
        app.authed(
            Method::POST,
            &format!("{theirs}/regenerate-key"),
            &alice.token,
        ),
        app.authed(Method::GET, &format!("{theirs}/stats"), &alice.token),
    ];
    for attempt in attempts {
        assert_error(
            attempt.send().await.unwrap(),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
    }
    let still: Value = app.get_json(&theirs, &bob.token).await;
    assert_eq!(still["project"], b1.json);
    assert_eq!(
        app.publish(&b1.api_key, "still works").await.status(),
        StatusCode::ACCEPTED
    );

    // Unknown and malformed ids are simply not found.
    for id in [
        uuid::Uuid::new_v4().to_string(),
        "not-a-uuid".into(),
        "%FF".into(),
    ] {
        let response = app
            .authed(Method::GET, &format!("/api/v1/projects/{id}"), &alice.token)
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    }
}

#[tokio::test]
async fn project_endpoints_need_a_session() {
    let app = spawn_app().await;
    let user = app.signup().await;
    let project = app.create_project(&user, "p").await;
    let path = format!("/api/v1/projects/{}", project.id);
    let requests = [
        app.client.get(app.url("/api/v1/projects")),
        app.client
            .post(app.url("/api/v1/projects"))
            .json(&json!({ "name": "x" })),
        app.client.get(app.url(&path)),
        app.client
            .patch(app.url(&path))
            .json(&json!({ "name": "x" })),
        app.client.delete(app.url(&path)),
        app.client.post(app.url(&format!("{path}/regenerate-key"))),
        app.client.get(app.url(&format!("{path}/stats"))),
    ];
    for request in requests {
        assert_error(
            request.send().await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
        )
        .await;
    }
}

#[tokio::test]
async fn patch_renames_and_merges_settings_and_null_resets() {
    let app = spawn_app().await;
    let user = app.signup().await;
    let project = app.create_project(&user, "p").await;

    let response = patch(&app, &user, &project.id, json!({ "name": "renamed", "settings": { "max_message_bytes": 1024, "allowed_origins": ["HTTPS://App.Example.com:443", "http://localhost:5173"] } })).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["project"]["name"], "renamed");
    assert_eq!(body["project"]["settings"]["max_message_bytes"], 1024);
    assert_eq!(
        body["project"]["settings"]["allowed_origins"],
        json!(["https://app.example.com", "http://localhost:5173"])
    );

    // Merge: untouched fields keep their values.
    let body: Value = patch(
        &app,
        &user,
        &project.id,
        json!({ "settings": { "max_connections": 5 } }),
    )
    .await
    .json()
    .await
    .unwrap();
    let settings = &body["project"]["settings"];
    assert_eq!(settings["max_connections"], 5);
    assert_eq!(settings["max_message_bytes"], 1024);
    assert_eq!(settings["messages_per_second"], 20);
    assert_eq!(body["project"]["name"], "renamed");

    // null resets to the server default.
    let body: Value = patch(
        &app,
        &user,
        &project.id,
        json!({ "settings": { "max_message_bytes": null, "allowed_origins": null } }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["project"]["settings"]["max_message_bytes"], 65536);
    assert_eq!(body["project"]["settings"]["allowed_origins"], json!([]));
    assert_eq!(body["project"]["settings"]["max_connections"], 5);
    let kept = body;

    // "settings": null resets every setting, as a JSON merge patch would.
    let body: Value = patch(&app, &user, &project.id, json!({ "settings": null }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["project"]["settings"]["max_connections"], 10_000);
    assert_eq!(body["project"]["settings"]["max_message_bytes"], 65536);
    assert_eq!(body["project"]["name"], "renamed");
    let body: Value = patch(
        &app,
        &user,
        &project.id,
        json!({ "settings": kept["project"]["settings"] }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["project"]["settings"], kept["project"]["settings"]);

    // Persisted, and the key prefix does not change.
    let shown: Value = app
        .authed(
            Method::GET,
            &format!("/api/v1/projects/{}", project.id),
            &user.token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["project"], body["project"]);
    assert_eq!(shown["project"]["key_prefix"], project.json["key_prefix"]);
    // The server limits are the ceiling: setting exactly the limit is allowed.
    let at_limit = patch(
        &app,
        &user,
        &project.id,
        json!({ "settings": { "project_messages_per_second": 2000 } }),
    )
    .await;
    assert_eq!(at_limit.status(), StatusCode::OK);
}

#[tokio::test]
async fn invalid_patches_are_rejected_and_change_nothing() {
    let app = spawn_app().await;
    let user = app.signup().await;
    let project = app.create_project(&user, "p").await;
    for body in [
        json!({ "settings": { "max_message_bytes": 65537 } }),
        json!({ "settings": { "messages_per_second": 21 } }),
        json!({ "settings": { "project_messages_per_second": 2001 } }),
        json!({ "settings": { "max_connections": 10001 } }),
        json!({ "settings": { "max_connections": 0 } }),
        json!({ "settings": { "max_connections": -1 } }),
        json!({ "settings": { "max_connections": 1.5 } }),
        json!({ "settings": { "max_connections": "5" } }),
        json!({ "settings": { "max_connections": 99_999_999_999_999_999u64 } }),
        json!({ "settings": { "burst": 2 } }),
        json!({ "settings": { "allowed_origins": "https://example.com" } }),
        json!({ "settings": { "allowed_origins": ["https://example.com/path"] } }),
        json!({ "settings": { "allowed_origins": ["example.com"] } }),
        json!({ "settings": { "allowed_origins": [42] } }),
        // An array is not read as the settings in order.
        json!({ "settings": [100, 5] }),
        json!({ "settings": [null, null, null, null, ["https://b.com"]] }),
        json!({ "settings": "max_connections=5" }),
        json!({ "settings": 5 }),
        json!({ "name": "" }),
        json!({ "name": null }),
        json!({ "name": "x".repeat(101) }),
        json!({ "key_prefix": "rk_hacked" }),
        json!({ "name": "ok", "settings": { "max_message_bytes": 0 } }),
    ] {
        let response = patch(&app, &user, &project.id, body.clone()).await;
        assert_error(response, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    }
    let shown: Value = app
        .authed(
            Method::GET,
            &format!("/api/v1/projects/{}", project.id),
            &user.token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["project"], project.json);

    // Several refused settings are all named in the one error message.
    let response = patch(
        &app,
        &user,
        &project.id,
        json!({ "settings": { "max_connections": 0, "allowed_origins": ["nope"] } }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("max_connections"), "{message}");
    assert!(message.contains("allowed_origins"), "{message}");
}

#[tokio::test]
async fn operator_limits_bound_project_settings() {
    let app = spawn_app_with(&["--max-message-bytes", "100", "--max-connections", "3"]).await;
    let user = app.signup().await;
    let project = app.create_project(&user, "p").await;
    assert_eq!(project.json["settings"]["max_message_bytes"], 100);
    assert_eq!(project.json["settings"]["max_connections"], 3);
    let response = patch(
        &app,
        &user,
        &project.id,
        json!({ "settings": { "max_message_bytes": 101 } }),
    )
    .await;
    assert_error(response, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
}

#[tokio::test]
async fn regenerating_the_key_kills_the_old_one() {
    let app = spawn_app().await;
    let user = app.signup().await;
    let project = app.create_project(&user, "p").await;
    let other = app.create_project(&user, "other").await;
    let response = app
        .authed(
            Method::POST,
            &format!("/api/v1/projects/{}/regenerate-key", project.id),
            &user.token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let new_key = body["api_key"].as_str().unwrap();
    assert_ne!(new_key, project.api_key);
    assert_eq!(body["project"]["key_prefix"], &new_key[..11]);
    assert_eq!(body["project"]["id"], project.id.as_str());

    assert_error(
        app.publish(&project.api_key, "hi").await,
        StatusCode::UNAUTHORIZED,
        "INVALID_API_KEY",
    )
    .await;
    assert_eq!(
        app.publish(new_key, "hi").await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.publish(&other.api_key, "hi").await.status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn deleting_a_project_removes_it_and_its_key() {
    let app = spawn_app().await;
    let user = app.signup().await;
    let project = app.create_project(&user, "p").await;
    let path = format!("/api/v1/projects/{}", project.id);
    let response = app
        .authed(Method::DELETE, &path, &user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.authed(Method::GET, &path, &user.token)
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    assert_error(
        app.authed(Method::DELETE, &path, &user.token)
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    assert_error(
        app.publish(&project.api_key, "hi").await,
        StatusCode::UNAUTHORIZED,
        "INVALID_API_KEY",
    )
    .await;
    let list: Value = app.get_json("/api/v1/projects", &user.token).await;
    assert_eq!(list["projects"], json!([]));
}

#[tokio::test]
async fn stats_have_the_four_counters() {
    let app = spawn_app().await;
    let user = app.signup().await;
    let project = app.create_project(&user, "p").await;
    let response = app
        .authed(
            Method::GET,
            &format!("/api/v1/projects/{}/stats", project.id),
            &user.token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let stats: Value = response.json().await.unwrap();
    let object = stats.as_object().unwrap();
    assert_eq!(object.len(), 4);
    for field in [
        "connections",
        "messages_received",
        "messages_delivered",
        "messages_rejected",
    ] {
        assert!(stats[field].is_u64(), "{field}: {stats}");
    }
}

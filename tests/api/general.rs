//! Cross-cutting behaviour: unknown routes, methods, body size, probes and metrics.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let app = spawn_app().await;
    for path in [
        "/api/v1/nope",
        "/api/v2/projects",
        "/api",
        "/api/v1/projects/x/y/z",
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_error(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    }
    let response = app
        .client
        .delete(app.url("/api/v1/signup"))
        .send()
        .await
        .unwrap();
    assert_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    )
    .await;
}

#[tokio::test]
async fn a_browser_gets_an_html_page_for_an_unknown_page_but_json_under_the_api() {
    let app = spawn_app().await;
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let response = app
        .client
        .get(app.url("/no-such-page"))
        .header("accept", browser)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.unwrap();
    assert!(page.contains("Not found"), "{page}");

    let response = app
        .client
        .get(app.url("/api/v1/nope"))
        .header("accept", browser)
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

#[tokio::test]
async fn bodies_over_one_mebibyte_are_refused() {
    let app = spawn_app().await;
    let body = json!({ "email": unique_email(), "password": "x".repeat(1024 * 1024) });
    let response = app.post_json("/api/v1/signup", &body).await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;

    // Also without a Content-Length (chunked upload).
    let user = app.signup().await;
    let project = app.create_project(&user, "p").await;
    let response = app
        .client
        .post(app.url("/api/v1/messages"))
        .header("X-API-Key", &project.api_key)
        .header("content-type", "application/json")
        .body(chunked_body("{\"message\": \"", 1024 * 1024, "\"}"))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
}

/// A body streamed in chunks, without a Content-Length: `prefix`, `filler` bytes of
/// `a`, then `suffix`.
fn chunked_body(prefix: &str, filler: usize, suffix: &str) -> reqwest::Body {
    let chunks: Vec<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>> = [
        prefix.as_bytes().to_vec(),
        vec![b'a'; filler],
        suffix.as_bytes().to_vec(),
    ]
    .into_iter()
    .map(|chunk| Ok(hyper::body::Frame::data(bytes::Bytes::from(chunk))))
    .collect();
    reqwest::Body::wrap(http_body_util::StreamBody::new(futures_util::stream::iter(
        chunks,
    )))
}

#[tokio::test]
async fn a_chunked_body_over_one_mebibyte_is_too_large_before_credentials_are_checked() {
    let app = spawn_app().await;
    // No session, no API key: the size is judged first, as for a declared length.
    for path in ["/api/v1/projects", "/api/v1/messages", "/api/v1/login"] {
        let response = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(chunked_body("{\"name\": \"", 1024 * 1024, "\"}"))
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
    }
    // A chunked body within the limit is read as usual.
    let user = app.signup().await;
    let response = app
        .authed(Method::POST, "/api/v1/projects", &user.token)
        .header("content-type", "application/json")
        .body(chunked_body("{\"name\": \"", 100, "\"}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["project"]["name"], "a".repeat(100));
    let response = app
        .client
        .post(app.url("/api/v1/projects"))
        .header("content-type", "application/json")
        .body(chunked_body("{\"name\": \"", 10, "\"}"))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").await;
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_refused_on_every_endpoint_whatever_its_type() {
    let app = spawn_app().await;
    let user = app.signup().await;
    let project = app.create_project(&user, "p").await;
    let big = format!("{{\"a\":\"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let id = &project.id;
    let endpoints = [
        (Method::GET, "/api/v1/me".to_owned()),
        (Method::POST, "/api/v1/logout".to_owned()),
        (
            Method::POST,
            format!("/api/v1/projects/{id}/regenerate-key"),
        ),
        (Method::GET, format!("/api/v1/projects/{id}/stats")),
        (Method::DELETE, format!("/api/v1/projects/{id}")),
    ];
    for (method, path) in endpoints {
        let response = app
            .authed(method.clone(), &path, &user.token)
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
    }
    // Refused for its size before its content type is looked at.
    let response = app
        .client
        .post(app.url("/api/v1/signup"))
        .header("content-type", "text/plain")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
    // Nothing happened: the session and the key are what they were.
    let me = app
        .authed(Method::GET, "/api/v1/me", &user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(
        app.publish(&project.api_key, "still here").await.status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn endpoints_without_a_body_refuse_fields_and_accept_nothing_or_an_empty_object() {
    let app = spawn_app().await;
    let user = app.signup().await;
    let project = app.create_project(&user, "p").await;
    let id = &project.id;
    let endpoints = [
        (
            Method::POST,
            format!("/api/v1/projects/{id}/regenerate-key"),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/api/v1/logout".to_owned(),
            StatusCode::NO_CONTENT,
        ),
    ];
    for (method, path, success) in endpoints {
        for wrong in [r#"{"x":1}"#, "[]", "not json", r#"{"name":"n"}"#] {
            let response = app
                .authed(method.clone(), &path, &user.token)
                .header("content-type", "application/json")
                .body(wrong)
                .send()
                .await
                .unwrap();
            assert_error(response, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
        }
        let response = app
            .authed(method.clone(), &path, &user.token)
            .header("content-type", "application/json")
            .body(" {} ")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), success, "{path} with {{}}");
    }
    // Without a body at all (the usual case), on a new session.
    let token = app.login(&user).await;
    let response = app
        .authed(Method::DELETE, &format!("/api/v1/projects/{id}"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn probes_report_health_and_readiness() {
    let app = spawn_app().await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    // With the database gone, the process is alive but not ready.
    app.state.store.close().await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_error(ready, StatusCode::SERVICE_UNAVAILABLE, "NOT_READY").await;
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
}

#[tokio::test]
async fn internal_errors_are_opaque() {
    let app = spawn_app().await;
    let user = app.signup().await;
    app.state.store.close().await;
    let response = app
        .authed(reqwest::Method::GET, "/api/v1/me", &user.token)
        .send()
        .await
        .unwrap();
    let error = assert_error(response, StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL").await;
    assert_eq!(
        error,
        json!({ "code": "INTERNAL", "message": "internal error" })
    );
    let _: Value = error;
}

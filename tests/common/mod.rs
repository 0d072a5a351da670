//! Test harness: each test gets its own server on port 0 with its own temporary SQLite
//! database, served in-process, plus named helpers for the common steps.
#![allow(dead_code)] // each test binary uses a different subset

use clap::Parser;
use reqwest::{Response, StatusCode};
use roomcast::app::{App, AppState};
use roomcast::config::Config;
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// A running server; stops when dropped.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    /// Client without a cookie store (sessions go in `Authorization`).
    pub client: reqwest::Client,
    /// The app's state, to reach the store and realtime side directly.
    pub state: AppState,
    _shutdown: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

/// A signed-up user.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub password: String,
    pub token: String,
}

/// A created project.
#[derive(Clone, Debug)]
pub struct TestProject {
    pub id: String,
    pub api_key: String,
    pub json: Value,
}

pub const PASSWORD: &str = "correct horse battery";

/// A server with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// A server with extra command-line flags, e.g. `&["--trust-proxy"]`.
///
/// The database is a fresh SQLite file, or the PostgreSQL database named by
/// `ROOMCAST_TEST_API_POSTGRES_URL` when set (tests only ever touch their own unique
/// accounts, so they can share it; failed logins are kept there for 15 minutes, so a
/// test that locks an IP uses addresses of its own, and loopback's are cleared).
pub async fn spawn_app_with(flags: &[&str]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = std::env::var("ROOMCAST_TEST_API_POSTGRES_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("roomcast.db").display()));
    let mut args = vec!["roomcast", "--bind", "127.0.0.1:0", "--database-url", &url];
    args.extend_from_slice(flags);
    let config = Config::parse_from(args);
    let app = App::build(config).await.expect("app builds");
    let state = app.state().clone();
    if let roomcast::store::Store::Postgres(pool) = &state.store {
        // Every test logs in from loopback, and a shared database keeps failed logins
        // for 15 minutes: without this, reruns of the suite add up to an IP lockout.
        // Tests that lock an IP use addresses of their own.
        sqlx::query("DELETE FROM login_failures WHERE subject IN ('ip:127.0.0.1', 'ip:::1')")
            .execute(pool)
            .await
            .expect("clearing loopback's failed logins");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::new(),
        state,
        _shutdown: shutdown,
        _dir: dir,
    }
}

/// A fresh unique email.
pub fn unique_email() -> String {
    format!("user-{}@example.com", uuid::Uuid::new_v4().simple())
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// POSTs a JSON body without a session.
    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// A request with the user's Bearer token.
    pub fn authed(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    /// GETs `path` with the user's token and reads the JSON body (of any status).
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        self.authed(reqwest::Method::GET, path, token)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    pub async fn signup_raw(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/api/v1/signup",
            &json!({ "email": email, "password": password }),
        )
        .await
    }

    pub async fn login_raw(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/api/v1/login",
            &json!({ "email": email, "password": password }),
        )
        .await
    }

    /// Signs a new user up and returns it.
    pub async fn signup(&self) -> TestUser {
        let email = unique_email();
        let response = self.signup_raw(&email, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.expect("json");
        TestUser {
            id: body["user"]["id"].as_str().expect("id").to_owned(),
            email,
            password: PASSWORD.to_owned(),
            token: body["token"].as_str().expect("token").to_owned(),
        }
    }

    /// Logs in and returns the new session token.
    pub async fn login(&self, user: &TestUser) -> String {
        let response = self.login_raw(&user.email, &user.password).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("json");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Creates a project for `user`.
    pub async fn create_project(&self, user: &TestUser, name: &str) -> TestProject {
        let response = self
            .authed(reqwest::Method::POST, "/api/v1/projects", &user.token)
            .json(&json!({ "name": name }))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.expect("json");
        TestProject {
            id: body["project"]["id"].as_str().expect("id").to_owned(),
            api_key: body["api_key"].as_str().expect("api_key").to_owned(),
            json: body["project"].clone(),
        }
    }

    /// Publishes through the REST API with an API key.
    pub async fn publish(&self, api_key: &str, message: &str) -> Response {
        self.client
            .post(self.url("/api/v1/messages"))
            .header("X-API-Key", api_key)
            .json(&json!({ "message": message }))
            .send()
            .await
            .expect("request")
    }
}

/// Asserts the SPEC error shape, status and code; returns the error object.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "status for expected {code}");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    assert_eq!(content_type.as_deref(), Some("application/json"));
    if status == StatusCode::UNAUTHORIZED {
        let challenge = response.headers().get("www-authenticate");
        let scheme = if code.starts_with("API_KEY") || code == "INVALID_API_KEY" {
            "ApiKey "
        } else {
            "Bearer "
        };
        assert!(
            challenge.is_some_and(|c| c.as_bytes().starts_with(scheme.as_bytes())),
            "WWW-Authenticate of a 401 {code}: {challenge:?}"
        );
    }
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "body: {body}"
    );
    body["error"].clone()
}

/// Reads a spawned `roomcast` binary's stdout up to its "listening on http://HOST:PORT"
/// line and returns `HOST:PORT`; stdout is then drained on a thread, so the server never
/// blocks on a full pipe. The binary must have been spawned with `Stdio::piped()` stdout.
pub fn listening_address(server: &mut std::process::Child) -> String {
    use std::io::{BufRead, BufReader};
    let mut lines = BufReader::new(server.stdout.take().expect("stdout piped")).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .expect("read stdout");
        if let Some(address) = line.strip_prefix("listening on http://") {
            break address.to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    address
}

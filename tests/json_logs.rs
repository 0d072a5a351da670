//! SPEC §1 logging, on the real binary: with `--log-format json` every line it writes to
//! stdout is a JSON object (the bound address is the `url` of the `listening` event), and
//! no line ever holds a password, a session token, an API key or a message body, even at
//! `debug` level.

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[tokio::test]
async fn json_logs_are_json_lines_and_hold_no_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = format!("sqlite://{}/db.sqlite", dir.path().display());
    let mut server = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["--bind", "127.0.0.1:0", "--database-url", &database_url])
        .args(["--log-format", "json"])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn roomcast");

    // Every stdout line goes to `lines`; the `listening` event's URL comes out first.
    let (url_tx, url_rx) = mpsc::channel();
    let stdout = BufReader::new(server.stdout.take().expect("stdout"));
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in stdout.lines() {
            let line = line.expect("read stdout");
            let event: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
            if event["message"] == "listening" {
                let _ = url_tx.send(event["url"].as_str().expect("url").to_owned());
            }
            lines.push(line);
        }
        lines
    });
    let stderr = BufReader::new(server.stderr.take().expect("stderr"));
    let stderr_reader =
        std::thread::spawn(move || stderr.lines().map_while(Result::ok).collect::<Vec<_>>());
    let base = tokio::task::spawn_blocking(move || url_rx.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("a `listening` event with the URL");

    // Traffic that carries every kind of secret.
    let client = Client::new();
    let password = "a-password-only-the-user-knows";
    let email = "json-logs@example.com";
    let signup: Value = client
        .post(format!("{base}/api/v1/signup"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = signup["token"].as_str().expect("token").to_owned();
    let wrong = client
        .post(format!("{base}/api/v1/login"))
        .json(&json!({ "email": email, "password": "a-wrong-password-guess" }))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let created: Value = client
        .post(format!("{base}/api/v1/projects"))
        .bearer_auth(&token)
        .json(&json!({ "name": "logged" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let api_key = created["api_key"].as_str().expect("api_key").to_owned();
    let body = "a-message-body-nobody-else-should-read";
    let published = client
        .post(format!("{base}/api/v1/messages"))
        .header("X-API-Key", &api_key)
        .json(&json!({ "message": body }))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), StatusCode::ACCEPTED);
    let bad_key = client
        .post(format!("{base}/api/v1/messages"))
        .header("X-API-Key", "rk_a-key-that-does-not-exist")
        .json(&json!({ "message": body }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_key.status(), StatusCode::UNAUTHORIZED);

    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0));

    let stdout_lines = reader.join().expect("every stdout line is JSON");
    let stderr_lines = stderr_reader.join().unwrap();
    assert!(
        stdout_lines.len() > 5,
        "a debug-level run logs its requests: {stdout_lines:?}"
    );
    let secrets = [
        password,
        "a-wrong-password-guess",
        token.as_str(),
        api_key.as_str(),
        "rk_a-key-that-does-not-exist",
        body,
    ];
    for line in stdout_lines.iter().chain(&stderr_lines) {
        for secret in secrets {
            assert!(!line.contains(secret), "a log line holds a secret: {line}");
        }
    }
}

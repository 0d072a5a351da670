//! Crash safety (issue 3): the real binary is SIGKILLed in the middle of a stream of
//! signups, project creations and key regenerations; restarted on the same SQLite file,
//! every acknowledged write is there, the database passes `PRAGMA integrity_check`, and
//! a SIGTERM then stops the server cleanly with exit status 0. A clean restart keeps a
//! project's message counters (SPEC §2 stats), and no restart, even after a SIGKILL,
//! lifts a login lockout (SPEC §2 throttle) before its window passes.

mod common;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PASSWORD: &str = "crash test password";

/// Starts `roomcast` on port 0 and returns it with its base URL, read from the line it
/// prints once listening.
fn start(database_url: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["--bind", "127.0.0.1:0", "--database-url", database_url])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn roomcast");
    let address = format!("http://{}", common::listening_address(&mut child));
    (child, address)
}

/// What the server acknowledged for one account.
#[derive(Clone, Debug, Default)]
struct Acked {
    email: String,
    token: String,
    /// (project id, last acknowledged key, a regeneration was in flight when killed)
    projects: Vec<(String, String, bool)>,
}

async fn stream_writes(client: Client, base: String, worker: usize, acked: Arc<Mutex<Vec<Acked>>>) {
    for round in 0.. {
        let email = format!("crash-{worker}-{round}@example.com");
        let Ok(response) = client
            .post(format!("{base}/api/v1/signup"))
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
        else {
            return;
        };
        if response.status() != StatusCode::CREATED {
            return;
        }
        let Ok(body) = response.json::<Value>().await else {
            return;
        };
        let token = body["token"].as_str().unwrap_or_default().to_owned();
        let slot = {
            let mut acked = acked.lock().unwrap();
            acked.push(Acked {
                email,
                token: token.clone(),
                projects: Vec::new(),
            });
            acked.len() - 1
        };
        for p in 0..2 {
            let create = client
                .post(format!("{base}/api/v1/projects"))
                .bearer_auth(&token)
                .json(&json!({ "name": format!("p{p}") }))
                .send()
                .await;
            let Ok(response) = create else { return };
            let Ok(body) = response.json::<Value>().await else {
                return;
            };
            let id = body["project"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let key = body["api_key"].as_str().unwrap_or_default().to_owned();
            let index = {
                let mut acked = acked.lock().unwrap();
                acked[slot].projects.push((id.clone(), key, false));
                acked[slot].projects.len() - 1
            };
            for _ in 0..3 {
                acked.lock().unwrap()[slot].projects[index].2 = true;
                let regenerate = client
                    .post(format!("{base}/api/v1/projects/{id}/regenerate-key"))
                    .bearer_auth(&token)
                    .send()
                    .await;
                let Ok(response) = regenerate else { return };
                let Ok(body) = response.json::<Value>().await else {
                    return;
                };
                let Some(key) = body["api_key"].as_str() else {
                    return;
                };
                let mut acked = acked.lock().unwrap();
                acked[slot].projects[index].1 = key.to_owned();
                acked[slot].projects[index].2 = false;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let url = format!("sqlite://{}", path.display());
    let client = Client::new();

    let (mut server, base) = start(&url);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            tokio::spawn(stream_writes(
                client.clone(),
                base.clone(),
                worker,
                acked.clone(),
            ))
        })
        .collect();
    // Kill once a fair amount of work was acknowledged, while writes are in flight.
    loop {
        let projects: usize = acked
            .lock()
            .unwrap()
            .iter()
            .map(|a: &Acked| a.projects.len())
            .sum();
        if projects >= 12 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill().expect("SIGKILL");
    server.wait().expect("reaped");
    for worker in workers {
        worker.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let (server, base) = start(&url);
    let mut checked_keys = 0;
    for account in &acked {
        let login = client
            .post(format!("{base}/api/v1/login"))
            .json(&json!({ "email": account.email, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), StatusCode::OK, "{}", account.email);
        let list: Value = client
            .get(format!("{base}/api/v1/projects"))
            .bearer_auth(&account.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let listed = list["projects"]
            .as_array()
            .expect("session survived the crash");
        for (id, key, regenerating) in &account.projects {
            let project = listed
                .iter()
                .find(|p| p["id"] == id.as_str())
                .unwrap_or_else(|| panic!("project {id} lost"));
            let published = client
                .post(format!("{base}/api/v1/messages"))
                .header("X-API-Key", key)
                .json(&json!({ "message": "after the crash" }))
                .send()
                .await
                .unwrap();
            if project["key_prefix"] == key[..11] {
                assert_eq!(published.status(), StatusCode::ACCEPTED);
                checked_keys += 1;
            } else {
                // Only an unacknowledged regeneration may have replaced the acknowledged key.
                assert!(regenerating, "acknowledged key of {id} was lost");
                assert_eq!(published.status(), StatusCode::UNAUTHORIZED);
            }
        }
    }
    assert!(checked_keys >= 8, "only {checked_keys} keys checked");

    // SIGTERM: clean stop with status 0.
    stop(server).await;

    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let (check,): (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(check, "ok");
}

/// Posts `body` to `/api/v1/messages` with `key`; returns the status.
async fn publish(client: &Client, base: &str, key: &str, body: &Value) -> StatusCode {
    client
        .post(format!("{base}/api/v1/messages"))
        .header("X-API-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
        .status()
}

/// Sends `request` with the JSON `body` and reads the JSON answer.
async fn post_json(request: reqwest::RequestBuilder, body: Value) -> Value {
    let response = request.json(&body).send().await.unwrap();
    response.json().await.unwrap()
}

/// Stops `server` with SIGTERM and checks it exits with status 0.
async fn stop(mut server: Child) {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_counters_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("stats.db").display());
    let client = Client::new();
    let (server, base) = start(&url);
    let signup = post_json(
        client.post(format!("{base}/api/v1/signup")),
        json!({ "email": "stats@example.com", "password": PASSWORD }),
    )
    .await;
    let token = signup["token"].as_str().unwrap().to_owned();
    let created = post_json(
        client
            .post(format!("{base}/api/v1/projects"))
            .bearer_auth(&token),
        json!({ "name": "counted" }),
    )
    .await;
    let key = created["api_key"].as_str().unwrap().to_owned();
    let stats_path = format!(
        "/api/v1/projects/{}/stats",
        created["project"]["id"].as_str().unwrap()
    );
    let read_stats = |base: &str| {
        let request = client
            .get(format!("{base}{stats_path}"))
            .bearer_auth(&token);
        async move {
            let stats: Value = request.send().await.unwrap().json().await.unwrap();
            stats
        }
    };

    for _ in 0..3 {
        let accepted = publish(&client, &base, &key, &json!({ "message": "hi" })).await;
        assert_eq!(accepted, StatusCode::ACCEPTED);
    }
    let malformed = publish(&client, &base, &key, &json!({ "message": 5 })).await;
    assert_eq!(malformed, StatusCode::BAD_REQUEST);
    let before = read_stats(&base).await;
    assert_eq!(before["messages_received"], 4, "{before}");
    assert_eq!(before["messages_rejected"], 1, "{before}");
    // Stopped at once, before the periodic flush: the shutdown stores the counters.
    stop(server).await;

    let (server, base) = start(&url);
    let after = read_stats(&base).await;
    assert_eq!(after, before, "the counters outlive the process");
    let accepted = publish(&client, &base, &key, &json!({ "message": "again" })).await;
    assert_eq!(accepted, StatusCode::ACCEPTED);
    let more = read_stats(&base).await;
    assert_eq!(more["messages_received"], 5, "{more}");
    assert_eq!(more["messages_rejected"], 1, "{more}");
    stop(server).await;
}

/// `POST /api/v1/login` with `password`: the status and the `Retry-After` header.
async fn login(
    client: &Client,
    base: &str,
    email: &str,
    password: &str,
) -> (StatusCode, Option<u64>) {
    let response = client
        .post(format!("{base}/api/v1/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok()?.parse().ok());
    (response.status(), retry_after)
}

/// `count` logins with a wrong password, each refused as wrong (not yet throttled).
async fn fail_logins(client: &Client, base: &str, email: &str, count: usize) {
    for _ in 0..count {
        let (status, _) = login(client, base, email, "wrong password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_lockout_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("throttle.db").display());
    let client = Client::new();
    let (mut server, base) = start(&url);
    let (locked, counted) = ("locked@example.com", "counted@example.com");
    for email in [locked, counted] {
        let signup = client
            .post(format!("{base}/api/v1/signup"))
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(signup.status(), StatusCode::CREATED);
    }
    fail_logins(&client, &base, locked, 10).await;
    assert_eq!(
        login(&client, &base, locked, PASSWORD).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Nine failures and a success, which is not counted as a tenth.
    fail_logins(&client, &base, counted, 9).await;
    assert_eq!(
        login(&client, &base, counted, PASSWORD).await.0,
        StatusCode::OK
    );

    // Killed without a chance to flush anything.
    server.kill().unwrap();
    server.wait().unwrap();
    let (server, base) = start(&url);
    let (status, retry_after) = login(&client, &base, locked, PASSWORD).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "still locked after the restart"
    );
    let retry_after = retry_after.expect("a Retry-After header");
    assert!(
        retry_after > 13 * 60 && retry_after <= 15 * 60,
        "the window started before the restart: {retry_after}"
    );
    // The other account kept its nine failures and not its success: one more locks it.
    assert_eq!(
        login(&client, &base, counted, "wrong password").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&client, &base, counted, PASSWORD).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    stop(server).await;
}

//! The real binary as a process (its own allocator, limits and descriptor table, which an
//! in-process server would not show): started under a small soft open-file limit (a
//! shell's `ulimit -n`), it still takes more WebSockets than that limit, as it lifts its
//! soft limit to the hard one at start; it grows its descriptor table at start, not under
//! a connection storm; bursts of logins leave no memory behind; a closed stdout does not
//! stop it; and its boolean settings take 1/yes/on from the environment.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The soft limit the server is started with: far below the connections opened.
const SOFT_LIMIT: u64 = 64;
/// WebSockets held open at once.
const CONNECTIONS: usize = 200;

/// Opens one Engine.IO WebSocket and returns it once the server's open packet arrived.
async fn open_websocket(address: &str) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let request = format!(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {address}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.windows(7).any(|w| w == b"0{\"sid\"") {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if read == 0 {
            return Err(format!(
                "closed before the open packet: {:?}",
                String::from_utf8_lossy(&answer)
            ));
        }
        answer.extend_from_slice(&chunk[..read]);
    }
    if !answer.starts_with(b"HTTP/1.1 101") {
        return Err(format!("not a 101: {:?}", String::from_utf8_lossy(&answer)));
    }
    Ok(stream)
}

/// The real binary with its own database in `dir`, listening on `bind`, logging warnings
/// and up to stdout (piped).
fn server_command(bind: &str, dir: &tempfile::TempDir) -> Command {
    let database_url = format!("sqlite://{}/db.sqlite", dir.path().display());
    let mut command = Command::new(env!("CARGO_BIN_EXE_roomcast"));
    command
        .args(["--bind", bind, "--database-url", &database_url])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

/// Starts the real binary with the soft open-file limit `soft_limit` (the hard limit
/// unchanged); returns it (killed on drop) and the address it listens on.
fn start_server(soft_limit: u64) -> (KillOnDrop, String) {
    let (_, hard) = rlimit::Resource::NOFILE.get().expect("read RLIMIT_NOFILE");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = server_command("127.0.0.1:0", &dir);
    // SAFETY: setrlimit is async-signal-safe, and the closure allocates nothing.
    unsafe {
        command.pre_exec(move || rlimit::Resource::NOFILE.set(soft_limit, hard));
    }
    let mut server = KillOnDrop {
        process: command.spawn().expect("spawn roomcast"),
        _database_dir: dir,
    };
    let address = common::listening_address(&mut server.process);
    (server, address)
}

#[tokio::test]
async fn a_small_soft_open_file_limit_does_not_cap_connections() {
    let (_, hard) = rlimit::Resource::NOFILE.get().expect("read RLIMIT_NOFILE");
    assert!(
        hard >= 4 * CONNECTIONS as u64,
        "this machine's hard open-file limit ({hard}) is too low for the test"
    );
    let (_server, address) = start_server(SOFT_LIMIT);

    let mut open = Vec::with_capacity(CONNECTIONS);
    for n in 0..CONNECTIONS {
        match tokio::time::timeout(Duration::from_secs(5), open_websocket(&address)).await {
            Ok(Ok(stream)) => open.push(stream),
            Ok(Err(error)) => panic!("WebSocket {n} of {CONNECTIONS} failed: {error}"),
            Err(_) => panic!("WebSocket {n} of {CONNECTIONS} got no open packet within 5 s"),
        }
    }
    assert_eq!(open.len(), CONNECTIONS);
}

/// The descriptor-table slots the server sets aside at start, at most (its
/// `RESERVED_DESCRIPTORS`).
const RESERVED_DESCRIPTORS: u64 = 65_536;

/// A node that has just started already has a descriptor table for as many connections
/// as its open-file limit allows (up to 65,536), so a connection storm never waits on
/// the kernel growing it (an RCU grace period per doubling, which stalled a fresh node
/// for milliseconds at 1k, 2k, 4k and 8k connections). Read from the `FDSize` line of
/// `/proc/<pid>/status`: the table's slots. A latency figure is the benchmark's job.
#[tokio::test]
async fn a_new_server_has_its_descriptor_table_grown() {
    let (_, hard) = rlimit::Resource::NOFILE.get().expect("read RLIMIT_NOFILE");
    let (server, _address) = start_server(SOFT_LIMIT);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.process.id()))
        .expect("read the server's /proc status");
    let slots: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("FDSize:"))
        .expect("an FDSize line")
        .trim()
        .parse()
        .expect("FDSize is a number");
    let wanted = hard.min(RESERVED_DESCRIPTORS);
    assert!(
        slots >= wanted,
        "the server's descriptor table has {slots} slots at start; wanted {wanted} (the hard limit, at most {RESERVED_DESCRIPTORS})"
    );
}

/// Kills the server when the test ends, passed or failed, then removes its database's
/// directory.
struct KillOnDrop {
    process: std::process::Child,
    _database_dir: tempfile::TempDir,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The server's resident memory, in KiB (`VmRSS` in `/proc/<pid>/status`).
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("read the server's /proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .expect("a VmRSS line in kB")
}

/// Memory an idle server may keep after the login bursts below, over what it held before.
const KEPT_AFTER_LOGINS_KIB: u64 = 32 * 1024;

/// Each Argon2id hash takes a 19 MiB block on a blocking-pool thread. After bursts of
/// parallel logins the idle server holds about what it held before them: with glibc's
/// malloc, each thread that had hashed kept its block (285 MB after 8 parallel logins).
#[tokio::test]
async fn bursts_of_logins_leave_no_memory_behind() {
    let (server, address) = start_server(SOFT_LIMIT);
    let base = format!("http://{address}");
    let client = reqwest::Client::new();
    let credentials =
        serde_json::json!({"email": "burst@example.com", "password": "correct horse battery"});
    let signup = client
        .post(format!("{base}/api/v1/signup"))
        .json(&credentials)
        .send()
        .await
        .expect("sign up");
    assert_eq!(signup.status(), reqwest::StatusCode::CREATED);
    let before = resident_kib(server.process.id());
    for _ in 0..3 {
        let logins = (0..8).map(|_| {
            client
                .post(format!("{base}/api/v1/login"))
                .json(&credentials)
                .send()
        });
        for answer in futures_util::future::join_all(logins).await {
            assert_eq!(answer.expect("log in").status(), reqwest::StatusCode::OK);
        }
    }
    let after = resident_kib(server.process.id());
    assert!(
        after <= before + KEPT_AFTER_LOGINS_KIB,
        "the idle server holds {after} KiB after 24 logins, {before} KiB before them"
    );
}

/// Whether `GET /healthz` on `address` answers 200.
async fn healthy(address: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(address).await else {
        return false;
    };
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    answer.starts_with(b"HTTP/1.1 200")
}

#[tokio::test]
async fn a_closed_stdout_does_not_stop_the_server_and_logs_to_a_pipe_are_plain() {
    // A pipe read by `head -1` (or nothing at all) is closed by its reader before the
    // "listening on" line: the server must serve on regardless.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let address = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = server_command(&address, &dir);
    command.env("RUST_LOG", "info").stderr(Stdio::null());
    let mut server = KillOnDrop {
        process: command.spawn().expect("spawn roomcast"),
        _database_dir: dir,
    };
    {
        use std::io::{BufRead, BufReader};
        let mut first = String::new();
        BufReader::new(server.process.stdout.take().expect("stdout piped"))
            .read_line(&mut first)
            .expect("read the first log line");
        assert!(!first.is_empty(), "the server wrote nothing");
        assert!(
            !first.contains('\u{1b}'),
            "colour codes in a pipe: {first:?}"
        );
        // The reader goes away here, with the rest of the log unread.
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !healthy(&address).await {
        if let Some(status) = server.process.try_wait().expect("poll the server") {
            panic!("the server exited with {status} once its stdout was closed");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        server.process.try_wait().expect("poll").is_none(),
        "the server is still running"
    );
}

#[tokio::test]
async fn boolean_settings_take_the_usual_spellings_from_the_environment() {
    // Containers and systemd units often say 1 or yes; clap alone took only true/false.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = server_command("127.0.0.1:0", &dir);
    command
        .env("ROOMCAST_SECURE_COOKIES", "1")
        .env("ROOMCAST_TRUST_PROXY", "yes");
    let mut server = KillOnDrop {
        process: command.spawn().expect("spawn roomcast"),
        _database_dir: dir,
    };
    let address = common::listening_address(&mut server.process);
    let body = r#"{"email":"env@example.com","password":"correct horse battery"}"#;
    let request = format!(
        "POST /api/v1/signup HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(&address).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let session_cookie = answer
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: roomcast_session=")
        })
        .expect("session cookie");
    assert!(session_cookie.contains("; Secure"), "{session_cookie}");
    drop(server);

    // Anything else is refused at start, naming the setting, rather than read as off.
    let dir = tempfile::tempdir().expect("temp dir");
    let output = server_command("127.0.0.1:0", &dir)
        .env("ROOMCAST_SECURE_COOKIES", "maybe")
        .stderr(Stdio::piped())
        .output()
        .expect("run roomcast");
    assert!(
        !output.status.success(),
        "started with ROOMCAST_SECURE_COOKIES=maybe"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("secure-cookies"), "{stderr}");
}

//! The storage contract: the same checks against every database backend. SQLite always
//! runs; PostgreSQL runs when `ROOMCAST_TEST_POSTGRES_URL` is set (CI starts one), and
//! says loudly when it was skipped.

use roomcast::platform::types::ProjectId;
use roomcast::store::{NewProject, NewUser, SettingsOverrides, Store, StoreError, UserId};
use std::io::Write;

fn hash(seed: &str) -> [u8; 32] {
    roomcast::platform::secrets::sha256(&format!("{seed}-{}", uuid::Uuid::new_v4()))
}

async fn new_user(store: &Store) -> (UserId, String) {
    let id = UserId::generate();
    let email = format!("contract-{}@example.com", uuid::Uuid::new_v4().simple());
    let user = NewUser {
        id: &id,
        email: &email,
        password_hash: "$argon2id$stub",
        created_at_ms: 1_000,
    };
    store.insert_user(&user).await.expect("insert user");
    (id, email)
}

async fn new_project(
    store: &Store,
    owner: &UserId,
    name: &str,
    created_at_ms: i64,
) -> (ProjectId, [u8; 32]) {
    let id = ProjectId(uuid::Uuid::new_v4().to_string());
    let key_hash = hash(name);
    let project = NewProject {
        id: &id,
        name,
        key_hash: &key_hash,
        key_prefix: "rk_abcdefgh",
        created_at_ms,
    };
    store
        .insert_project(owner, &project)
        .await
        .expect("insert project");
    (id, key_hash)
}

async fn users_and_sessions(store: &Store) {
    let (id, email) = new_user(store).await;
    let found = store
        .find_user_by_email(&email.to_uppercase())
        .await
        .unwrap()
        .expect("found by any case");
    assert_eq!(found.id, id);
    assert_eq!(found.email, email);
    assert_eq!(found.password_hash, "$argon2id$stub");
    assert!(store
        .find_user_by_email("nobody@example.com")
        .await
        .unwrap()
        .is_none());

    let other = UserId::generate();
    let duplicate = NewUser {
        id: &other,
        email: &email.to_uppercase(),
        password_hash: "x",
        created_at_ms: 1,
    };
    assert!(matches!(
        store.insert_user(&duplicate).await,
        Err(StoreError::Conflict)
    ));

    let token = hash("session");
    store
        .insert_session(&id, &token, 1_000, 2_000)
        .await
        .unwrap();
    assert_eq!(
        store
            .find_session_user(&token, 1_999)
            .await
            .unwrap()
            .map(|u| u.id),
        Some(id.clone())
    );
    assert!(
        store
            .find_session_user(&token, 2_000)
            .await
            .unwrap()
            .is_none(),
        "expired at expires_at"
    );
    assert!(store
        .find_session_user(&hash("other"), 1_500)
        .await
        .unwrap()
        .is_none());
    assert!(
        !store.delete_session(&other, &token).await.unwrap(),
        "another user's session"
    );
    assert!(store.delete_session(&id, &token).await.unwrap());
    assert!(store
        .find_session_user(&token, 1_500)
        .await
        .unwrap()
        .is_none());

    let stale = hash("stale");
    store.insert_session(&id, &stale, 0, 10).await.unwrap();
    assert!(store.delete_expired_sessions(11).await.unwrap() >= 1);
    assert!(store.find_session_user(&stale, 5).await.unwrap().is_none());
}

async fn projects_are_tenant_scoped(store: &Store) {
    let (alice, _) = new_user(store).await;
    let (bob, _) = new_user(store).await;
    let (a1, a1_key) = new_project(store, &alice, "a1", 10).await;
    let (a2, _) = new_project(store, &alice, "a2 ünïcödé", 20).await;
    let (b1, b1_key) = new_project(store, &bob, "b1", 5).await;

    let listed: Vec<ProjectId> = store
        .list_projects(&alice)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(listed, [a1.clone(), a2.clone()]);
    assert!(store.get_project(&alice, &b1).await.unwrap().is_none());
    let a2_record = store
        .get_project(&alice, &a2)
        .await
        .unwrap()
        .expect("own project");
    assert_eq!(a2_record.name, "a2 ünïcödé");
    assert_eq!(a2_record.owner, alice);
    assert_eq!(a2_record.overrides, SettingsOverrides::default());
    assert_eq!(a2_record.created_at_ms, 20);

    let overrides = SettingsOverrides {
        max_message_bytes: Some(10),
        messages_per_second: None,
        project_messages_per_second: Some(u32::MAX),
        max_connections: Some(1),
        allowed_origins: Some(vec![
            "https://example.com".into(),
            "http://localhost:3000".into(),
        ]),
    };
    assert!(!store
        .update_project(&bob, &a1, "stolen", &overrides)
        .await
        .unwrap());
    assert!(store
        .update_project(&alice, &a1, "renamed", &overrides)
        .await
        .unwrap());
    let a1_record = store.get_project(&alice, &a1).await.unwrap().unwrap();
    assert_eq!(
        (a1_record.name.as_str(), &a1_record.overrides),
        ("renamed", &overrides)
    );
    assert!(store
        .update_project(&alice, &a1, "renamed", &SettingsOverrides::default())
        .await
        .unwrap());
    assert_eq!(
        store
            .get_project(&alice, &a1)
            .await
            .unwrap()
            .unwrap()
            .overrides,
        SettingsOverrides::default()
    );

    let by_key = store
        .find_project_by_key_hash(&a1_key)
        .await
        .unwrap()
        .expect("by key");
    assert_eq!(by_key.id, a1);
    let new_key = hash("rotated");
    assert!(!store
        .replace_project_key(&bob, &a1, &new_key, "rk_stolen12")
        .await
        .unwrap());
    assert!(store
        .replace_project_key(&alice, &a1, &new_key, "rk_newnewnn")
        .await
        .unwrap());
    assert!(
        store
            .find_project_by_key_hash(&a1_key)
            .await
            .unwrap()
            .is_none(),
        "old key is dead"
    );
    assert_eq!(
        store
            .find_project_by_key_hash(&new_key)
            .await
            .unwrap()
            .unwrap()
            .key_prefix,
        "rk_newnewnn"
    );
    // Two projects can never share a key.
    assert!(matches!(
        store
            .replace_project_key(&alice, &a2, &b1_key, "rk_dupdupdu")
            .await,
        Err(StoreError::Conflict)
    ));

    assert!(!store.delete_project(&bob, &a1).await.unwrap());
    assert!(store.delete_project(&alice, &a1).await.unwrap());
    assert!(!store.delete_project(&alice, &a1).await.unwrap());
    assert!(store
        .find_project_by_key_hash(&new_key)
        .await
        .unwrap()
        .is_none());
    assert!(
        store.get_project(&bob, &b1).await.unwrap().is_some(),
        "other tenants untouched"
    );
}

async fn message_counters_add_up(store: &Store) {
    let (owner, _) = new_user(store).await;
    let (counted, _) = new_project(store, &owner, "counted", 1).await;
    let (other, _) = new_project(store, &owner, "other", 2).await;
    let (gone, _) = new_project(store, &owner, "gone", 3).await;
    assert!(store.delete_project(&owner, &gone).await.unwrap());
    assert_eq!(
        store.message_counters(&counted).await.unwrap(),
        Some([0, 0, 0]),
        "a new project starts at zero"
    );
    let big = u64::try_from(i64::MAX).unwrap() - 10;
    store
        .add_message_counters(&[(counted.clone(), [3, 30, 1]), (gone.clone(), [5, 5, 5])])
        .await
        .expect("a deleted project is skipped, not an error");
    store
        .add_message_counters(&[(counted.clone(), [2, 20, 0]), (other.clone(), [big, 0, 0])])
        .await
        .unwrap();
    assert_eq!(
        store.message_counters(&counted).await.unwrap(),
        Some([5, 50, 1])
    );
    assert_eq!(
        store.message_counters(&other).await.unwrap(),
        Some([big, 0, 0])
    );
    assert_eq!(store.message_counters(&gone).await.unwrap(), None);
    store.add_message_counters(&[]).await.unwrap();
    // More projects than one statement takes.
    let mut many = Vec::new();
    for n in 0..260 {
        let (id, _) = new_project(store, &owner, &format!("many {n}"), 10 + n).await;
        many.push((id, [n as u64, 1, 0]));
    }
    store.add_message_counters(&many).await.unwrap();
    for (id, [received, ..]) in [&many[0], &many[249], &many[250], &many[259]] {
        assert_eq!(
            store.message_counters(id).await.unwrap(),
            Some([*received, 1, 0])
        );
    }
}

async fn login_failures_expire_and_are_forgiven(store: &Store) {
    const MINUTE: i64 = 60_000;
    // Unique subjects: a shared PostgreSQL database may hold other runs' failures.
    let account = format!("account:{}@example.com", uuid::Uuid::new_v4());
    let ip = format!("ip:2001:db8::{:x}", rand::random::<u16>());
    // This test's failures since `since`.
    let recent = async |since: i64| -> Vec<(String, i64)> {
        let rows = store.recent_login_failures(since).await.unwrap();
        rows.into_iter()
            .filter(|(subject, _)| *subject == account || *subject == ip)
            .collect()
    };
    let now = chrono::Utc::now().timestamp_millis();
    let both = [account.clone(), ip.clone()];
    store
        .record_login_failure("old", &both, now - 20 * MINUTE, now - 60 * MINUTE)
        .await
        .unwrap();
    assert_eq!(recent(now - 60 * MINUTE).await.len(), 2);
    // Each write drops what has left the window.
    store
        .record_login_failure("first", &both, now - 2_000, now - 15 * MINUTE)
        .await
        .unwrap();
    store
        .record_login_failure("second", &both[..1], now - 1_000, now - 15 * MINUTE)
        .await
        .unwrap();
    assert_eq!(
        recent(now - 60 * MINUTE).await,
        vec![
            (account.clone(), now - 2_000),
            (ip.clone(), now - 2_000),
            (account.clone(), now - 1_000),
        ]
        .into_iter()
        .collect::<Vec<_>>(),
        "oldest first; the expired attempt is gone"
    );
    assert_eq!(
        recent(now - 1_500).await,
        vec![(account.clone(), now - 1_000)]
    );
    // A success forgets its own attempt only.
    store.forgive_login_failure("first").await.unwrap();
    store.forgive_login_failure("unknown").await.unwrap();
    assert_eq!(
        recent(now - 60 * MINUTE).await,
        vec![(account.clone(), now - 1_000)]
    );
}

async fn contract(store: &Store) {
    store.migrate().await.expect("migrations apply");
    store.migrate().await.expect("migrations are idempotent");
    store.ping().await.expect("ping");
    users_and_sessions(store).await;
    projects_are_tenant_scoped(store).await;
    message_counters_add_up(store).await;
    login_failures_expire_and_are_forgiven(store).await;
}

#[tokio::test]
async fn sqlite_meets_the_storage_contract() {
    let dir = tempfile::tempdir().unwrap();
    // A folder that does not exist yet: the store creates it.
    let url = format!(
        "sqlite://{}",
        dir.path().join("nested/dir/roomcast.db").display()
    );
    let store = Store::connect(&url).await.expect("connect");
    contract(&store).await;
    let Store::Sqlite(pool) = &store else {
        panic!("expected SQLite")
    };
    let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let (sync,): (i64,) = sqlx::query_as("PRAGMA synchronous")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(sync, 2, "synchronous=FULL");
    let (fk,): (i64,) = sqlx::query_as("PRAGMA foreign_keys")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(fk, 1);
}

#[tokio::test]
async fn postgres_meets_the_storage_contract() {
    let Ok(url) = std::env::var("ROOMCAST_TEST_POSTGRES_URL") else {
        // Written past the test harness's capture so it shows in every run's output.
        let _ = writeln!(
            std::io::stderr(),
            "storage contract: PostgreSQL NOT tested (ROOMCAST_TEST_POSTGRES_URL unset); SQLite only"
        );
        return;
    };
    let store = Store::connect(&url)
        .await
        .expect("connect to ROOMCAST_TEST_POSTGRES_URL");
    assert_eq!(store.backend(), "postgres");
    contract(&store).await;
    let _ = writeln!(std::io::stderr(), "storage contract: PostgreSQL tested");
}

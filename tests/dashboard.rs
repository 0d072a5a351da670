//! The dashboard's pages over real HTTP: forms re-render with inline errors and the typed
//! input, every form is CSRF-checked, logged-out visitors are sent to the log-in form,
//! and the whole create → key → settings → send → regenerate → delete flow works with
//! cookies only.

mod common;

use common::{spawn_app, TestApp, PASSWORD};
use reqwest::header::{HeaderMap, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

/// A cookie-keeping client that does not follow redirects, so tests see each 303.
struct Browser<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    /// Its cookies, which a test may also set by hand (as an attacker could).
    jar: std::sync::Arc<reqwest::cookie::Jar>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The hidden CSRF token of the page's first form that carries one.
    fn csrf(&self) -> String {
        let marker = r#"name="csrf" value=""#;
        let start = self.body.find(marker).expect("page has a csrf field") + marker.len();
        let end = start + self.body[start..].find('"').expect("closing quote");
        self.body[start..end].to_owned()
    }

    /// The text inside the element with this id (first tag only, no nesting).
    fn text_of(&self, id: &str) -> String {
        let marker = format!(r#"id="{id}""#);
        let start = self.body.find(&marker).expect("element present");
        let open_end = start + self.body[start..].find('>').expect("tag end") + 1;
        let close = open_end + self.body[open_end..].find('<').expect("close tag");
        self.body[open_end..close].trim().to_owned()
    }

    /// The `<input>` or `<textarea>` tag (through its `>`) with this id.
    fn control(&self, id: &str) -> String {
        let marker = format!(r#"id="{id}" name="{id}""#);
        let at = self.body.find(&marker).expect("control present");
        let tag_start = self.body[..at].rfind('<').expect("tag start");
        let end = at + self.body[at..].find('>').expect("tag end");
        self.body[tag_start..=end].to_owned()
    }

    /// Asserts that `id` is marked invalid, described by its error, which shows `error`.
    fn assert_invalid(&self, id: &str, error: &str) {
        let control = self.control(id);
        assert!(control.contains(r#"aria-invalid="true""#), "{control}");
        assert!(
            control.contains(&format!(r#"aria-describedby="{id}-error"#)),
            "{control}"
        );
        let message = self.text_of(&format!("{id}-error"));
        assert!(
            message.to_lowercase().contains(&error.to_lowercase()),
            "error of {id}: {message:?}, wanted {error:?}"
        );
    }

    fn assert_valid(&self, id: &str) {
        let control = self.control(id);
        assert!(!control.contains("aria-invalid"), "{control}");
    }
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self { app, client, jar }
    }

    /// Sets a cookie as a `Set-Cookie` from the server would.
    fn set_cookie(&self, set_cookie: &str) {
        let url = self.app.url("/").parse().expect("the app's URL");
        self.jar.add_cookie_str(set_cookie, &url);
    }

    async fn read(response: reqwest::Response) -> Page {
        Page {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.expect("body"),
        }
    }

    async fn get(&self, path: &str) -> Page {
        let response = self
            .client
            .get(self.app.url(path))
            .send()
            .await
            .expect("GET");
        Self::read(response).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let response = self
            .client
            .post(self.app.url(path))
            .form(form)
            .send()
            .await
            .expect("POST");
        Self::read(response).await
    }

    /// Posts `body` as it is, as a URL-encoded form.
    async fn post_raw(&self, path: &str, body: String) -> Page {
        let response = self
            .client
            .post(self.app.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("POST");
        Self::read(response).await
    }

    /// Signs up through the form; returns the email.
    async fn sign_up(&self) -> String {
        let form = self.get("/signup").await;
        let email = common::unique_email();
        let page = self
            .post(
                "/signup",
                &[
                    ("csrf", &form.csrf()),
                    ("email", &email),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        email
    }

    /// Follows the redirect of a POST that made a key to the page that shows it.
    async fn key_page(&self, answer: &Page) -> Page {
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let location = answer.location();
        assert!(location.ends_with("/key"), "{location}");
        let page = self.get(location).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        page
    }

    /// Creates a project through the form; returns (id, api key).
    async fn create_project(&self, name: &str) -> (String, String) {
        let form = self.get("/projects/new").await;
        let created = self
            .post("/projects", &[("csrf", &form.csrf()), ("name", name)])
            .await;
        let page = self.key_page(&created).await;
        let key = page.text_of("api-key");
        let marker = r#"href="/projects/"#;
        let at = page.body.rfind(marker).expect("project link") + marker.len();
        let id = page.body[at..at + 36].to_owned();
        (id, key)
    }
}

#[tokio::test]
async fn logged_out_visitors_are_sent_to_the_log_in_form() {
    let app = spawn_app().await;
    let browser = Browser::new(&app);
    let home = browser.get("/").await;
    assert_eq!(home.status, StatusCode::SEE_OTHER);
    assert_eq!(home.location(), "/login");
    for path in [
        "/projects",
        "/projects/new",
        "/projects/0b6b8c8e-0000-4000-8000-000000000000",
        "/projects/0b6b8c8e-0000-4000-8000-000000000000/key",
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location(), format!("/login?next={path}"), "{path}");
    }
    // A form post without a session also lands on the log-in form.
    let post = browser.post("/projects", &[("name", "x")]).await;
    assert_eq!(post.status, StatusCode::SEE_OTHER);
    assert_eq!(post.location(), "/login");

    let login = browser.get("/login?next=/projects/new").await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.body.contains("<title>Log in · roomcast</title>"));
    assert!(login.body.contains(r#"<label for="email">Email</label>"#));
    assert!(login
        .body
        .contains(r#"<label for="password">Password</label>"#));
    assert!(login.body.contains(r#"name="next" value="/projects/new""#));
    // After logging in, the visitor goes back where they were headed.
    let email = browser.sign_up().await;
    let other = Browser::new(&app);
    let form = other.get("/login").await;
    let page = other
        .post(
            "/login",
            &[
                ("csrf", &form.csrf()),
                ("email", &email),
                ("password", PASSWORD),
                ("next", "/projects/new"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/projects/new");
    // …but never to another site.
    let form = other.get("/login").await;
    assert_eq!(form.status, StatusCode::SEE_OTHER, "already logged in");
    let third = Browser::new(&app);
    let form = third.get("/login").await;
    let page = third
        .post(
            "/login",
            &[
                ("csrf", &form.csrf()),
                ("email", &email),
                ("password", PASSWORD),
                ("next", "//evil.example/"),
            ],
        )
        .await;
    assert_eq!(page.location(), "/projects");
    // Already logged in, `/login?next=` redirects at once: a tab (which browsers drop,
    // making `/<TAB>/evil.example` a link to another site) or any control character
    // sends the visitor to the projects list instead.
    for next in [
        "/%09/evil.example/",
        "/%0A/evil.example/",
        "/%01",
        "/%00",
        "/%7F",
        "/%5C/evil.example",
    ] {
        let page = third.get(&format!("/login?next={next}")).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{next}");
        assert_eq!(page.location(), "/projects", "{next}");
    }
    let page = third.get("/login?next=/projects/new").await;
    assert_eq!(page.location(), "/projects/new");
}

#[tokio::test]
async fn sign_up_shows_each_error_next_to_its_field_and_keeps_the_email() {
    let app = spawn_app().await;
    let browser = Browser::new(&app);
    let form = browser.get("/signup").await;
    assert_eq!(form.status, StatusCode::OK);
    let typed = "not-an-email<script>";
    let page = browser
        .post(
            "/signup",
            &[
                ("csrf", &form.csrf()),
                ("email", typed),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    page.assert_invalid("email", "valid address");
    page.assert_invalid("password", "8 to 1024 characters");
    assert!(
        page.control("email")
            .contains(r#"value="not-an-email&#60;script&#62;""#)
            || page
                .control("email")
                .contains(r#"value="not-an-email&lt;script&gt;""#)
    );
    assert!(
        !page.body.contains("short"),
        "the password is never sent back"
    );

    // A taken email is reported on the email field.
    let email = browser.sign_up().await;
    let other = Browser::new(&app);
    let form = other.get("/signup").await;
    let page = other
        .post(
            "/signup",
            &[
                ("csrf", &form.csrf()),
                ("email", &email),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    page.assert_invalid("email", "already exists");
    page.assert_valid("password");
    assert!(page.control("email").contains(&email));
    assert!(!page.body.contains(PASSWORD));
}

#[tokio::test]
async fn log_in_errors_are_inline_and_keep_the_email() {
    let app = spawn_app().await;
    let browser = Browser::new(&app);
    let email = browser.sign_up().await;

    let other = Browser::new(&app);
    let form = other.get("/login").await;
    let page = other
        .post(
            "/login",
            &[
                ("csrf", &form.csrf()),
                ("email", &email),
                ("password", "wrong password"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    page.assert_invalid("password", "email or password is wrong");
    assert!(page.control("email").contains(&email));
    assert!(!page.body.contains("wrong password"));

    let page = other
        .post(
            "/login",
            &[("csrf", &form.csrf()), ("email", ""), ("password", "")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    page.assert_invalid("email", "enter your email");
    page.assert_invalid("password", "enter your password");

    let page = other
        .post(
            "/login",
            &[
                ("csrf", &form.csrf()),
                ("email", &email),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/projects");
    let list = other.get("/projects").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains(&email));

    // Ten failures (the one above and nine more) lock the account; the form says so
    // in the words of the error code.
    let third = Browser::new(&app);
    let form = third.get("/login").await;
    let attempt = |password: &'static str| {
        let csrf = form.csrf();
        let email = email.clone();
        let third = &third;
        async move {
            third
                .post(
                    "/login",
                    &[("csrf", &csrf), ("email", &email), ("password", password)],
                )
                .await
        }
    };
    for _ in 0..9 {
        assert_eq!(
            attempt("wrong password").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let page = attempt(PASSWORD).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        page.body
            .contains("Too many attempts: try again in 15 minute(s)."),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn forms_without_the_csrf_token_are_refused() {
    let app = spawn_app().await;
    let browser = Browser::new(&app);
    // Before any session: the log-in and sign-up forms.
    browser.get("/login").await;
    for path in ["/login", "/signup"] {
        for csrf in [None, Some("forged")] {
            let mut form = vec![("email", "a@example.com"), ("password", PASSWORD)];
            if let Some(csrf) = csrf {
                form.push(("csrf", csrf));
            }
            let page = browser.post(path, &form).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{path} {csrf:?}");
            assert!(page.body.contains("Form expired"));
        }
    }

    browser.sign_up().await;
    let (id, _) = browser.create_project("csrf").await;
    let token = browser.get("/projects").await.csrf();
    let posts = [
        ("/projects".to_owned(), vec![("name", "other")]),
        (format!("/projects/{id}/rename"), vec![("name", "renamed")]),
        (
            format!("/projects/{id}/settings"),
            vec![("max_connections", "5")],
        ),
        (format!("/projects/{id}/send"), vec![("message", "hi")]),
        (format!("/projects/{id}/regenerate"), vec![]),
        (format!("/projects/{id}/delete"), vec![]),
        ("/logout".to_owned(), vec![]),
    ];
    for (path, fields) in &posts {
        let page = browser.post(path, fields).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path} without token");
        let mut forged = fields.clone();
        forged.push(("csrf", "forged"));
        let page = browser.post(path, &forged).await;
        assert_eq!(
            page.status,
            StatusCode::FORBIDDEN,
            "{path} with a forged token"
        );
    }
    // Nothing happened: the project is there under its name and the session lives.
    let page = browser.get(&format!("/projects/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<h1>csrf</h1>"));
    // The right token works.
    let page = browser.post("/logout", &[("csrf", &token)]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/login");
    let page = browser.get("/projects").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn project_forms_show_inline_errors_and_keep_the_input() {
    let app = spawn_app().await;
    let browser = Browser::new(&app);
    browser.sign_up().await;

    // New project: an empty (blank) name.
    let form = browser.get("/projects/new").await;
    assert!(form.body.contains(r#"<label for="name">Name</label>"#));
    let page = browser
        .post("/projects", &[("csrf", &form.csrf()), ("name", "   ")])
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    page.assert_invalid("name", "1 to 100 characters");
    let long = "x".repeat(101);
    let page = browser
        .post("/projects", &[("csrf", &form.csrf()), ("name", &long)])
        .await;
    page.assert_invalid("name", "1 to 100 characters");
    assert!(page.control("name").contains(&long));

    let (id, _) = browser.create_project("forms").await;
    let project = browser.get(&format!("/projects/{id}")).await;
    let csrf = project.csrf();

    // Rename.
    let page = browser
        .post(
            &format!("/projects/{id}/rename"),
            &[("csrf", &csrf), ("name", &long)],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    page.assert_invalid("name", "1 to 100 characters");
    assert!(page.control("name").contains(&long));

    // A body that is not UTF-8 (Latin-1 "café": curl can send it, a browser never does)
    // is refused, and nothing is stored.
    let page = browser
        .post_raw(
            &format!("/projects/{id}/rename"),
            format!("csrf={csrf}&name=caf%E9"),
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let unchanged = browser.get(&format!("/projects/{id}")).await;
    assert!(unchanged.body.contains("forms"));
    assert!(!unchanged.body.contains("caf\u{FFFD}"));

    // Settings: a word, zero, over the server limit and a bad origin.
    let settings = [
        ("csrf", csrf.as_str()),
        ("max_message_bytes", "lots"),
        ("messages_per_second", "10"),
        ("project_messages_per_second", ""),
        ("max_connections", "3"),
        ("allowed_origins", "https://ok.example\nnot an origin"),
    ];
    let path = format!("/projects/{id}/settings");
    let page = browser.post(&path, &settings).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    page.assert_invalid("max_message_bytes", "whole number");
    page.assert_valid("messages_per_second");
    // The boxes that did parse are checked too: every mistake shows at once.
    page.assert_invalid("allowed_origins", "not an origin like");
    assert!(page
        .control("max_message_bytes")
        .contains(r#"value="lots""#));
    assert!(page
        .control("messages_per_second")
        .contains(r#"value="10""#));
    assert!(page.body.contains("https://ok.example\nnot an origin"));

    let mut over = settings;
    over[1] = ("max_message_bytes", "99999999");
    let page = browser.post(&path, &over).await;
    page.assert_invalid("max_message_bytes", "between 1 and 65536");
    assert!(page.control("max_message_bytes").contains("99999999"));
    // Too long for any integer type is still a number out of range, not a word.
    over[1] = ("max_message_bytes", "99999999999999999999");
    let page = browser.post(&path, &over).await;
    page.assert_invalid("max_message_bytes", "between 1 and 65536");
    over[1] = ("max_message_bytes", "-99999999999999999999");
    let page = browser.post(&path, &over).await;
    page.assert_invalid("max_message_bytes", "between 1 and 65536");

    let mut word_and_zero = settings;
    word_and_zero[4] = ("max_connections", "0");
    let page = browser.post(&path, &word_and_zero).await;
    page.assert_invalid("max_message_bytes", "whole number");
    page.assert_invalid("max_connections", "Must be between 1 and 10000");
    // Each message is worded for its box, not with the API's field names.
    for raw in ["Max_connections", "settings.", "Allowed_origins:"] {
        assert!(!page.body.contains(raw), "{raw} shown");
    }

    let mut zero = settings;
    zero[1] = ("max_message_bytes", "");
    zero[4] = ("max_connections", "0");
    let page = browser.post(&path, &zero).await;
    page.assert_invalid("max_connections", "between 1 and 10000");
    // Every refused setting gets its own message, not just the first one.
    page.assert_invalid("allowed_origins", "not an origin like");
    page.assert_valid("messages_per_second");

    let mut bad_origin = zero;
    bad_origin[4] = ("max_connections", "3");
    let page = browser.post(&path, &bad_origin).await;
    page.assert_invalid("allowed_origins", "not an origin like");
    let textarea = page.control("allowed_origins");
    assert!(textarea.contains(r#"aria-describedby="allowed_origins-error allowed_origins-hint""#));
    // The refused box takes the focus, so the page opens on it, below the fold or not.
    assert!(textarea.contains("autofocus"), "{textarea}");
    assert_eq!(page.body.matches("autofocus").count(), 1);

    // Every bad line is named, whole (a line with spaces is one entry, not three).
    let mut two_bad = bad_origin;
    two_bad[5] = (
        "allowed_origins",
        "not a url\nhttps://ok.example\nftp://x.example",
    );
    let page = browser.post(&path, &two_bad).await;
    page.assert_invalid("allowed_origins", "are not origins like");
    let message = page.text_of("allowed_origins-error");
    for bad in ["not a url", "ftp://x.example"] {
        assert!(message.contains(bad), "{bad} in {message:?}");
    }
    assert!(!message.contains("ok.example"), "{message:?}");

    // Nothing was saved by the refused posts: the limits are still the defaults.
    let fresh = browser.get(&format!("/projects/{id}")).await;
    assert!(fresh.control("max_connections").contains(r#"value="""#));
    assert!(fresh.control("messages_per_second").contains(r#"value="""#));

    // Send: empty, then over a lowered message limit.
    let mut small = bad_origin;
    small[1] = ("max_message_bytes", "5");
    small[5] = ("allowed_origins", "");
    let page = browser.post(&path, &small).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let send = format!("/projects/{id}/send");
    let page = browser
        .post(&send, &[("csrf", &csrf), ("message", "")])
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    page.assert_invalid("message", "enter a message");
    let page = browser
        .post(&send, &[("csrf", &csrf), ("message", "too long")])
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    page.assert_invalid("message", "limit of 5 bytes");
    assert!(page.control("message").contains(r#"value="too long""#));
}

#[tokio::test]
async fn the_whole_flow_works_with_cookies_only() {
    let app = spawn_app().await;
    let browser = Browser::new(&app);
    let email = browser.sign_up().await;

    let list = browser.get("/projects").await;
    assert!(list.body.contains("No projects yet"));
    assert!(list.body.contains(">New project</a>"));
    assert!(list.body.contains("<title>Projects · roomcast</title>"));
    assert!(list.body.contains(&email));

    // Creation shows the key once, with the client snippet for this very server.
    let form = browser.get("/projects/new").await;
    let created = browser
        .post(
            "/projects",
            &[("csrf", &form.csrf()), ("name", "Chat <b>room</b>")],
        )
        .await;
    let page = browser.key_page(&created).await;
    assert_eq!(
        page.headers
            .get("cache-control")
            .map(|v| v.to_str().unwrap_or("")),
        Some("no-store")
    );
    let key = page.text_of("api-key");
    assert!(key.starts_with("rk_"), "{key}");
    assert!(page.body.contains("you will not see this again"));
    assert!(page.body.contains(">Copy</button>"));
    assert!(
        page.body.contains("Chat &#60;b&#62;room&#60;/b&#62;")
            || page.body.contains("Chat &lt;b&gt;room&lt;/b&gt;")
    );
    assert!(!page.body.contains("<b>room"));
    let host = app.address.trim_start_matches("http://");
    assert!(
        page.body.contains(&format!("io(&#34;http://{host}&#34;"))
            || page.body.contains(&format!("io(&quot;http://{host}&quot;")),
        "snippet names this server"
    );
    assert!(
        page.body.contains(&format!("apiKey: &#34;{key}&#34;"))
            || page.body.contains(&format!("apiKey: &quot;{key}&quot;"))
    );
    let marker = r#"href="/projects/"#;
    let at = page.body.rfind(marker).expect("project link") + marker.len();
    let id = page.body[at..at + 36].to_owned();

    // The key is a real one.
    let published = app.publish(&key, "hello").await;
    assert_eq!(published.status(), StatusCode::ACCEPTED);

    // The list shows name, key prefix, connections and creation time; never the key.
    let list = browser.get("/projects").await;
    assert!(list.body.contains(&key[..11]));
    assert!(!list.body.contains(&key));
    assert!(list.body.contains("<time datetime="));

    // The project page.
    let project = browser.get(&format!("/projects/{id}")).await;
    assert_eq!(project.status, StatusCode::OK);
    assert!(project.body.contains(&key[..11]));
    assert!(!project.body.contains(&key));
    for name in [
        ">Regenerate key</button>",
        ">Delete</button>",
        ">Send</button>",
    ] {
        assert!(project.body.contains(name), "{name}");
    }
    assert!(project
        .body
        .contains(&format!(r#"data-live="/projects/{id}/live""#)));
    let csrf = project.csrf();

    // Rename and settings.
    let page = browser
        .post(
            &format!("/projects/{id}/rename"),
            &[("csrf", &csrf), ("name", "  Lobby  ")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let page = browser
        .post(
            &format!("/projects/{id}/settings"),
            &[
                ("csrf", &csrf),
                ("max_message_bytes", "1024"),
                ("messages_per_second", ""),
                ("project_messages_per_second", ""),
                ("max_connections", "50"),
                (
                    "allowed_origins",
                    "HTTPS://App.Example:443/\nhttp://localhost:8080",
                ),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let project = browser.get(page.location()).await;
    assert!(project.body.contains("<h1>Lobby</h1>"));
    assert!(project.body.contains("Settings saved"));
    assert!(project
        .control("max_message_bytes")
        .contains(r#"value="1024""#));
    assert!(project
        .control("messages_per_second")
        .contains(r#"value="""#));
    assert!(project.control("max_connections").contains(r#"value="50""#));
    assert!(project
        .body
        .contains("https://app.example\nhttp://localhost:8080</textarea>"));

    // Send, as a form and as the console's script does.
    let page = browser
        .post(
            &format!("/projects/{id}/send"),
            &[("csrf", &csrf), ("message", "from the console")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(page.location().contains("done=sent"));
    let response = browser
        .client
        .post(app.url(&format!("/projects/{id}/send")))
        .header("Accept", "application/json")
        .form(&[("csrf", csrf.as_str()), ("message", "again")])
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    assert!(body["delivered_to"].is_u64(), "{body}");

    // Regenerate: a confirmation step that warns, then the new key once.
    let confirm = browser.get(&format!("/projects/{id}/regenerate")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("will be disconnected"));
    let regenerated = browser
        .post(
            &format!("/projects/{id}/regenerate"),
            &[("csrf", &confirm.csrf())],
        )
        .await;
    let page = browser.key_page(&regenerated).await;
    assert!(page.body.contains("New API key"));
    let new_key = page.text_of("api-key");
    assert_ne!(new_key, key);
    // Shown once: opened again (a reload, the Back button), the page changes nothing
    // and leads to the project page, which says why.
    let again = browser.get(&format!("/projects/{id}/key")).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(again.location(), format!("/projects/{id}?done=key-shown"));
    let project = browser.get(again.location()).await;
    assert!(project.body.contains("shown only once"));
    assert!(!project.body.contains(&new_key));
    assert_eq!(
        app.publish(&key, "x").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.publish(&new_key, "x").await.status(),
        StatusCode::ACCEPTED
    );

    // Delete: a confirmation step, then gone.
    let confirm = browser.get(&format!("/projects/{id}/delete")).await;
    assert!(confirm.body.contains("cannot be undone"));
    let page = browser
        .post(
            &format!("/projects/{id}/delete"),
            &[("csrf", &confirm.csrf())],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/projects?done=deleted");
    let list = browser.get(page.location()).await;
    assert!(list.body.contains("Project deleted."));
    let gone = browser.get(&format!("/projects/{id}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    // The error page does not look like a signed-out one: no "Log in" to a signed-in user.
    assert!(!gone.body.contains(r#"href="/login""#), "{}", gone.body);
    assert!(gone.body.contains("Back to the dashboard"));
    assert_eq!(
        app.publish(&new_key, "x").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn other_users_projects_are_not_found() {
    let app = spawn_app().await;
    let owner = Browser::new(&app);
    owner.sign_up().await;
    let (id, _) = owner.create_project("mine").await;
    let stranger = Browser::new(&app);
    stranger.sign_up().await;
    for path in [
        format!("/projects/{id}"),
        format!("/projects/{id}/regenerate"),
        format!("/projects/{id}/delete"),
        format!("/projects/{id}/live"),
        format!("/projects/{id}/key"),
        "/projects/not-a-uuid".to_owned(),
    ] {
        let page = stranger.get(&path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
    }
    let csrf = stranger.get("/projects").await.csrf();
    let page = stranger
        .post(&format!("/projects/{id}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert_eq!(
        owner.get(&format!("/projects/{id}")).await.status,
        StatusCode::OK
    );
}

/// Reads an SSE response until `needle` shows up (10 s at most); returns what was read.
async fn read_until(response: &mut reqwest::Response, needle: &str) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(needle) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("{needle:?} within 10 s; got {seen:?}"))
            .expect("chunk")
            .unwrap_or_else(|| panic!("stream ended before {needle:?}; got {seen:?}"));
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    seen
}

#[tokio::test]
async fn the_live_feeds_stream_over_sse_and_end_at_log_out() {
    let app = spawn_app().await;
    let browser = Browser::new(&app);
    browser.sign_up().await;
    let (id, key) = browser.create_project("live").await;
    let mut feed = browser
        .client
        .get(app.url(&format!("/projects/{id}/live")))
        .send()
        .await
        .expect("live");
    assert_eq!(feed.status(), StatusCode::OK);
    let content_type = feed.headers().get(CONTENT_TYPE).cloned();
    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let seen = read_until(&mut feed, "event: stats").await;
    assert!(seen.contains(r#""connections":0"#), "{seen}");

    // A message published into the room shows up, JSON-encoded (line breaks included).
    let published = app.publish(&key, "two\nlines").await;
    assert_eq!(published.status(), StatusCode::ACCEPTED);
    let seen = read_until(&mut feed, r#""two\nlines""#).await;
    assert!(seen.contains("event: message"), "{seen}");

    // The list's feed: connection counts by project id.
    let mut list = browser
        .client
        .get(app.url("/projects/live"))
        .send()
        .await
        .expect("list feed");
    let seen = read_until(&mut list, "event: connections").await;
    assert!(seen.contains(&format!(r#""{id}":0"#)), "{seen}");

    // Logging out (in another tab) ends both feeds.
    let csrf = browser.get("/projects").await.csrf();
    let page = browser.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    read_until(&mut feed, "event: signed-out").await;
    read_until(&mut list, "event: signed-out").await;
}

#[tokio::test]
async fn assets_are_embedded_and_the_api_is_not_shadowed() {
    let app = spawn_app().await;
    let browser = Browser::new(&app);
    let css = browser.get("/assets/dashboard.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers[CONTENT_TYPE]
        .to_str()
        .unwrap_or("")
        .starts_with("text/css"));
    let js = browser.get("/assets/dashboard.js").await;
    assert!(js.headers[CONTENT_TYPE]
        .to_str()
        .unwrap_or("")
        .starts_with("text/javascript"));
    let login = browser.get("/login").await;
    let csp = login.headers["content-security-policy"]
        .to_str()
        .unwrap_or("");
    assert!(csp.contains("default-src 'none'"));
    assert!(!login.body.contains("https://"), "no external requests");
    let api = browser.get("/api/v1/nope").await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert!(api.body.contains("NOT_FOUND"));
    let health = browser.get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    // A form's address opened with GET goes to its project's page (which checks the
    // session and the owner); GET /logout logs nobody out.
    for form in ["rename", "settings", "send"] {
        let page = browser.get(&format!("/projects/some-id/{form}")).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{form}");
        assert_eq!(page.location(), "/projects/some-id", "{form}");
    }
    let logout = browser.get("/logout").await;
    assert_eq!(logout.status, StatusCode::SEE_OTHER);
    assert_eq!(logout.location(), "/");
    // No icon, and no 404 for the browser's console either.
    let icon = browser.get("/favicon.ico").await;
    assert_eq!(icon.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_key_page_shows_only_its_own_projects_live_key() {
    let app = spawn_app().await;
    let browser = Browser::new(&app);
    browser.sign_up().await;
    let (first, first_key) = browser.create_project("first").await;
    let (second, _) = browser.create_project("second").await;
    let key_page = |id: &str| format!("/projects/{id}/key");
    let shown_once = |id: &str| format!("/projects/{id}?done=key-shown");
    for forged in [
        // Another project's live key, a made-up key, no kind, an empty value.
        format!("c.{first_key}"),
        "c.rk_notakeyatallnotakeyatallnotakeyatall00".to_owned(),
        first_key.clone(),
        String::new(),
    ] {
        browser.set_cookie(&format!(
            "roomcast_new_key={forged}; Path={}",
            key_page(&second)
        ));
        let page = browser.get(&key_page(&second)).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{forged:?}");
        assert_eq!(page.location(), shown_once(&second), "{forged:?}");
    }
    // A key that a regeneration replaced is not shown either.
    browser.set_cookie(&format!(
        "roomcast_new_key=c.{first_key}; Path={}",
        key_page(&first)
    ));
    let confirm = browser.get(&format!("/projects/{first}/regenerate")).await;
    let regenerated = browser
        .post(
            &format!("/projects/{first}/regenerate"),
            &[("csrf", &confirm.csrf())],
        )
        .await;
    assert_eq!(regenerated.status, StatusCode::SEE_OTHER);
    browser.set_cookie(&format!(
        "roomcast_new_key=r.{first_key}; Path={}",
        key_page(&first)
    ));
    let page = browser.get(&key_page(&first)).await;
    assert_eq!(page.location(), shown_once(&first));
    assert!(!page.body.contains(&first_key));
}

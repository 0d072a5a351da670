//! The pages' view models: one askama template struct per page (`templates/*.html`) and
//! [`Field`], a form field with its typed-in value and inline error.
//!
//! Everything a template prints goes through askama's HTML escaping; the only unescaped
//! output is [`Field::attrs`], which holds attribute text written in this crate.

use crate::platform::types::ProjectId;
use crate::realtime::ProjectStats;
use askama::Template;

/// What the page frame shows: the signed-in email and the log-out form's CSRF token.
pub struct Layout {
    /// Signed-in email, or `None` on the public pages.
    pub email: Option<String>,
    /// CSRF token of the log-out form.
    pub csrf: String,
    /// Without an email: whether to offer "Log in" and "Sign up" (not on error pages,
    /// which are rendered without looking the session up and may be seen signed in).
    pub account_links: bool,
}

impl Layout {
    /// The frame of a page seen without a session.
    pub fn anonymous() -> Self {
        Self {
            email: None,
            csrf: String::new(),
            account_links: true,
        }
    }

    /// The frame of a page whose viewer is not known (error pages): a link to the
    /// dashboard, which signs in or shows the projects as the session allows.
    pub fn unknown_viewer() -> Self {
        Self {
            account_links: false,
            ..Self::anonymous()
        }
    }
}

/// One form field: label, what the user typed, and its inline error.
pub struct Field {
    /// `id` and `name` of the control.
    pub id: &'static str,
    /// Visible label (the control's accessible name).
    pub label: &'static str,
    /// `<input type>`, or `textarea`.
    pub kind: &'static str,
    /// The value to show again (never a password).
    pub value: String,
    /// Help text shown under the label.
    pub hint: String,
    /// Why the value was refused.
    pub error: Option<String>,
    /// Extra attributes, written in this crate (`required`, `autocomplete`, …).
    pub attrs: &'static str,
}

impl Field {
    /// An empty field.
    pub fn new(id: &'static str, label: &'static str, kind: &'static str) -> Self {
        Self {
            id,
            label,
            kind,
            value: String::new(),
            hint: String::new(),
            error: None,
            attrs: "",
        }
    }

    /// With a value to show.
    pub fn value(mut self, value: impl Into<String>) -> Self {
        self.value = value.into();
        self
    }

    /// With help text.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = hint.into();
        self
    }

    /// With extra attributes.
    pub fn attrs(mut self, attrs: &'static str) -> Self {
        self.attrs = attrs;
        self
    }

    /// Marks the field invalid.
    pub fn error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    /// The ids of the error and hint paragraphs, for `aria-describedby` (error first, so
    /// a screen reader says what is wrong before how to fill the field).
    pub fn described_by(&self) -> String {
        let mut ids = Vec::new();
        if self.error.is_some() {
            ids.push(format!("{}-error", self.id));
        }
        if !self.hint.is_empty() {
            ids.push(format!("{}-hint", self.id));
        }
        ids.join(" ")
    }
}

/// `/login`.
#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub layout: Layout,
    pub csrf: String,
    pub next: String,
    pub email: Field,
    pub password: Field,
}

/// `/signup`.
#[derive(Template)]
#[template(path = "signup.html")]
pub struct SignupPage {
    pub layout: Layout,
    pub csrf: String,
    pub email: Field,
    pub password: Field,
}

/// One row of the projects table.
pub struct ProjectRow {
    pub id: ProjectId,
    pub name: String,
    pub key_prefix: String,
    pub connections: u64,
    pub created: String,
    pub created_iso: String,
}

/// `/projects`.
#[derive(Template)]
#[template(path = "projects.html")]
pub struct ProjectsPage {
    pub layout: Layout,
    pub rows: Vec<ProjectRow>,
    pub notice: Option<String>,
}

/// `/projects/new`.
#[derive(Template)]
#[template(path = "new_project.html")]
pub struct NewProjectPage {
    pub layout: Layout,
    pub name: Field,
}

/// The key, shown once after creation or regeneration.
#[derive(Template)]
#[template(path = "key.html")]
pub struct KeyPage {
    pub layout: Layout,
    pub project_id: ProjectId,
    pub project_name: String,
    pub api_key: String,
    pub snippet: String,
    pub regenerated: bool,
}

/// The settings form's fields.
pub struct SettingsForm {
    pub max_message_bytes: Field,
    pub messages_per_second: Field,
    pub project_messages_per_second: Field,
    pub max_connections: Field,
    pub allowed_origins: Field,
}

/// `/projects/{id}`.
#[derive(Template)]
#[template(path = "project.html")]
pub struct ProjectPage {
    pub layout: Layout,
    pub id: ProjectId,
    pub name: String,
    pub key_prefix: String,
    pub created: String,
    pub stats: ProjectStats,
    pub notice: Option<String>,
    pub message: Field,
    pub rename: Field,
    pub settings: SettingsForm,
}

/// The confirmation step of regenerating a key or deleting a project.
#[derive(Template)]
#[template(path = "confirm.html")]
pub struct ConfirmPage {
    pub layout: Layout,
    pub title: String,
    pub text: &'static str,
    pub action: String,
    pub button: &'static str,
    pub cancel: String,
}

/// A page explaining why the request failed.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub layout: Layout,
    pub title: &'static str,
    pub text: &'static str,
}

/// Percent-encodes a value for a query string (everything but unreserved characters and
/// `/`, which keeps `next=/projects/…` readable).
pub fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The SPEC's client example, filled in with this server's URL and a project's key.
pub fn client_snippet(server_url: &str, api_key: &str) -> String {
    format!(
        r#"import {{ io }} from "socket.io-client";
const socket = io("{server_url}", {{ auth: {{ apiKey: "{api_key}" }} }});
socket.on("connect", () => socket.emit("message", "Hello, world!"));
socket.on("message", (msg) => console.log("Received:", msg));
socket.on("connect_error", (err) => console.error(err.message, err.data));
socket.on("error", (err) => console.error(err.code, err.message));"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode_query("/projects/a-b"), "/projects/a-b");
        assert_eq!(encode_query("/x?y=1&z"), "/x%3Fy%3D1%26z");
    }

    #[test]
    fn described_by_lists_error_then_hint() {
        let field = Field::new("name", "Name", "text");
        assert_eq!(field.described_by(), "");
        let field = field.hint("1 to 100 characters").error("too long");
        assert_eq!(field.described_by(), "name-error name-hint");
    }

    #[test]
    fn user_values_are_escaped() {
        let page = NewProjectPage {
            layout: Layout::anonymous(),
            name: Field::new("name", "Name", "text").value("<script>\"x\"</script>"),
        };
        let html = page.render().expect("renders");
        assert!(!html.contains("<script>\""), "{html}");
        // askama writes `<` and `>` as numeric or named entities depending on version.
        assert!(
            html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"),
            "{html}"
        );
    }
}

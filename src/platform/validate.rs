//! Input rules for user-supplied fields. Each function returns the normalized value or a
//! message fit to show the user. Lengths count Unicode code points (SPEC §2).

/// Shortest password, in code points.
pub const PASSWORD_MIN: usize = 8;
/// Longest password, in code points (bounds the hashing work a request can cause).
pub const PASSWORD_MAX: usize = 1024;
/// Longest project name, in code points.
pub const NAME_MAX: usize = 100;
/// Most origins a project may list.
pub const ORIGINS_MAX: usize = 100;

/// Trims and lowercases an email and checks it looks deliverable: one `@`, a local part of
/// 1–64 bytes, a dotted domain of letters, digits and hyphens, 254 bytes at most.
pub fn email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_lowercase();
    let bad = || Err("email must be a valid address like name@example.com".to_owned());
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad();
    }
    let Some((local, domain)) = email.split_once('@') else {
        return bad();
    };
    // The local part is a dot-atom (RFC 5322, with RFC 6531's non-ASCII letters):
    // no quoting, no `,;<>()[]\"`, and dots only between characters.
    let atext = |c: char| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    if local.is_empty()
        || local.len() > 64
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || !local.chars().all(|c| c == '.' || atext(c))
    {
        return bad();
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return bad();
    }
    Ok(email)
}

/// Checks a password's length (not trimmed: spaces are legitimate characters in it).
pub fn password(raw: &str) -> Result<(), String> {
    let length = raw.chars().count();
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&length) {
        return Err(format!(
            "password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long"
        ));
    }
    Ok(())
}

/// Trims a project name and checks it is 1–100 code points without control characters.
pub fn project_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    let length = name.chars().count();
    if length == 0 || length > NAME_MAX {
        return Err(format!("name must be 1 to {NAME_MAX} characters long"));
    }
    if name.chars().any(char::is_control) {
        return Err("name must not contain control characters".to_owned());
    }
    if name.chars().any(is_bidi_control) {
        return Err("name must not contain text-direction controls".to_owned());
    }
    if name.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
        return Err("name must have a visible character".to_owned());
    }
    Ok(name.to_owned())
}

/// Unicode's explicit text-direction controls (embeddings, overrides, isolates and the
/// marks): in a name they can make the text shown elsewhere read backwards.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Characters that take no space when shown (zero-width spaces and joiners, word
/// joiners, invisible operators, the byte order mark, the soft hyphen): a name of only
/// these would look empty.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}' | '\u{180E}')
}

/// What a refused origin is told it should look like.
pub const ORIGIN_EXAMPLES: &str = "https://example.com or http://localhost:8080";

/// Checks a browser origin `scheme://host[:port]` (http or https, no path, query or user
/// info) and normalizes it the way browsers send `Origin`: lowercase, default port
/// dropped. A single trailing `/` is tolerated because people paste URLs.
pub fn origin(raw: &str) -> Result<String, String> {
    let bad = || Err(format!("{raw:?} is not an origin like {ORIGIN_EXAMPLES}"));
    let lowered = raw.trim().to_ascii_lowercase();
    let trimmed = lowered.strip_suffix('/').unwrap_or(&lowered);
    let Some((scheme, authority)) = trimmed.split_once("://") else {
        return bad();
    };
    let default_port = match scheme {
        "http" => "80",
        "https" => "443",
        _ => return bad(),
    };
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return bad();
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        // IPv6 literal: [::1] or [::1]:8080
        let Some((inside, after)) = rest.split_once(']') else {
            return bad();
        };
        if inside.is_empty()
            || !inside
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return bad();
        }
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return bad(),
            },
        };
        (format!("[{inside}]"), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let host_ok = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !host_ok {
            return bad();
        }
        (host.to_owned(), port)
    };
    match port {
        None => Ok(format!("{scheme}://{host}")),
        Some(port) => match port.parse::<u16>() {
            Ok(0) | Err(_) => bad(),
            Ok(_) if port == default_port => Ok(format!("{scheme}://{host}")),
            Ok(number) => Ok(format!("{scheme}://{host}:{number}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(
            email("  Ada@Example.COM ").as_deref(),
            Ok("ada@example.com")
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@@example.com",
            "ada@-x.com",
            "ada@x..com",
            "a,b@example.com",
            "a<b>@example.com",
            "a(b)@example.com",
            "a;b@example.com",
            "a\"b@example.com",
            "a\\b@example.com",
            "a..b@example.com",
            ".a@example.com",
            "a.@example.com",
            "[a]@example.com",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
        assert!(email(&format!("{}@example.com", "a".repeat(65))).is_err());
        for good in [
            "first.last@example.com",
            "o'hara+tag@example.com",
            "x_y-z!#$%&*/=?^`{|}~@example.com",
            "δοκιμή@παράδειγμα.δοκιμή",
        ] {
            assert_eq!(email(good).as_deref(), Ok(good), "{good}");
        }
    }

    #[test]
    fn password_lengths_count_code_points() {
        assert!(password("ééééééé").is_err()); // 7 code points, 14 bytes
        assert!(password("éééééééé").is_ok());
        assert!(password(&"é".repeat(1024)).is_ok());
        assert!(password(&"é".repeat(1025)).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(project_name("  chat  ").as_deref(), Ok("chat"));
        assert!(project_name("   ").is_err());
        assert!(project_name(&"名".repeat(100)).is_ok());
        assert!(project_name(&"名".repeat(101)).is_err());
        assert!(project_name("a\nb").is_err());
        assert!(project_name("\u{200B}\u{200B}").is_err(), "looks empty");
        assert!(project_name(" \u{FEFF}\u{2060} ").is_err(), "looks empty");
        assert!(project_name("\u{202E}evil").is_err(), "reads backwards");
        assert!(project_name("a\u{2066}b").is_err());
        assert_eq!(
            project_name("a\u{200D}b").as_deref(),
            Ok("a\u{200D}b"),
            "a joiner inside is fine"
        );
        assert_eq!(
            project_name("שלום chat").as_deref(),
            Ok("שלום chat"),
            "right-to-left text is fine"
        );
    }

    #[test]
    fn origins_are_normalized_like_browsers_send_them() {
        assert_eq!(
            origin("HTTPS://Example.com:443/").as_deref(),
            Ok("https://example.com")
        );
        assert_eq!(
            origin("http://localhost:8080").as_deref(),
            Ok("http://localhost:8080")
        );
        assert_eq!(
            origin("http://[::1]:3000").as_deref(),
            Ok("http://[::1]:3000")
        );
        for bad in [
            "example.com",
            "ftp://example.com",
            "https://example.com/path",
            "https://",
            "https://a:b@example.com",
            "https://example.com:0",
            "https://example.com:99999",
            "https://exa mple.com",
            "*",
        ] {
            assert!(origin(bad).is_err(), "{bad}");
        }
    }
}

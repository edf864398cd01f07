//! Kubernetes object names, as the API server accepts them: hosts (Node names), workloads and
//! PodDisruptionBudgets are DNS-1123 subdomains, namespaces DNS-1123 labels. Checking them
//! where they enter kup keeps control characters off terminals and lookups unambiguous.

/// Why `name` is not a DNS-1123 subdomain (at most 253 characters; dot-separated labels of
/// lowercase letters, digits and `-`, each starting and ending with a letter or digit).
pub fn subdomain_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name.len() > 253 {
        return Some("it is longer than 253 characters");
    }
    name.split('.').find_map(label_problem)
}

/// Why `name` is not a DNS-1123 label (at most 63 characters of lowercase letters, digits and
/// `-`, starting and ending with a letter or digit).
pub fn label_problem(name: &str) -> Option<&'static str> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Some("it has an empty part");
    }
    if bytes.len() > 63 {
        return Some("a part of it is longer than 63 characters");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    {
        return Some("it may hold only lowercase letters, digits, '-' and '.'");
    }
    if bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
        return Some("each part must start and end with a letter or digit");
    }
    None
}

/// Why `name` cannot name a host: a Node name that is neither all digits (a number names a
/// host by its id) nor shaped like a uuid (a uuid names a host by its uuid).
pub fn host_name_problem(name: &str) -> Option<&'static str> {
    subdomain_problem(name)
        .or_else(|| {
            name.bytes()
                .all(|b| b.is_ascii_digit())
                .then_some("a host name of digits only would be taken for a host id")
        })
        .or_else(|| {
            uuid_shaped(name)
                .then_some("a host name shaped like a uuid would be taken for a host's uuid")
        })
}

/// `8-4-4-4-12` hexadecimal digits.
fn uuid_shaped(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Characters that a terminal acts on rather than shows: controls (the newline included) and
/// the invisible formatting characters that reorder or hide text (bidirectional overrides and
/// isolates, zero-width characters).
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{061C}')
}

/// Why free text (an alarm's reason, a label, a role) cannot be shown as it is.
pub fn text_problem(text: &str) -> Option<&'static str> {
    text.chars()
        .any(is_hidden)
        .then_some("it holds a control or invisible formatting character")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text() {
        assert_eq!(text_problem("Platform CPU threshold exceeded"), None);
        assert_eq!(text_problem("ünïcode is fine"), None);
        for bad in [
            "line\nbreak",
            "tab\there",
            "esc\u{1b}[31m",
            "evil\u{202e}txt",
            "zero\u{200b}width",
        ] {
            assert!(text_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn host_names() {
        for ok in [
            "controller-0",
            "w1",
            "a",
            "node-1.example.com",
            "0a",
            "a0-b",
        ] {
            assert_eq!(host_name_problem(ok), None, "{ok}");
        }
        let long_label = "a".repeat(64);
        let long_name = ["a"; 127].join(".") + ".ab";
        for (bad, why) in [
            ("", "it is empty"),
            (
                "1",
                "a host name of digits only would be taken for a host id",
            ),
            (
                "007",
                "a host name of digits only would be taken for a host id",
            ),
            (
                "Worker-0",
                "it may hold only lowercase letters, digits, '-' and '.'",
            ),
            (
                "tab\there",
                "it may hold only lowercase letters, digits, '-' and '.'",
            ),
            (
                "red\u{1b}[31m",
                "it may hold only lowercase letters, digits, '-' and '.'",
            ),
            ("-w", "each part must start and end with a letter or digit"),
            ("w-", "each part must start and end with a letter or digit"),
            ("a..b", "it has an empty part"),
            (".a", "it has an empty part"),
            (
                long_label.as_str(),
                "a part of it is longer than 63 characters",
            ),
            (long_name.as_str(), "it is longer than 253 characters"),
            (
                "fe0afd76-1c2b-4d3e-8f90-a1b2c3d4e5f6",
                "a host name shaped like a uuid would be taken for a host's uuid",
            ),
        ] {
            assert_eq!(host_name_problem(bad), Some(why), "{bad:?}");
        }
    }
}

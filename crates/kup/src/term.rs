//! Everything kup prints goes through here: text that comes from data (host names, alarm
//! reasons, a server's error message) is escaped so that no control character reaches the
//! terminal, and a closed pipe (`kup host-list | head -1`) ends the output quietly instead of
//! panicking.

use std::borrow::Cow;
use std::io::Write;

/// `text` with every control character but the newline written as `\uXXXX` (also a valid
/// escape inside JSON and double-quoted YAML strings).
pub fn safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\n') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_control() && c != '\n' {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes escaped `text` to stdout; a reader that went away is not an error.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(safe(text).as_bytes())
        .and_then(|()| stdout.flush());
}

/// Writes one escaped line to stderr.
pub fn err_line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", safe(text));
}

/// Writes bytes that kup generated itself (completions, the man page) to stdout.
pub fn out_bytes(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes).and_then(|()| stdout.flush());
}

#[cfg(test)]
mod tests {
    use super::safe;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(safe("plain\ntext"), "plain\ntext");
        assert_eq!(
            safe("tab\there\u{1b}[31mRED\u{7f}\u{9b}"),
            "tab\\u0009here\\u001b[31mRED\\u007f\\u009b"
        );
        assert_eq!(safe("crlf\r\n"), "crlf\\u000d\n");
    }
}

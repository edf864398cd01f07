//! Everything kup prints goes through here: text that comes from data (host names, alarm
//! reasons, a server's error message) is escaped so that no control character reaches the
//! terminal, and a closed pipe (`kup host-list | head -1`) ends the output quietly instead of
//! panicking.

use std::borrow::Cow;
use std::io::Write;

/// What a terminal would act on rather than show (`kup_types::names::is_hidden`), but the
/// newlines kup's own output is made of.
fn hidden(c: char) -> bool {
    c != '\n' && kup_types::names::is_hidden(c)
}

/// `text` with every such character written as `\uXXXX` (also a valid escape inside JSON
/// and double-quoted YAML strings).
pub fn safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if hidden(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes escaped `text` to stdout. A reader that went away is not an error (`kup host-list |
/// head -1`); any other failure (a full disk) ends kup with exit status 1 and says so, since
/// the output a script relies on is incomplete.
pub fn out(text: &str) {
    write_stdout(safe(text).as_bytes());
}

/// Writes one escaped line to stderr.
pub fn err_line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", safe(text));
}

/// Writes bytes that kup generated itself (completions, the man page) to stdout.
pub fn out_bytes(bytes: &[u8]) {
    write_stdout(bytes);
}

fn write_stdout(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(bytes).and_then(|()| stdout.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        err_line(&format!("Error: cannot write the output: {e}"));
        std::process::exit(1);
    }
}

/// Log lines for `tracing`: to stderr, but a reader that went away (`kup serve 2>&1 | head`)
/// only loses them; the daemon goes on (the subscriber would panic on the error).
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().lock().write_all(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
        assert_eq!(safe("a\u{202e}b\u{200b}c"), "a\\u202eb\\u200bc");
    }
}

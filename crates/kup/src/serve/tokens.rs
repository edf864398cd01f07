//! Who may use the API: a token file (`admin TOKEN` / `reader TOKEN` per line) or the admin
//! token kup generates in the data directory. The same rules hold for both.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use kup_api::{Role, Tokens};

/// Shorter tokens can be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why a token is not acceptable; tokens travel in HTTP headers, so only visible ASCII.
fn token_problem(token: &str) -> Option<&'static str> {
    if token.is_empty() {
        Some("it is empty")
    } else if token.chars().any(char::is_whitespace) {
        Some("a token is one word, without spaces")
    } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
        Some("a token may hold only visible ASCII characters")
    } else if token.len() < MIN_TOKEN_LEN {
        Some("a token needs at least 16 characters")
    } else {
        None
    }
}

/// Reads a file that must be a small regular text file.
fn read_text(path: &Path, what: &str) -> Result<String, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    if meta.is_dir() {
        return Err(format!("{what} {} is a directory", path.display()));
    }
    if !meta.is_file() {
        return Err(format!("{what} {} is not a regular file", path.display()));
    }
    if meta.len() > 1 << 20 {
        return Err(format!("{what} {} is larger than 1 MiB", path.display()));
    }
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    String::from_utf8(bytes)
        .map_err(|_| format!("{what} {} holds binary data, not text", path.display()))
}

/// `--token-file`: every line `admin TOKEN` or `reader TOKEN` (blank lines and `#` comments
/// aside); a token listed twice is an error, whatever its roles.
pub fn read_token_file(path: &Path) -> Result<Tokens, String> {
    let text = read_text(path, "token file")?;
    let at = |line: usize, why: &str| format!("token file {}, line {line}: {why}", path.display());
    let mut entries: Vec<(Role, String, usize)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (role, token) = match line.split_once(char::is_whitespace) {
            Some(("admin", t)) => (Role::Admin, t.trim()),
            Some(("reader", t)) => (Role::Reader, t.trim()),
            _ => return Err(at(i + 1, "expected `admin TOKEN` or `reader TOKEN`")),
        };
        if let Some(why) = token_problem(token) {
            return Err(at(i + 1, why));
        }
        if let Some((_, _, first)) = entries.iter().find(|(_, t, _)| t == token) {
            return Err(at(
                i + 1,
                &format!("this token is already listed on line {first}; each token has one role"),
            ));
        }
        entries.push((role, token.to_string(), i + 1));
    }
    if entries.is_empty() {
        return Err(format!("token file {} holds no token", path.display()));
    }
    Ok(Tokens::new(entries.into_iter().map(|(r, t, _)| (r, t))))
}

/// The generated admin token, if the data directory has one.
pub fn read_admin_token(path: &Path) -> Result<Option<String>, String> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(None);
    }
    let text = read_text(path, "admin token file")?;
    let token = text.trim();
    match token_problem(token) {
        None => Ok(Some(token.to_string())),
        Some(why) => Err(format!(
            "admin token file {} is not usable: {why}; delete it to have a new token generated",
            path.display()
        )),
    }
}

/// Writes a new random admin token atomically (a temporary file, synced, renamed, the
/// directory synced), readable by its owner only: a crash leaves no token or a whole one.
pub fn write_admin_token(path: &Path) -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a token: {e}"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_extension("tmp");
    let cannot = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let _ = std::fs::remove_file(&tmp); // Left by a crash: never acknowledged.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(cannot)?;
    writeln!(f, "{token}")
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path))
        .and_then(|()| sync_parent(path))
        .map_err(cannot)?;
    Ok(token)
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rules() {
        for (token, problem) in [
            ("", Some("it is empty")),
            ("a", Some("a token needs at least 16 characters")),
            (
                "0123456789abcde",
                Some("a token needs at least 16 characters"),
            ),
            ("0123456789abcdef", None),
            (
                "0123456789 abcdef",
                Some("a token is one word, without spaces"),
            ),
            (
                "0123456789abcdefé",
                Some("a token may hold only visible ASCII characters"),
            ),
            (
                "0123456789abcdef\u{1b}",
                Some("a token may hold only visible ASCII characters"),
            ),
        ] {
            assert_eq!(token_problem(token), problem, "{token:?}");
        }
    }

    #[test]
    fn token_file_rules() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        let t = "0123456789abcdef";
        for (text, says) in [
            ("", "holds no token"),
            ("# only a comment\n\n", "holds no token"),
            (
                "admin\n",
                "line 1: expected `admin TOKEN` or `reader TOKEN`",
            ),
            ("root 0123456789abcdef\n", "line 1: expected"),
            (
                "admin short\n",
                "line 1: a token needs at least 16 characters",
            ),
            (
                &format!("admin {t}\nreader {t}\n"),
                "line 2: this token is already listed on line 1",
            ),
        ] {
            std::fs::write(&file, text).unwrap();
            let err = read_token_file(&file).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
        std::fs::write(&file, [0xff, 0xfe, b'\n']).unwrap();
        assert!(read_token_file(&file).unwrap_err().contains("binary data"));
        assert!(
            read_token_file(dir.path())
                .unwrap_err()
                .contains("is a directory")
        );
        std::fs::write(&file, format!("admin {t}\nreader {t}x\n")).unwrap();
        let tokens = read_token_file(&file).unwrap();
        assert_eq!(tokens.role(t.as_bytes()), Some(Role::Admin));
        assert_eq!(tokens.role(format!("{t}x").as_bytes()), Some(Role::Reader));
    }

    #[test]
    fn the_admin_token_is_written_whole_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin-token");
        std::fs::write(path.with_extension("tmp"), "half").unwrap();
        let token = write_admin_token(&path).unwrap();
        assert_eq!(read_admin_token(&path).unwrap(), Some(token));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!path.with_extension("tmp").exists());
    }
}

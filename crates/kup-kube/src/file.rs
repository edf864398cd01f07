//! What the files of a real cluster (the hosts file, the catalog file) share: YAML read with
//! serde-saphyr, unknown fields refused, and one-line errors that name the file and the line.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_saphyr::Spanned;

/// A problem in one of kup's files, with the line it is on when known.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct FileError {
    /// "hosts file", "catalog file".
    pub file: &'static str,
    pub line: Option<u64>,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}, line {l}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl FileError {
    pub(crate) fn whole(file: &'static str, message: impl Into<String>) -> FileError {
        FileError {
            file,
            line: None,
            message: message.into(),
        }
    }

    pub(crate) fn at<T>(
        file: &'static str,
        s: &Spanned<T>,
        message: impl Into<String>,
    ) -> FileError {
        FileError {
            file,
            line: Some(s.referenced.line()),
            message: message.into(),
        }
    }
}

/// Parses `source`, a YAML document, with the parser's first line as the message.
pub(crate) fn parse<T: DeserializeOwned>(file: &'static str, source: &str) -> Result<T, FileError> {
    serde_saphyr::from_str(source).map_err(|e| {
        let first = e.to_string().lines().next().unwrap_or_default().to_string();
        let message = first.strip_prefix("error: ").unwrap_or(&first).to_string();
        match e.location() {
            Some(l) => FileError {
                file,
                line: Some(l.line()),
                // The message already names the line; keep it once.
                message: message
                    .strip_prefix(&format!("line {} column {}: ", l.line(), l.column()))
                    .unwrap_or(&message)
                    .to_string(),
            },
            None => FileError::whole(file, message),
        }
    })
}

pub(crate) fn read(file: &'static str, path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path)
        .map_err(|e| FileError::whole(file, format!("cannot read {}: {e}", path.display())))
}
